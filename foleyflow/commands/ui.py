"""`foleyflow ui`: the web UI (Gradio) on http://127.0.0.1:7860, over one loaded FoleyPipeline (see docs/apps.md).

Loads the bundle first (a bad bundle is a one-line error before any server starts), then serves the page of
`foleyflow.ui.app` until Ctrl-C or SIGTERM, which stop it cleanly (exit 0). Binds 127.0.0.1 unless --host says
otherwise (a warning then: the page has no authentication). Needs the `ui` extra: pip install 'foleyflow[ui]'.
`--llm-url/--llm-model/--llm-timeout` (as `foleyflow plan` and `generate --cot llm`; key from FOLEYFLOW_LLM_API_KEY)
let the page's plan button plan the prompt with that language model instead of the bundle's planner.
"""
from __future__ import annotations

import argparse
import sys

from foleyflow.commands.generate import DEFAULT_BUNDLE

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser("ui", help="start the web UI (Gradio) on 127.0.0.1",
                       description="Serves a web page to generate soundtracks: upload a video (or type a prompt for "
                                   "text-to-audio), set prompt, negative prompt, chain of thought, steps, guidance, "
                                   "seed, duration and variations, and play or download the results. Works fully "
                                   "offline. Stop with Ctrl-C.")
    p.add_argument("--bundle", default=None, metavar="DIR", help=f"model bundle folder (default {DEFAULT_BUNDLE})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free port)")
    p.add_argument("--out-dir", default=None, metavar="DIR",
                   help="folder for the generated files (default: a new temporary folder)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    from foleyflow.commands.generate import add_quantize_option

    add_quantize_option(p)
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch (default: torch's)")
    p.add_argument("--max-upload-mb", type=int, default=500, metavar="MB", help="largest upload (default 500 MB)")
    from foleyflow.commands.plan import add_llm_options

    add_llm_options(p)
    p.set_defaults(func=run)


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from foleyflow.errors import FoleyError

    if not 0 <= args.port <= 65535:
        raise FoleyError(f"--port must be between 0 and 65535, got {args.port}")
    if not 0 <= args.threads <= 1024:
        raise FoleyError(f"--threads must be between 0 (default) and 1024, got {args.threads}")
    if not 1 <= args.max_upload_mb <= 100_000:
        raise FoleyError(f"--max-upload-mb must be between 1 and 100000, got {args.max_upload_mb}")
    if args.out_dir is not None and Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise FoleyError(f"--out-dir {args.out_dir} is not a folder")
    from foleyflow.commands.plan import llm_endpoint

    llm = llm_endpoint(args)           # both flags or neither, a usable URL: checked before anything loads
    from foleyflow.ui.app import build_app, launch_options, offline_environment

    offline_environment()
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise FoleyError("the web UI needs Gradio: pip install 'foleyflow[ui]'") from None
    bundle = args.bundle or str(DEFAULT_BUNDLE)
    if not (Path(bundle) / "bundle.json").is_file():
        raise FoleyError(f"no model bundle at {bundle} (bundle.json missing); give --bundle DIR")
    from concurrent.futures import ThreadPoolExecutor

    from foleyflow.pipeline import FoleyPipeline

    def load():
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        return FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision,
                                        quantize=args.quantize)

    # one thread loads the models and runs every generation (build_app's torch_thread)
    torch_thread = ThreadPoolExecutor(1, thread_name_prefix="foleyflow-torch")
    pipe = torch_thread.submit(load).result()
    if args.host not in LOOPBACK:
        print(f"warning: --host {args.host} makes the page reachable from other machines; it has no login",
              file=sys.stderr)
    app = build_app(pipe, args.out_dir, torch_thread, bundle=bundle, llm=llm)
    port = args.port or _free_port(args.host)
    try:
        app.launch(prevent_thread_lock=True, **launch_options(args.host, port, app.foleyflow_out_dir,
                                                              f"{args.max_upload_mb}mb"))
    except OSError as e:
        raise FoleyError(f"cannot serve on {args.host}:{port}: {e}") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"foleyflow ui: serving model '{pipe.name}' on http://{host}:{port} (results in "
          f"{app.foleyflow_out_dir}); Ctrl-C to stop", flush=True)
    stopped = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set()) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        app.close()
    print("foleyflow ui: stopped", flush=True)
    return 0
