"""Golden outputs of the generation pipeline: a tiny fp32 model built in code (fixed seeds), small videos made here.

`tests/golden/pipeline.npz` holds, for three cases (a video with a prompt in one window; text only with a negative
prompt; a video of two overlapping windows with the empty text), the condition features of every window (visual,
sync, text), the sampled (normalised) latents of every window and the final waveform (every 4th sample, plus the sum
and the sum of squares of all samples, to stay small). `tests/test_golden.py` checks the current code against it
(max |diff| <= 1e-5), so refactors of the pipeline cannot change what it generates.

Regenerate (only when a change of the outputs is intended, and say so in the commit):
    PYTHONPATH=$PWD .venv/bin/python tests/golden_pipeline.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "pipeline.npz"
WINDOW_S = 1.5
TINY_GEN = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1)
WAV_STRIDE = 4

CASES = {
    "video": dict(video="one", prompt="a wooden ball bounces twice", seed=3, steps=3, cfg=4.5),
    "text": dict(video=None, duration_s=0.6, prompt="rain on a tin roof", negative="wind", seed=1, steps=3, cfg=3.0),
    "long": dict(video="two", seed=0, steps=2, cfg=4.5, overlap_s=0.5),
}


def text_cfg():
    from foleyflow.models.text_encoder import TextEncoderConfig

    return TextEncoderConfig(seq_len=16, part_seq_len=4)


def build_bundle(folder: Path, text_encoder=None) -> Path:
    """The tiny untrained bundle (seed 0, window 1.5 s, tiny encoders and codec)."""
    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    return build_untrained_bundle(folder, seed=0, window_s=WINDOW_S, generator_overrides=TINY_GEN,
                                  semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                                  sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                                  text_cfg=text_cfg(), text_encoder=text_encoder, name="golden")


def make_video(path: Path, duration_s: float, fps: int = 25) -> Path:
    """Frames of flat colour blocks (exactly representable, so decoding does not depend on the encoder's choices),
    losslessly encoded; the blocks move and change colour from frame to frame."""
    from foleyflow.media import write_video

    n = round(duration_s * fps)
    frames = []
    for i in range(n):
        img = np.zeros((32, 48, 3), np.uint8)
        img[:] = (16 * (i % 8), 128, 255 - 16 * (i % 8))
        x = (i * 4) % 32
        img[8:24, x:x + 16] = (240, 32 + 8 * (i % 16), 16)
        frames.append(img)
    return write_video(path, frames, fps, crf=0)


def make_videos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {"one": make_video(folder / "one.mp4", 1.2), "two": make_video(folder / "two.mp4", 2.2)}


def load_pipeline(bundle: Path, text_encoder=None):
    from foleyflow.pipeline import FoleyPipeline

    return FoleyPipeline.from_bundle(bundle, precision="fp32", text_encoder=text_encoder)


def run_case(pipe, videos: dict[str, Path], case: dict) -> dict[str, np.ndarray]:
    """Runs one case: the conditions and latents of every window through the pipeline's public stages, the waveform
    through `generate` (window k's arrays as `<name>.<k>`)."""
    from foleyflow.conditioning import generation_windows
    from foleyflow.media import probe

    kw = dict(case)
    name = kw.pop("video")
    video = videos[name] if name else None
    inputs = {k: kw.pop(k) for k in ("prompt", "duration_s") if k in kw}
    kw["cfg_scale"] = kw.pop("cfg")
    opts = pipe.options(**kw)
    result = pipe.generate(video, options=opts, **inputs)
    assert result.options == opts
    duration = probe(video).video.duration_s if video else inputs["duration_s"]
    gen = torch.Generator().manual_seed(opts.seed)
    text = pipe.text_features(inputs.get("prompt"))
    out: dict[str, np.ndarray] = {}
    for k, w in enumerate(generation_windows(duration, pipe.window_s, opts.overlap_s)):
        c = pipe.conditions(video, w, text=text)
        x1 = pipe.sample(c, opts, gen)
        for f, v in (("visual", c.visual), ("sync", c.sync), ("text", c.text), ("latents", x1)):
            out[f"{f}.{k}"] = v[0].float().cpu().numpy()
    wav = result.audio.astype(np.float64)
    out["wav_sub"] = result.audio[:, ::WAV_STRIDE].copy()
    out["wav_stats"] = np.array([wav.shape[1], wav.sum(), (wav ** 2).sum()])
    return out


def compute(workdir: Path) -> dict[str, np.ndarray]:
    from foleyflow.models.text_encoder import load_text_encoder

    enc = load_text_encoder(text_cfg())
    pipe = load_pipeline(build_bundle(workdir / "bundle", enc), enc)
    videos = make_videos(workdir / "videos")
    arrays = {}
    for name, case in CASES.items():
        for k, v in run_case(pipe, videos, case).items():
            arrays[f"{name}/{k}"] = v
    return arrays


def main() -> None:
    import tempfile

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        arrays = compute(Path(tmp))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = GOLDEN.with_name(".pipeline.tmp.npz")
    np.savez_compressed(tmp_out, **arrays)
    tmp_out.replace(GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size // 1024} KB, {len(arrays)} arrays)")


if __name__ == "__main__":
    sys.exit(main())
