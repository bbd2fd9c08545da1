"""`foleyflow serve --jobs DIR`: the REST service (FastAPI on uvicorn), bound to 127.0.0.1 by default.

Loads the bundle once; N worker threads (--workers) share that one pipeline and take jobs from a bounded queue
(--max-queue; 429 when full). Jobs, uploads and results live in DIR (the operator's choice), are kept across restarts
and deleted --ttl-hours after they finished. SIGTERM or Ctrl-C: the server stops accepting requests, queued jobs are
marked failed, running jobs finish (at most --drain-timeout seconds, then they are cancelled and marked failed), and
the command exits 0. On start, jobs that were queued or running when the previous server died are marked failed
("interrupted"); finished results are kept. The API is documented in docs/apps.md and at /docs (OpenAPI schema:
/openapi.json). With --llm-url/--llm-model (as `generate --cot llm`; key from FOLEYFLOW_LLM_API_KEY, never printed)
jobs may ask for cot=llm. The `serve` extra installs the web dependencies: pip install 'foleyflow[serve]'.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the REST service (HTTP API for generation jobs) on 127.0.0.1",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", required=True, metavar="DIR", help="job folder: uploads, results and job records "
                   "(created if missing; one server per folder)")
    p.add_argument("--bundle", default=None, metavar="DIR", help="model bundle (default: the installed default model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; the address is printed)")
    p.add_argument("--workers", type=int, default=1, help="jobs generated at once (threads sharing one model)")
    p.add_argument("--max-queue", type=int, default=16, metavar="N", help="jobs that may wait (429 beyond)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload (413 beyond)")
    p.add_argument("--max-duration", type=float, default=60.0, metavar="S", help="longest video or text-only job")
    p.add_argument("--max-resolution", default="1920x1080", metavar="WxH", help="largest video, either orientation")
    p.add_argument("--max-steps", type=int, default=100, metavar="N", help="most sampling steps a job may ask for")
    p.add_argument("--ttl-hours", type=float, default=24.0, metavar="H", help="delete finished jobs after H hours")
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="S", help="on SIGTERM, how long running "
                   "jobs may take to finish before they are cancelled")
    p.add_argument("--api-key-file", default=None, metavar="FILE", help="require this key (the file's first line) "
                   "in the X-API-Key header; FOLEYFLOW_API_KEY sets it too")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    from foleyflow.commands.generate import add_quantize_option

    add_quantize_option(p)
    from foleyflow.commands.plan import add_llm_options

    add_llm_options(p)             # cot=llm jobs (as generate --cot llm and ui); key from FOLEYFLOW_LLM_API_KEY
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for torch (default: torch's)")
    p.set_defaults(func=run)


def _fail(msg: str):
    from foleyflow.errors import FoleyError
    raise FoleyError(msg)


def read_api_key(path: str | None) -> str | None:
    import os

    if path is not None:
        try:
            key = Path(path).read_text(encoding="utf-8").splitlines()[0].strip() if Path(path).stat().st_size else ""
        except (OSError, UnicodeDecodeError, IndexError) as e:
            _fail(f"cannot read the API key from {path}: {getattr(e, 'strerror', None) or 'not UTF-8 text'}")
    else:
        key = os.environ.get("FOLEYFLOW_API_KEY")
        if key is None:
            return None
    if len(key) < 16:
        _fail("the API key must be at least 16 characters")
    return key


def limits_of(args: argparse.Namespace):
    from foleyflow.serve.jobs import Limits

    try:
        w, h = (int(v) for v in args.max_resolution.lower().split("x"))
    except ValueError:
        _fail(f"--max-resolution must look like 1920x1080, got {args.max_resolution!r}")
    checks = [("--workers", args.workers, 1, 64), ("--max-queue", args.max_queue, 1, 100_000),
              ("--max-upload-mb", args.max_upload_mb, 0.001, 1e6), ("--max-duration", args.max_duration, 0.1, 3600),
              ("--max-steps", args.max_steps, 1, 1000), ("--ttl-hours", args.ttl_hours, 0.0, 1e6),
              ("--drain-timeout", args.drain_timeout, 0.0, 1e6), ("--port", args.port, 0, 65535),
              ("--threads", args.threads, 0, 1024), ("width", w, 16, 16384), ("height", h, 16, 16384)]
    for name, value, lo, hi in checks:
        if not lo <= value <= hi:   # nan fails too
            _fail(f"{name} must be between {lo:g} and {hi:g}, got {value}")
    return Limits(max_upload_bytes=int(args.max_upload_mb * 2 ** 20), max_duration_s=args.max_duration,
                  max_width=w, max_height=h, max_queue=args.max_queue, max_steps=args.max_steps)


def run(args: argparse.Namespace) -> int:
    import signal
    import socket

    from foleyflow.commands.generate import DEFAULT_BUNDLE

    limits = limits_of(args)
    key = read_api_key(args.api_key_file)
    from foleyflow.commands.plan import llm_endpoint

    llm = llm_endpoint(args)       # both flags or neither, a usable URL: checked before anything loads
    try:
        import fastapi  # noqa: F401  (checked here: a missing extra is a one-line error)
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as e:
        _fail(f"foleyflow serve needs the `serve` extra ({e.name} is missing): pip install 'foleyflow[serve]'")
    bundle = args.bundle or (str(DEFAULT_BUNDLE) if (DEFAULT_BUNDLE / "bundle.json").is_file() else None)
    if bundle is None:
        _fail(f"the default model is missing from {DEFAULT_BUNDLE} (a broken install?); give --bundle DIR")
    jobs = Path(args.jobs)
    if jobs.exists() and not jobs.is_dir():
        _fail(f"--jobs {jobs} is a file, not a folder")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)
    except (OSError, OverflowError) as e:
        sock.close()
        _fail(f"cannot listen on {args.host}:{args.port}: {getattr(e, 'strerror', None) or e}")
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: other machines can reach this service"
              + ("" if key else " and no API key is set (--api-key-file)"), file=sys.stderr)
    from foleyflow.commands.generate_set import bundle_sha256
    from foleyflow.errors import FoleyError
    from foleyflow.serve.app import create_app
    from foleyflow.serve.jobs import JobService

    def load():
        """Runs in the service's first worker thread: the thread that loads the models also runs them."""
        import torch

        from foleyflow.pipeline import FoleyPipeline
        if args.threads:
            torch.set_num_threads(args.threads)
        return FoleyPipeline.from_bundle(bundle, device=args.device, precision=args.precision,
                                        quantize=args.quantize)

    from foleyflow.planning import AutoPlanner

    planner = AutoPlanner.of(bundle)          # cot=auto: the same planner as generate --cot auto
    service = JobService(None, jobs, bundle_sha256=bundle_sha256(bundle), limits=limits, workers=args.workers,
                         ttl_s=args.ttl_hours * 3600, drain_s=args.drain_timeout, load=load, planner=planner,
                         llm=llm)                             # cot=llm: the same plan_with_llm as generate --cot llm
    if planner is not None:
        from foleyflow.planning import plans_by_default

        planner.pipeline = lambda: service.pipe   # on the pipeline's encoders (loaded before the first job runs)
        service.plan_by_default = plans_by_default(bundle)
    try:
        service.start()
    except FoleyError as e:
        sock.close()
        _fail(str(e))
    pipe = service.pipe
    if not pipe.trained:
        print(f"warning: the bundle '{pipe.name}' is UNTRAINED (random weights)", file=sys.stderr)
    app = create_app(service, key, bundle_name=pipe.name)
    # h11 (not httptools, when installed) so the limit on a request's headers holds: 64 KB, then 400
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http="h11",
                            timeout_graceful_shutdown=max(1, int(args.drain_timeout)),
                            h11_max_incomplete_event_size=64 * 1024)
    server = uvicorn.Server(config)
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(f"foleyflow serve: listening on http://{host}:{sock.getsockname()[1]} (jobs in {jobs}, "
          f"{args.workers} worker(s))", flush=True)
    # uvicorn catches SIGINT/SIGTERM while it runs and re-raises them when it returns; after the drain they are done
    previous = {s: signal.signal(s, lambda *a: None) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sock.close()
    if not server.started:
        _fail("the service did not start (see the messages above)")
    print(f"foleyflow serve: stopped; jobs {service.counts()}", flush=True)
    return 0
