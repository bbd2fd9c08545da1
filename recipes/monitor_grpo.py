"""Score a GRPO run's checkpoints with the evaluation suite, beside or after training: the `val` monitor on the
evaluation metrics (issue 18), kept out of the training process on purpose.

    nice -n 10 python recipes/monitor_grpo.py RUN_DIR --manifest /data/foleyworld/manifest.jsonl [--clips 16] \
        [--steps 10] [--every-state] [--once] [--models DIR | --no-models] [--threads 1]

What it does, per pass: iteration 0 (the run's starting bundle, `grpo.bundle` in the provenance) first, so the curves
have a baseline; then the run's training states `checkpoints/state_<iteration>.safetensors` it has not scored yet
(by default only the newest one, so a monitor that falls behind a live run catches up instead of queueing;
`--every-state`: every one present, oldest first). For a state, the generator is rebuilt exactly as the recipe
exports it (the starting generator, LoRA-adapted as configured, the state's EMA weights, or the policy's with
`--weights policy`, LoRA merged) and written with the bundle's other checkpoints into a temporary bundle. The first
`--clips` `val` rows of the manifest (with a video) are generated from it by `foleyflow generate-set` (the run's
`text` setting, the full clip window, `--steps` steps, the per-clip seeds of generate-set) and scored by
`foleyflow evaluate --no-baselines` against the rows' audio, truth, video and captions. The scalars go to the run's
TensorBoard as `eval_val/<key>` at the state's iteration (keys: onset_f1@50ms, pan_error, class_accuracy,
clap_score, desync_s, quality, fd_learned and fd_melstats, at N = --clips; a key whose model is missing is absent)
and one JSON line per iteration to RUN_DIR/eval_val.jsonl (the whole file rewritten atomically; an iteration already
in it is never scored again, so the monitor resumes). Without --once it polls every --poll seconds until it has
scored the run's last iteration (`steps`, or the iteration where the run stopped on its plateau).

It is observational only: it writes nothing but RUN_DIR/eval_val.jsonl, a new event file in RUN_DIR/tb and its own
temporary folder, and recipes/train_grpo.py reads neither (nor imports foleyflow.eval), so the training cannot
optimise, or select on, these numbers. It runs at low priority (os.nice, --nice 10) on --threads threads. A state
pruned by the training (keep_states) before the monitor reaches it is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from foleyflow.errors import FoleyError

KEYS = ("onset_f1@50ms", "pan_error", "class_accuracy", "clap_score", "desync_s", "quality", "fd_learned",
        "fd_melstats")
RECORD = "eval_val.jsonl"
TAG = "eval_val"


class MonitorError(FoleyError):
    """A GRPO run or manifest the monitor cannot score."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a recipes/train_grpo.py run folder (out_dir)")
    p.add_argument("--manifest", required=True, metavar="M", help="FoleyWorld manifest: its first `val` rows are scored")
    p.add_argument("--clips", type=int, default=16, help="val clips per checkpoint (the N of fd_learned)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps of generate-set")
    p.add_argument("--every-state", action="store_true",
                   help="score every unscored state (oldest first), not only the newest of each pass")
    p.add_argument("--once", action="store_true", help="one pass over what is there, then exit")
    p.add_argument("--poll", type=float, default=60.0, help="seconds between passes without --once")
    p.add_argument("--weights", default="ema", choices=("ema", "policy"),
                   help="which generator of a state: the EMA (generator_ema.safetensors) or the policy")
    p.add_argument("--models", metavar="DIR", help="evaluation models (default: foleyflow evaluate's)")
    p.add_argument("--no-models", action="store_true", help="no evaluation models (learned metrics skipped)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--nice", type=int, default=10, help="added niceness (0: none)")
    p.add_argument("--seed", type=int, default=0, help="generate-set's base seed and evaluate's")
    p.add_argument("--work", metavar="DIR", default=None,
                   help="folder for the temporary bundle, audio and report of a checkpoint (default: the system's "
                        "temporary folder; on the bundle's file system the bundle's checkpoints are hard links, "
                        "elsewhere copies)")
    args = p.parse_args(argv)
    if args.clips < 1 or args.steps < 1 or args.threads < 1 or args.poll <= 0:
        raise MonitorError("--clips, --steps and --threads must be >= 1 and --poll > 0")
    if args.models and args.no_models:
        raise MonitorError("--models and --no-models exclude each other")
    return args


# ------------------------------------------------------------------------------------------------ the run
def recipe_module():
    """recipes/train_grpo.py as a module (its config class and policy builder: the same export as the recipe's)."""
    import importlib.util

    name = "recipe_train_grpo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("train_grpo.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_config(run_dir: Path):
    from foleyflow.config import load_config
    from foleyflow.train.run import CONFIG_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        raise MonitorError(f"{run_dir} is not a GRPO run folder (no {CONFIG_FILE})")
    return load_config(recipe_module().TrainGrpoConfig, run_dir / CONFIG_FILE)


def starting_bundle(run_dir: Path, cfg) -> tuple[Path, bool]:
    """(the run's starting bundle, whether it came from a state's provenance): `grpo.bundle` of the newest state's
    provenance (else config.yaml's `bundle`, before any state exists), refused if its files changed since the run
    recorded their sha256."""
    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.commands.generate_set import bundle_sha256
    from foleyflow.train.run import list_states, states_dir

    for path in reversed(list_states(states_dir(run_dir))):
        try:
            grpo = json.loads(read_metadata(path).get(PROVENANCE, "{}") or "{}").get("grpo") or {}
        except (OSError, FoleyError, ValueError):   # pruned meanwhile
            continue
        if "bundle" not in grpo:
            raise MonitorError(f"{path} has no grpo.bundle in its provenance (not a recipes/train_grpo.py state?)")
        bundle = Path(grpo["bundle"])
        if bundle_sha256(bundle) != grpo.get("bundle_sha256"):
            raise MonitorError(f"the starting bundle {bundle} changed since the run started (sha256 differs)")
        return bundle, True
    return Path(cfg.bundle), False


def read_record(run_dir: Path) -> list[dict]:
    path = run_dir / RECORD
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(run_dir: Path, row: dict) -> None:
    """Adds one line to RUN_DIR/eval_val.jsonl by rewriting the file atomically (never a torn line)."""
    from foleyflow.fileio import atomic_write_text

    rows = read_record(run_dir) + [row]
    atomic_write_text(run_dir / RECORD, "".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------------ a checkpoint
def export_generator(state_file: Path, start_generator: Path, cfg, weights: str, out: Path) -> Path:
    """The generator of a training state, as the recipe exports it (LoRA merged), written to `out`."""
    import torch

    from foleyflow.checkpoint import PROVENANCE
    from foleyflow.models.generator_io import load_generator, save_generator
    from foleyflow.train.ema import EMA
    from foleyflow.train.lora import add_lora, merge_lora
    from foleyflow.train.state import load_train_state

    state, meta = load_train_state(state_file, kind="grpo")
    prov = json.loads(meta.get(PROVENANCE, "{}") or "{}")
    with torch.no_grad():
        net = load_generator(start_generator).float().eval()
        if cfg.lora.rank > 0:
            add_lora(net, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets, seed=cfg.seed)
        if weights == "ema":
            ema = EMA(net, decay=cfg.ema_decay)
            ema.load_state_dict(state["ema"])
            net, prov = ema.model, {**prov, "ema": cfg.ema_decay}
        else:
            net.load_state_dict(state["model"])
        return save_generator(out, merge_lora(net), provenance=prov)


def temp_bundle(start: Path, generator: Path, folder: Path) -> Path:
    """A bundle in `folder`: the starting bundle's index and checkpoints (hard links, else copies) with `generator`."""
    from foleyflow.bundle import INDEX, read_bundle

    info = read_bundle(start)
    data = json.loads((start / INDEX).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for role, src in info.files.items():
        dst = folder / f"{role}.safetensors"
        src = generator if role == "generator" else src
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        data[role] = dst.name
    (folder / INDEX).write_text(json.dumps(data, indent=1) + "\n")
    return folder


def val_rows(manifest: str, clips: int) -> list:
    """The first `clips` `val` rows with a video, as generate-set --split val --limit selects them."""
    from foleyflow.manifest import read_manifest

    rows = [r for r in read_manifest(manifest) if r.split == "val" and r.video is not None][:clips]
    if not rows:
        raise MonitorError(f"manifest {manifest} has no 'val' row with a video")
    lacking = [r.id for r in rows if not r.audio or not r.truth]
    if lacking:
        raise MonitorError(f"{len(lacking)} val rows have no reference audio or truth (e.g. {lacking[0]})")
    return rows


def eval_inputs(rows: list, folder: Path) -> dict:
    """evaluate's folders (reference audio, truth, videos as <id>.<ext>, symlinks) and caption file for `rows`."""
    dirs = {k: folder / k for k in ("reference", "truth", "video")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for r in rows:
        for key, src, ext in (("reference", r.audio, Path(r.audio).suffix), ("truth", r.truth, ".json"),
                              ("video", r.video, ".mp4")):
            (dirs[key] / f"{r.id}{ext}").symlink_to(Path(src).resolve())
    captions = folder / "captions.jsonl"
    captions.write_text("".join(json.dumps({"id": r.id, "caption": r.caption or ""}) + "\n" for r in rows))
    return {**dirs, "text": captions}


def cli(argv: list[str]) -> None:
    """Runs a foleyflow command in this process (its errors propagate as FoleyError)."""
    from foleyflow.cli import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)


def score_bundle(bundle: Path, rows: list, args, text: str, work: Path) -> dict:
    """generate-set then evaluate: {"metrics": {key: value}, "skipped": [...], "bundle_sha256"} of the set."""
    inputs = eval_inputs(rows, work / "inputs")
    gen, report = work / "generated", work / "report"
    cli(["generate-set", str(args.manifest), "--out", str(gen), "--split", "val", "--limit", str(len(rows)),
         "--text", text, "--bundle", str(bundle), "--steps", str(args.steps), "--seed", str(args.seed),
         "--threads", str(args.threads), "--precision", "fp32"])
    models = ["--no-models"] if args.no_models else (["--models", args.models] if args.models else [])
    cli(["evaluate", "--generated", str(gen), "--reference", str(inputs["reference"]), "--truth",
         str(inputs["truth"]), "--video", str(inputs["video"]), "--text", str(inputs["text"]), "-o", str(report),
         "--no-baselines", "--no-plots", "--seed", str(args.seed), *models])
    from foleyflow.commands.generate_set import RECORD as GENERATED

    sha = json.loads((gen / GENERATED).read_text())["settings"]["bundle_sha256"]   # what made the audio
    rep = json.loads((report / "report.json").read_text())
    gen_fig = rep["systems"]["generated"]
    metrics = {k: float(gen_fig[k]) for k in KEYS if isinstance(gen_fig.get(k), (int, float))}
    return {"metrics": metrics, "skipped": sorted(rep.get("skipped", {})), "bundle_sha256": sha}


def score_iteration(run_dir: Path, it: int, state_file: Path | None, start: Path, cfg, rows: list, args,
                    writer) -> dict | None:
    """Scores one iteration (0: the starting bundle) and records it; None if its state vanished (pruned)."""
    t0 = time.time()
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="foleyflow_monitor_", dir=args.work))
    try:
        bundle = start
        if state_file is not None:
            try:
                gen = export_generator(state_file, _start_generator(start), cfg, args.weights,
                                       work / "generator.safetensors")
            except (OSError, FoleyError):
                if state_file.exists():
                    raise
                print(f"monitor: {state_file.name} was pruned before it was scored; skipped", file=sys.stderr)
                return None
            bundle = temp_bundle(start, gen, work / "bundle")
        result = score_bundle(bundle, rows, args, "cot" if cfg.text == "cot" else "caption", work)
        row = {"iteration": it, "state": state_file.name if state_file else None,
               "weights": args.weights if state_file else "start", "bundle": str(start),
               "bundle_sha256": result.pop("bundle_sha256"), "clips": len(rows), "ids": [r.id for r in rows],
               "steps": args.steps, "seed": args.seed, **result, "wall_s": round(time.time() - t0, 2),
               "time": round(time.time(), 3)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for k, v in row["metrics"].items():
        writer.add_scalar(f"{TAG}/{k}", v, it)
    writer.flush()
    append_record(run_dir, row)
    print(json.dumps({"iteration": it, **{k: round(v, 6) for k, v in row["metrics"].items()}}), flush=True)
    return row


def _start_generator(start: Path) -> Path:
    from foleyflow.bundle import read_bundle

    return read_bundle(start).files["generator"]


def finished(run_dir: Path, cfg, scored: set[int]) -> bool:
    """Whether the run's last iteration (steps, or the one it stopped at) is scored."""
    from foleyflow.train.run import read_metrics

    if cfg.steps in scored:
        return True
    stopped = [r["step"] for r in read_metrics(run_dir) if r.get("train/stopped")]
    return bool(stopped) and max(stopped) in scored


def one_pass(run_dir: Path, cfg, start: Path, rows: list, args, writer) -> list[int]:
    """Scores iteration 0 if needed, then the unscored states (the newest only unless --every-state)."""
    from foleyflow.train.run import _step_of, list_states, states_dir

    scored = {r["iteration"] for r in read_record(run_dir)}
    done = []
    if 0 not in scored and score_iteration(run_dir, 0, None, start, cfg, rows, args, writer):
        done.append(0)
    todo = [p for p in list_states(states_dir(run_dir)) if _step_of(p) not in scored and _step_of(p) > 0]
    for path in todo if args.every_state else todo[-1:]:
        if score_iteration(run_dir, _step_of(path), path, start, cfg, rows, args, writer):
            done.append(_step_of(path))
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from foleyflow.train.run import TB_DIR

    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    cfg = run_config(run_dir)
    rows = val_rows(args.manifest, args.clips)
    writer = SummaryWriter(str(run_dir / TB_DIR), filename_suffix=".eval_val")
    start, checked = starting_bundle(run_dir, cfg)
    try:
        while True:
            cfg = run_config(run_dir)   # a resumed run may have changed `steps`
            if not checked:             # no state yet: config.yaml's bundle until the provenance names it
                start, checked = starting_bundle(run_dir, cfg)
            one_pass(run_dir, cfg, start, rows, args, writer)
            scored = {r["iteration"] for r in read_record(run_dir)}
            if args.once or finished(run_dir, cfg, scored):
                break
            time.sleep(args.poll)
    finally:
        writer.close()
    return 0


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
