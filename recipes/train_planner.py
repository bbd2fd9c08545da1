"""Trains the automatic planner (foleyflow.models.planner; issue 19 item 2, docs/cot.md) on FoleyWorld `train` only,
from a features cache of the bundle's own encoders (`foleyflow extract-features`) and the clips' ground truth; the
decode thresholds are chosen on a `val` features cache and stored in the checkpoint.

    nice -n 10 python recipes/train_planner.py --config configs/train_planner/default.yaml out_dir=runs/planner \
        data.features=/work/cache/features_train2400 data.val_features=/work/cache/features_val

Inputs per clip: the cache's first window (visual, sync) and column profiles of the clip's video at 8 fps
(foleyflow.planning.position_from_video), computed once per clip and kept in out_dir/positions_<cache>.safetensors
(a re-run or resume reuses them); with `model.appearance_fps` > 0 also the clip's RGB frames at that rate, decoded
at every start (configs/train_planner/appearance.yaml). Targets: foleyflow.cot.planner.planner_targets of the clip's
truth (the manifest the cache names in its info, or data.manifest). Writes into out_dir (the run folder,
foleyflow.train.run): config.yaml, checkpoints/state_<step>.safetensors (resumable), tb/, metrics.jsonl and
planner.safetensors (kind "planner": config with the chosen thresholds, provenance with the encoders' sha256, the data
and the `val` figures).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foleyflow.config import load_config
from foleyflow.errors import FoleyError
from foleyflow.models.planner import KIND, Planner, PlannerConfig, count_parameters, save_planner
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr

FORBIDDEN_SPLITS = ("evaltrain", "test", "test-hard", "test-offscreen")


@dataclass
class DataConfig:
    features: str | None = None       # the train features cache (foleyflow extract-features)
    val_features: str | None = None   # a val features cache: thresholds are chosen on it (none: the config's)
    manifest: str | None = None       # default: the manifest the cache was made from (its info)
    split: str = "train"
    allow_other_split: bool = False   # tests only
    limit: int = 0                    # use the first N clips (0 = all)


@dataclass
class PlannerOptimConfig(OptimConfig):
    lr: float = 2e-3
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    schedule: str = "cosine"
    warmup_steps: int = 100
    floor: float = 0.05


@dataclass
class TrainConfig:
    model: PlannerConfig = field(default_factory=PlannerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: PlannerOptimConfig = field(default_factory=PlannerOptimConfig)
    out_dir: str = "runs/planner"
    batch_size: int = 32
    steps: int = 2000
    log_every: int = 50
    ckpt_every: int = 500
    keep_states: int = 2
    seed: int = 0
    threads: int = 1


# ------------------------------------------------------------------------------------------------------------ data
def load_split(folder: str, cfg: TrainConfig, run_dir: Path, split: str | None, *, allow_other: bool) -> dict:
    """The first window of every clip of a features cache: visual (N, Tv, Dv), sync (N, Ns, Ds), position
    (N, Tp, K, P) or None, stacked targets, the truths and the cache's producers. split: the clips must be in it
    (never a test split unless split is None: benchmarks/planner_accuracy.py scores any split)."""
    from foleyflow.cot.planner import planner_targets
    from foleyflow.data.cache import Cache
    from foleyflow.events import read_truth
    from foleyflow.fileio import atomic_write
    from foleyflow.manifest import read_manifest
    from foleyflow.planning import position_from_video

    cache = Cache(folder, kind="features")
    manifest = cfg.data.manifest or cache.info.get("manifest")
    if not manifest:
        raise FoleyError(f"cache {folder} names no manifest; give data.manifest")
    entries = {e.id: e for e in read_manifest(manifest)}
    rows = [(k, i) for k, i in enumerate(cache.ids) if "@" not in i]
    if cfg.data.limit:
        rows = rows[:cfg.data.limit]
    for _, i in rows:
        e = entries.get(i)
        if e is None or not e.truth:
            raise FoleyError(f"clip {i} of cache {folder} has no truth in {manifest}")
        if split is not None and (e.split in FORBIDDEN_SPLITS or (e.split != split and not allow_other)):
            raise FoleyError(f"clip {i} of cache {folder} is in split '{e.split}', not '{split}': the planner "
                             f"trains on FoleyWorld train only and chooses on val")
    idx = torch.tensor([k for k, _ in rows])
    ids = [i for _, i in rows]
    visual, sync = cache.load("visual")[idx].float(), cache.load("sync")[idx].float()
    mc = cfg.model
    if (visual.shape[-1], sync.shape[-1]) != (mc.visual_dim, mc.sync_dim):
        raise FoleyError(f"cache {folder} holds {visual.shape[-1]}-d visual and {sync.shape[-1]}-d sync features; "
                         f"the planner config takes {mc.visual_dim} and {mc.sync_dim}")
    dur = float(cache.info.get("duration_s", 8.0))
    truths = [read_truth(entries[i].truth) for i in ids]
    slots = mc.num_slots(sync.shape[1])
    targets = [planner_targets(t, mc, slots) for t in truths]
    target = {k: torch.stack([t[k] for t in targets]) for k in targets[0]}
    position = None
    if mc.position_columns:
        from safetensors.torch import load_file, save_file

        tag = f"{mc.position_columns}" + (f"_{mc.pos_fps:g}fps" if mc.pos_fps != mc.visual_fps else "") \
            + ("_rows" if mc.position_rows else "")
        path = run_dir / f"positions_{Path(folder).resolve().name}_{tag}.safetensors"
        have = load_file(str(path)) if path.is_file() else {}
        todo = [i for i in ids if i not in have]
        t0 = time.perf_counter()
        for n, i in enumerate(todo):
            have[i] = position_from_video(entries[i].video, 0.0, dur, mc.position_columns, mc.pos_fps,
                                          mc.position_rows)
            if (n + 1) % 200 == 0 or n + 1 == len(todo):
                with atomic_write(path) as tmp:
                    save_file({k: v.contiguous() for k, v in have.items()}, str(tmp))
                print(f"position features: {n + 1}/{len(todo)} clips ({time.perf_counter() - t0:.0f} s)", flush=True)
        position = torch.stack([have[i] for i in ids])
    appearance = None
    if mc.appearance_fps:    # RGB frames, decoded at every start (about 50 ms a clip; 2,400 clips take 1.9 GB)
        from foleyflow.conditioning import window_frames
        from foleyflow.planning import appearance_spec

        spec = appearance_spec(mc, dur)
        appearance = torch.empty(len(ids), spec[4], 3, spec[1], spec[1], dtype=torch.uint8)
        t0 = time.perf_counter()
        for n, i in enumerate(ids):
            appearance[n] = window_frames(entries[i].video, [spec], 0.0, dur)[0][0]
            if (n + 1) % 500 == 0 or n + 1 == len(ids):
                print(f"appearance frames: {n + 1}/{len(ids)} clips ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"ids": ids, "visual": visual, "sync": sync, "position": position, "appearance": appearance,
            "target": target, "truths": truths,
            "duration_s": dur, "producers": cache.producers, "folder": str(Path(folder).resolve()),
            "manifest": str(manifest)}


def batch(data: dict, idx: torch.Tensor, frames: torch.Tensor | None = None):
    """(visual, sync, position or None, appearance or None, targets) of the clips idx; frames: which appearance
    frames (default all)."""
    pos = data["position"][idx] if data["position"] is not None else None
    app = data["appearance"][idx] if data.get("appearance") is not None else None
    if app is not None and frames is not None:
        app = app[:, frames]
    return data["visual"][idx], data["sync"][idx], pos, app, {k: v[idx] for k, v in data["target"].items()}


def train_frames(cfg: PlannerConfig, data: dict, g: torch.Generator) -> torch.Tensor | None:
    """The appearance frames of one training step: appearance_train_frames of them drawn by g, in time order (None:
    all, or no appearance input)."""
    app = data.get("appearance")
    k = cfg.appearance_train_frames
    if app is None or not k or k >= app.shape[1]:
        return None
    return torch.randperm(app.shape[1], generator=g)[:k].sort().values


@torch.no_grad()
def predict(model: Planner, data: dict, chunk: int = 64) -> list[dict]:
    """Per-clip probabilities (foleyflow.cot.planner.probabilities) of every clip of a split."""
    from foleyflow.cot.planner import probabilities

    model.eval()
    out = []
    if data.get("appearance") is not None:     # every frame of every clip through the CNN: smaller chunks
        chunk = min(chunk, 16)
    for s in range(0, len(data["ids"]), chunk):
        idx = torch.arange(s, min(s + chunk, len(data["ids"])))
        v, sy, pos, app, _ = batch(data, idx)
        res = model(v, sy, pos, app)
        out += [probabilities(res, i) for i in range(len(idx))]
    model.train()
    return out


def val_figures(probs: list[dict], val: dict, cfg: PlannerConfig, **thresholds) -> dict:
    """foleyflow.cot.score figures of the decoded plans of a split at the given thresholds."""
    from foleyflow.cot.planner import decode_plan
    from foleyflow.cot.score import score_plan

    score = None
    for p, truth in zip(probs, val["truths"]):
        score = score_plan(decode_plan(p, cfg, val["duration_s"], **thresholds), truth, score)
    return score.figures()


def contact_figures(probs: list[dict], val: dict, cfg: PlannerConfig, threshold: float) -> dict:
    from foleyflow.cot.planner import contact_onsets
    from foleyflow.cot.score import score_plan
    from foleyflow.cot.schema import Plan

    score = None
    for p, truth in zip(probs, val["truths"]):
        score = score_plan(Plan(val["duration_s"]), truth, score,
                           est_onsets=contact_onsets(p, cfg, val["duration_s"], threshold))
    return score.figures()


def choose_thresholds(model: Planner, val: dict) -> tuple[dict, dict]:
    """Decode thresholds chosen on `val`, one after the other: presence (best source-class F1), then the onset mode
    and its threshold (best onset F1 +-50 ms on visible discrete events); the activity threshold stays the config's. Returns them and the val
    figures at those thresholds, plus the class-agnostic contact head alone at its best threshold."""
    cfg = model.cfg
    probs = predict(model, val)
    grid = [round(float(x), 2) for x in np.arange(0.15, 0.9, 0.05)]
    best_p = max(grid, key=lambda t: val_figures(probs, val, cfg, presence_threshold=t)["classes_f1"])
    f1 = {}
    for t in grid:
        f1[("classes", t)] = val_figures(probs, val, cfg, presence_threshold=best_p, onset_mode="classes",
                                         onset_threshold=t)["onset_f1"]
        f1[("contact", t)] = val_figures(probs, val, cfg, presence_threshold=best_p, onset_mode="contact",
                                         contact_threshold=t)["onset_f1"]
    best_o = max(grid, key=lambda t: f1[("classes", t)])
    best_c = max(grid, key=lambda t: f1[("contact", t)])
    mode = "contact" if f1[("contact", best_c)] >= f1[("classes", best_o)] else "classes"
    chosen = {"presence_threshold": best_p, "onset_threshold": best_o, "contact_threshold": best_c,
              "onset_mode": mode}
    figures = val_figures(probs, val, cfg, **chosen)
    figures["onset_f1_by_mode"] = {"contact": f1[("contact", best_c)], "classes": f1[("classes", best_o)]}
    contact = max((contact_figures(probs, val, cfg, t) | {"threshold": t} for t in grid), key=lambda f: f["onset_f1"])
    figures["contact_head_onset_f1"] = contact["onset_f1"]
    figures["contact_head_threshold"] = contact["threshold"]
    return chosen, {**chosen, **figures}


# ------------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not cfg.data.features:
        raise FoleyError("give data.features=FOLDER (a features cache of FoleyWorld train clips)")
    if cfg.data.split != "train" and not cfg.data.allow_other_split:
        raise FoleyError(f"the planner trains on FoleyWorld train only, got split '{cfg.data.split}'")
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)
    t_start = time.perf_counter()
    train = load_split(cfg.data.features, cfg, run_dir, cfg.data.split, allow_other=cfg.data.allow_other_split)
    model = Planner(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    state, path = resume_state(run_dir, kind=KIND, config=cfg, defaults=TrainConfig())
    step = 0
    if state is not None:
        from foleyflow.train.state import set_rng_state

        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {path.name} at step {step}", flush=True)
    write_config(run_dir, cfg)
    log = MetricLog(run_dir)
    print(f"planner: {count_parameters(model):,} parameters, {len(train['ids'])} clips", flush=True)
    n = len(train["ids"])
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        idx = torch.randint(n, (cfg.batch_size,), generator=g)
        v, sy, pos, app, tgt = batch(train, idx, train_frames(cfg.model, train, g))
        out = model.loss(model(v, sy, pos, app), tgt)
        opt.zero_grad(set_to_none=True)
        out["planner/total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            values = {k: float(x.detach()) for k, x in out.items()}
            log.log(step, {**values, "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"]})
            print(f"step {step} " + " ".join(f"{k}={x:.4f}" for k, x in values.items()), flush=True)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            from foleyflow.train.state import rng_state

            save_state(run_dir, step, kind=KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()}, provenance={"recipe": "train_planner", "step": step})
    log.close()
    figures = {}
    if cfg.data.val_features:
        val = load_split(cfg.data.val_features, cfg, run_dir, "val", allow_other=True)
        if val["producers"].get("sync_encoder", {}).get("sha256") != train["producers"].get("sync_encoder", {}).get(
                "sha256"):
            raise FoleyError("the val cache was made with another sync encoder than the train cache")
        chosen, figures = choose_thresholds(model, val)
        for k, x in chosen.items():
            setattr(model.cfg, k, x)
        print(json.dumps({"val": figures}), flush=True)
    producers = {k: train["producers"][k] for k in ("semantic_encoder", "sync_encoder") if k in train["producers"]}
    from foleyflow.config import to_dict

    prov = {"recipe": "recipes/train_planner.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
            "data": f"{train['folder']} ({len(train['ids'])} clips of {train['manifest']}, split {cfg.data.split})",
            "producers": producers, "figures": {"val": figures} if figures else {},
            "seconds": round(time.perf_counter() - t_start, 1), "command": " ".join(sys.argv)}
    out_path = save_planner(run_dir / "planner.safetensors", model.eval(), provenance=prov)
    print(f"wrote {out_path} after {step} steps ({out_path.stat().st_size / 1e6:.2f} MB)", flush=True)
    release_run(lock)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
