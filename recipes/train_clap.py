"""Trains the CLAP-style text-audio evaluation model (foleyflow.models.eval_audio.ClapModel) on FoleyWorld's
evaltrain split: symmetric InfoNCE between whole-clip audio embeddings and the projected frozen MiniLM sentence
vectors of the clips' captions (other clips of the batch are the negatives).

    nice -n 10 python recipes/train_clap.py --config configs/train_clap/default.yaml out_dir=runs/clap \
        data.manifest=/data/foleyworld/manifest.jsonl
    (debug: --config configs/train_clap/debug.yaml: two steps on synthetic clips with hashed text vectors)

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml, cache/ (log-mels, caption
vectors), checkpoints/state_<step>.safetensors (resumable), tb/, metrics.jsonl, and clap.safetensors (float16, kind
"eval_clap", validation retrieval figures in its provenance).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foleyflow.config import load_config, to_dict
from foleyflow.data.eval_clips import clip_mels, manifest_clips, synthetic_clips
from foleyflow.eval.models import caption_vectors
from foleyflow.models.av_ssl import info_nce
from foleyflow.models.eval_audio import CLAP_KIND, ClapModel, ClapModelConfig
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, Schedule, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state


@dataclass
class DataConfig:
    manifest: str | None = None      # FoleyWorld manifest.jsonl; None -> synthetic clips
    split: str = "evaltrain"
    val_split: str | None = "val"    # figures reported at the end (never used to pick anything)
    limit: int = 0
    synthetic_clips: int = 0
    gain_db: float = 6.0


@dataclass
class ClapOptimConfig(OptimConfig):  # warm-up, then cosine decay to 2%
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    grad_clip: float = 5.0
    schedule: Schedule = "cosine"
    floor: float = 0.02


@dataclass
class TrainConfig:
    model: ClapModelConfig = field(default_factory=ClapModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: ClapOptimConfig = field(default_factory=ClapOptimConfig)
    out_dir: str = "runs/clap"
    batch_size: int = 32
    steps: int = 300
    log_every: int = 20
    ckpt_every: int = 100
    keep_states: int = 2
    seed: int = 0
    threads: int = 1


def load_split(cfg: TrainConfig, split: str, model: ClapModel, cache: Path, seed: int):
    """(clips, log-mels (N, mels, frames) float16, caption vectors (N, 384) float32)."""
    if cfg.data.manifest is None:
        clips, audio = synthetic_clips(cfg.data.synthetic_clips, sample_rate=model.cfg.cnn.sample_rate, seed=seed)
        mels = clip_mels(clips, model.cnn, audio=audio)
    else:
        clips = manifest_clips(cfg.data.manifest, split, cfg.data.limit)
        mels = clip_mels(clips, model.cnn, cache=cache, progress=sys.stderr.isatty())
    texts = [c.caption for c in clips]
    key = hashlib.sha1(json.dumps([cfg.model.text_encoder, texts]).encode()).hexdigest()[:16]
    path = cache / f"text_{key}.npy"
    if cfg.data.manifest is not None and path.is_file():
        return clips, mels, np.load(path)
    vec = caption_vectors(texts, cfg.model.text_encoder).astype(np.float32)
    if cfg.data.manifest is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vec)
    return clips, mels, vec


@torch.no_grad()
def retrieval(model: ClapModel, mels: np.ndarray, vec: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Text -> audio retrieval among the clips of a split: recall@k (a caption's own clip in the top k; ties with
    clips of an identical caption count as hits), mean rank, and the mean paired cosine."""
    model.eval()
    a = torch.cat([model.audio_from_mel(torch.from_numpy(mels[s: s + 32].astype(np.float32)))
                   for s in range(0, len(mels), 32)])
    t = model.text_embedding(torch.from_numpy(vec))
    model.train()
    sim = (t @ a.t()).numpy()
    own = np.diag(sim)
    same = np.all(np.isclose(vec[:, None], vec[None]), axis=-1)      # identical captions are equally right
    best_same = np.where(same, sim, -np.inf).max(1)
    rank = (np.where(same, -np.inf, sim) > best_same[:, None]).sum(1) + 1
    return {**{f"recall@{k}": float(np.mean(rank <= k)) for k in ks}, "mean_rank": float(rank.mean()),
            "paired_cosine": float(own.mean()), "clips": len(mels)}


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)  # a second trainer on this folder stops here
    model = ClapModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(run_dir, kind=CLAP_KIND, config=cfg, defaults=TrainConfig())
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(run_dir, cfg)
    clips, mels, vec = load_split(cfg, cfg.data.split, model, run_dir / "cache", cfg.seed)
    print(f"{len(clips)} {cfg.data.split} clips, {len(set(c.caption for c in clips))} distinct captions", flush=True)

    from tqdm import tqdm

    log = MetricLog(run_dir)
    bar = tqdm(total=cfg.steps, initial=step, desc="clap", dynamic_ncols=True)
    g = cfg.data.gain_db / 20 * math.log(10)
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        pick = rng.choice(len(clips), size=min(cfg.batch_size, len(clips)), replace=False)
        x = torch.from_numpy(mels[pick].astype(np.float32))
        x = x + torch.from_numpy(rng.uniform(-g, g, (len(pick), 1, 1)).astype(np.float32))
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        out = info_nce(model.text_embedding(torch.from_numpy(vec[pick])), model.audio_from_mel(x),
                       model.logit_scale)
        loss = out["contrastive/infonce"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100.0))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{out['contrastive/acc'].item():.2f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, {"loss/infonce": loss.item(), "train/acc": out["contrastive/acc"].item(),
                           "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"],
                           "train/temperature": float(model.logit_scale.detach().exp().reciprocal())})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_state(run_dir, step, kind=CLAP_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_clap", "step": step})
    bar.close()
    figures = {}
    if cfg.data.val_split and cfg.data.manifest is not None:
        _, vmels, vvec = load_split(cfg, cfg.data.val_split, model, run_dir / "cache", cfg.seed)
        figures = {cfg.data.val_split: retrieval(model, vmels, vvec)}
        print(json.dumps(figures), flush=True)
    log.close()
    from foleyflow.checkpoint import save_checkpoint

    data = (f"{cfg.data.manifest} split {cfg.data.split}" if cfg.data.manifest else
            f"synthetic tone bursts x{cfg.data.synthetic_clips} (seed {cfg.seed})")
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.eval().state_dict().items()}
    save_checkpoint(run_dir / "clap.safetensors", sd, kind=CLAP_KIND, config=to_dict(cfg.model),
                    provenance={"recipe": "recipes/train_clap.py", "steps": step, "seed": cfg.seed, "data": data,
                                "clips": len(clips), "figures": figures, "command": " ".join(sys.argv)})
    print(f"wrote {run_dir / 'clap.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
