"""FoleyPipeline: the one inference entry point (video and/or text -> stereo soundtrack).

Follows MMAudio's inference (reference.md 1.4): frames at 8 fps (semantic) and 25 fps (sync) through the visual
encoders, text through the text encoder, Euler sampling with classifier-free guidance against the learned empty
conditions (or a negative prompt), then the codec: VAE decoder and vocoder, here per stereo channel.

    pipe = FoleyPipeline.from_bundle("path/to/bundle")            # see foleyflow.bundle
    result = pipe.generate("clip.mp4", prompt="rain on a tin roof", steps=25, cfg=4.5, seed=0)
    result.audio (2, round(duration_s * sample_rate)) float32, result.sample_rate

Length. The output always spans the whole video: exactly round(duration_s * sample_rate) samples, where duration_s is
the video stream's duration. Text-only generation takes `duration_s` instead of a video.

Windows (departure: MMAudio generates one window and users ask for long videos, reference.md 6). The generator has a
window of W seconds (its training clip length). A video of D <= W seconds is generated in one window of D seconds
(at least 1 s; the generator's sequence lengths and RoPE follow the duration as in MMAudio; the picture past the end
of a video shorter than 1 s repeats the last frame). A longer video is cut into windows of W seconds that overlap by
at least `overlap_s` (default 1 s): window k starts at k * (W - overlap_s), the last one ends exactly at D. Each
window is generated independently (its own noise, drawn in order from the seed) and neighbours are joined with an
equal-power crossfade (gains cos and sin of a quarter period) of `overlap_s`, centred in their overlap.

Precision: the generator samples in bfloat16 where the hardware supports it (CPU: oneDNN's bf16 check, e.g. AVX512-BF16
or AMX; GPU: `torch.cuda.is_bf16_supported()`), otherwise float32; encoders and codec run in float32. The same seed,
inputs and machine give identical audio.

Post-processing: optional resampling (`sample_rate`, polyphase) and loudness normalisation (`loudness_lufs`,
ITU-R BS.1770 integrated loudness via pyloudnorm); if the result would clip, it is scaled down to a 0.99 peak (the
returned `notes` say so).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from foleyflow.data.features import Window, decode_window
from foleyflow.errors import CheckpointError, FoleyError

MIN_WINDOW_S = 1.0
MAX_DURATION_S = 3600.0


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 matrix kernels are available: oneDNN's check on CPU, CUDA's on GPUs."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FoleyError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise FoleyError(f"unsupported device {device!r} (use cpu or cuda)")
    return dev


def generation_windows(duration_s: float, window_s: float, overlap_s: float = 1.0) -> list[Window]:
    """Windows covering [0, duration_s] for generation (see the module docstring)."""
    if duration_s <= window_s + 1e-9:
        return [Window(0.0, max(duration_s, MIN_WINDOW_S))]
    if not 0 <= overlap_s <= window_s / 2:
        raise FoleyError(f"overlap {overlap_s} s must be between 0 and half the window ({window_s / 2} s)")
    hop = window_s - overlap_s
    n = math.ceil((duration_s - window_s) / hop - 1e-9) + 1
    starts = [k * hop for k in range(n - 1)] + [duration_s - window_s]
    return [Window(s, window_s) for s in starts]


def crossfade_join(segments: list[tuple[int, np.ndarray]], num_samples: int, fade_samples: int) -> np.ndarray:
    """Joins (start_sample, audio (C, n)) segments in start order into (C, num_samples): each segment is used from
    the middle of its overlap with the previous one, through an equal-power crossfade of `fade_samples`."""
    channels = segments[0][1].shape[0]
    out = np.zeros((channels, num_samples), np.float32)
    end = 0
    for k, (start, audio) in enumerate(segments):
        seg_end = min(start + audio.shape[1], num_samples)
        if k == 0 or end <= start:
            out[:, start:seg_end] = audio[:, :seg_end - start]
        else:
            overlap = end - start
            fade = max(0, min(fade_samples, overlap))
            fs = start + (overlap - fade) // 2
            fe = fs + fade
            x = (np.arange(fade) + 0.5) / max(fade, 1)
            a_gain, b_gain = np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)
            out[:, fs:fe] = out[:, fs:fe] * a_gain + audio[:, fs - start:fe - start] * b_gain
            out[:, fe:seg_end] = audio[:, fe - start:seg_end - start]
        end = max(end, seg_end)
    return out


@dataclass
class GenerationResult:
    audio: np.ndarray                 # (2, num_samples) float32
    sample_rate: int
    duration_s: float
    windows: list[Window]
    precision: str                    # "bf16" or "fp32" (the generator's sampling precision)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


class FoleyPipeline:
    """Loaded models plus the text-encoder config of a bundle. Build with `from_bundle` (or directly from modules)."""

    def __init__(self, generator, vae, vocoder, semantic, sync, text_cfg, *, device: str | torch.device = "cpu",
                 precision: str = "auto", text_encoder=None, trained: bool = True, name: str = "",
                 card: str = "", defaults: dict | None = None):
        from foleyflow.audio import MEL_SETTINGS
        from foleyflow.models.vae import samples_per_latent

        self.device = resolve_device(device)
        g = generator.cfg
        mel = MEL_SETTINGS[vae.cfg.mel_setting]
        problems = []
        if g.latent_channels != 2 * vae.cfg.latent_dim:
            problems.append(f"generator has {g.latent_channels} latent channels, the stereo VAE gives "
                            f"{2 * vae.cfg.latent_dim}")
        if (g.sample_rate, g.samples_per_latent) != (mel.sample_rate, samples_per_latent(vae.cfg)):
            problems.append(f"generator expects {g.sample_rate} Hz and {g.samples_per_latent} samples per latent, "
                            f"the VAE gives {mel.sample_rate} Hz and {samples_per_latent(vae.cfg)}")
        if (vocoder.cfg.mel_setting, vocoder.cfg.n_mels) != (vae.cfg.mel_setting, vae.cfg.n_mels):
            problems.append("vocoder and VAE use different mel settings")
        for what, dim, fps, enc in (("visual", g.visual_dim, g.visual_fps, semantic), ("sync", g.sync_dim, g.sync_fps,
                                                                                      sync)):
            if (dim, float(fps)) != (enc.out_dim, float(enc.fps)):
                problems.append(f"generator expects {dim}-d {what} features at {fps:g} fps, the encoder gives "
                                f"{enc.out_dim}-d at {enc.fps:g} fps")
        if (g.text_dim, g.text_len) != (384, text_cfg.output_len):
            problems.append(f"generator expects {g.text_len} x {g.text_dim} text features, the text encoder gives "
                            f"{text_cfg.output_len} x 384")
        if torch.isnan(generator.latent_std).any():
            problems.append("generator has no latent statistics")
        if problems:
            raise CheckpointError("models do not fit together: " + "; ".join(problems))
        self.generator = generator.to(self.device).eval()
        self.vae, self.vocoder = vae.to(self.device).eval(), vocoder.to(self.device).eval()
        self.semantic, self.sync = semantic.to(self.device).eval(), sync.to(self.device).eval()
        self.text_cfg, self._text_encoder = text_cfg, text_encoder
        self.trained, self.name, self.card, self.defaults = trained, name, card, dict(defaults or {})
        if precision not in ("auto", "fp32", "bf16"):
            raise FoleyError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        if precision == "bf16" and not bf16_supported(self.device):
            raise FoleyError(f"bf16 is not supported on this {self.device.type}; use precision fp32 or auto")
        self.precision = "bf16" if precision == "bf16" or (precision == "auto" and bf16_supported(self.device)) \
            else "fp32"
        if self.precision == "bf16":
            from foleyflow.models.generator_sampling import bf16_copy
            self._sampling_net = bf16_copy(self.generator)
        else:
            self._sampling_net = self.generator

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_bundle(cls, folder: str | Path, device: str | torch.device = "cpu", precision: str = "auto",
                    text_encoder=None) -> "FoleyPipeline":
        """Loads every model of a bundle folder (see foleyflow.bundle); a wrong or inconsistent bundle gives a
        one-line CheckpointError."""
        import json

        from foleyflow.bundle import read_bundle, text_config_from_bundle
        from foleyflow.checkpoint import PROVENANCE, checkpoint_identities, read_metadata
        from foleyflow.data.features import text_encoder_record
        from foleyflow.models.av_ssl import load_semantic_encoder, load_sync_encoder
        from foleyflow.models.generator_io import load_generator
        from foleyflow.models.vae import load_vae
        from foleyflow.models.vocoder import load_vocoder

        info = read_bundle(folder)
        text_cfg = text_config_from_bundle(info)
        f = info.files
        dev = resolve_device(device)
        generator = load_generator(f["generator"])
        prov = json.loads(read_metadata(f["generator"]).get(PROVENANCE, "{}") or "{}")
        producers = prov.get("producers", {}) if isinstance(prov, dict) else {}
        for role in ("semantic_encoder", "sync_encoder", "vae"):
            want = (producers.get(role) or {}).get("sha256")
            if want and want not in checkpoint_identities(f[role]):
                raise CheckpointError(f"bundle {info.folder}: the generator was trained on features of another "
                                      f"{role.replace('_', ' ')} than {f[role].name} (sha256 {want[:12]})")
        want = (producers.get("text_encoder") or {}).get("sha256")
        if want and want != text_encoder_record(text_cfg)["sha256"]:
            raise CheckpointError(f"bundle {info.folder}: the generator was trained with another text encoder "
                                  "config than bundle.json names")
        return cls(generator, load_vae(f["vae"]), load_vocoder(f["vocoder"]), load_semantic_encoder(
            f["semantic_encoder"]), load_sync_encoder(f["sync_encoder"]), text_cfg, device=dev, precision=precision,
            text_encoder=text_encoder, trained=info.trained, name=info.name, card=info.card, defaults=info.defaults)

    @property
    def window_s(self) -> float:
        return float(self.generator.cfg.duration_s)

    @property
    def sample_rate(self) -> int:
        return int(self.generator.cfg.sample_rate)

    @property
    def text_encoder(self):
        """MiniLM with the bundle's token budget, loaded on first use (only prompts, CoTs and negatives need it)."""
        if self._text_encoder is None:
            import dataclasses
            import json
            self._text_encoder = _load_text_encoder(json.dumps(dataclasses.asdict(self.text_cfg)), str(self.device))
        if self._text_encoder.cfg.output_len != self.text_cfg.output_len:
            raise FoleyError("the text encoder given to the pipeline has another token budget than the bundle")
        return self._text_encoder

    def text_features(self, prompt: str | None = None, cot: str | Mapping[str, str] | None = None) -> torch.Tensor:
        """(1, text_len, 384): a prompt, a chain of thought (FoleyWorld's text format or a mapping of its four parts),
        or neither (the generator's stored empty-text features)."""
        from foleyflow.data.features import cot_parts

        if prompt and cot:
            raise FoleyError("give a prompt or a chain of thought, not both")
        if cot:
            parts = cot_parts(cot) if isinstance(cot, str) else dict(cot)
            return self.text_encoder.encode_cot([parts]).tokens.float()
        if prompt:
            return self.text_encoder.encode([prompt]).tokens.float()
        return self.generator.empty_string_feat[None].float().cpu()

    # ------------------------------------------------------------------------------------------------ generation
    def generate(self, video: str | Path | None = None, *, prompt: str | None = None,
                 cot: str | Mapping[str, str] | None = None, negative: str | None = None,
                 duration_s: float | None = None, steps: int | None = None, cfg: float | None = None, seed: int = 0,
                 overlap_s: float | None = None, sample_rate: int | None = None, loudness_lufs: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> GenerationResult:
        """Generates the stereo soundtrack of `video` (or, without a video, `duration_s` seconds from the text).
        `progress(done, total)` is called after every network evaluation step."""
        from foleyflow.flow.samplers import euler
        from foleyflow.models.generator_sampling import generate
        from foleyflow.models.vae import decode_channels
        from foleyflow.models.vocoder import vocode_channels

        steps = int(self.defaults.get("steps", 25) if steps is None else steps)
        cfg = float(self.defaults.get("cfg", 4.5) if cfg is None else cfg)
        overlap_s = float(self.defaults.get("overlap_s", 1.0) if overlap_s is None else overlap_s)
        check_generation_args(steps, cfg, duration_s if video is None else None, sample_rate, loudness_lufs)
        timings = {k: 0.0 for k in ("decode", "encoders", "text", "sampling", "codec", "post")}
        t0 = 0.0
        video_start = 0.0
        if video is not None:
            from foleyflow.media import probe
            info = probe(video)
            if info.video is None:
                raise FoleyError(f"{video}: has no video stream (for text-to-audio leave out VIDEO and give a "
                                 "duration)")
            duration_s, video_start = float(info.video.duration_s), float(info.video.start_s)
            if duration_s > MAX_DURATION_S:
                raise FoleyError(f"{video}: lasts {duration_s:.0f} s; at most {MAX_DURATION_S:.0f} s are supported")
        elif duration_s is None:
            raise FoleyError("text-only generation needs a duration (--duration S)")
        t0 = time.perf_counter()
        text = self.text_features(prompt, cot)
        neg = self.text_encoder.encode([negative]).tokens.float() if negative else None
        timings["text"] += time.perf_counter() - t0

        sr = self.sample_rate
        num_samples = round(duration_s * sr)
        windows = generation_windows(duration_s, self.window_s, overlap_s)
        net, fp32_net = self._sampling_net, self.generator
        gen = torch.Generator().manual_seed(int(seed))
        total, done = steps * len(windows), 0

        def sampler(fn, x, ts, **kw):
            def counted(x, t):
                nonlocal done
                v = fn(x, t)
                done += 1
                if progress:
                    progress(done, total)
                return v
            return euler(counted, x, ts, **kw)

        segments = []
        for w in windows:
            for m in {id(net): net, id(fp32_net): fp32_net}.values():
                m.set_duration(w.duration_s)
            latent_len, visual_len, sync_len = fp32_net.latent_len, fp32_net.visual_len, fp32_net.sync_len
            if video is not None:
                visual, sync = self._video_features(video, Window(video_start + w.start_s, w.duration_s),
                                                    visual_len, sync_len, timings)
            else:
                visual = fp32_net.empty_clip_feat.detach()[None].expand(1, visual_len, -1).float()
                sync = fp32_net.empty_sync_feat.detach()[None].expand(1, sync_len, -1).float()
            x0 = torch.randn((1, latent_len, fp32_net.cfg.latent_channels), generator=gen)
            t0 = time.perf_counter()
            dev = self.device
            x1 = generate(net, x0.to(dev), visual.to(dev), sync.to(dev), text.to(dev), cfg_scale=cfg,
                          num_steps=steps, sampler=sampler, negative_text=None if neg is None else neg.to(dev))
            timings["sampling"] += time.perf_counter() - t0
            _check_finite(x1, "sampling", video, w)  # safety: NaN/inf is an error where it is made
            t0 = time.perf_counter()
            with torch.inference_mode():
                z = fp32_net.unnormalize(x1.float()).transpose(1, 2)          # (1, C, latent_len)
                wav = vocode_channels(self.vocoder, decode_channels(self.vae, z))[0].float().cpu().numpy()
            timings["codec"] += time.perf_counter() - t0
            _check_finite(wav, "decode", video, w)
            take = min(wav.shape[1], round(w.duration_s * sr))
            segments.append((round(w.start_s * sr), wav[:, :take]))
        t0 = time.perf_counter()
        audio = crossfade_join(segments, num_samples, round(overlap_s * sr))
        audio, out_sr, notes = postprocess(audio, sr, duration_s, sample_rate, loudness_lufs)
        timings["post"] = time.perf_counter() - t0
        if not np.any(audio):  # a silent video may rightly give silence: a warning, not an error
            notes.append("warning: the model produced all-zero audio (silence)")
        return GenerationResult(audio, out_sr, float(duration_s), windows, self.precision, notes, timings)

    def _video_features(self, video, window: Window, visual_len: int, sync_len: int, timings: dict):
        t0 = time.perf_counter()
        sem_frames = decode_window(video, self.semantic, window.start_s, window.duration_s, visual_len)
        n25 = int(math.floor(window.duration_s * self.sync.fps + 1e-6))
        sync_frames = decode_window(video, self.sync, window.start_s, window.duration_s, n25)
        t1 = time.perf_counter()
        with torch.inference_mode():
            visual = self.semantic(sem_frames.to(self.device)).float().cpu()
            sync = self.sync(sync_frames.to(self.device)).float().cpu()
        timings["decode"] += t1 - t0
        timings["encoders"] += time.perf_counter() - t1
        if visual.shape[1] != visual_len or sync.shape[1] != sync_len:
            raise FoleyError(f"encoders gave {visual.shape[1]} visual and {sync.shape[1]} sync tokens, the generator "
                             f"expects {visual_len} and {sync_len}")
        return visual, sync


def _check_finite(values, stage: str, video, window: Window) -> None:
    """One-line FoleyError if a stage (sampling: latents; decode: the codec's waveform) made NaN or infinite values,
    naming the stage, the video (or text-only) and the window."""
    finite = torch.isfinite(values).all() if isinstance(values, torch.Tensor) else np.isfinite(values).all()
    if not bool(finite):
        what = f"video {video}" if video is not None else "text-only generation"
        raise FoleyError(f"{stage} produced NaN/infinite values for {what} (window at {window.start_s:g} s): the "
                         "model bundle's weights are broken")


@lru_cache(maxsize=2)
def _load_text_encoder(cfg_json: str, device: str):
    """MiniLM loads in seconds: pipelines of one process with the same token budget share one instance."""
    import json

    from foleyflow.data.features import load_text_encoder_quietly
    from foleyflow.models.text_encoder import TextEncoderConfig
    return load_text_encoder_quietly(TextEncoderConfig(**json.loads(cfg_json)), device)


def check_generation_args(steps: int, cfg: float, duration_s: float | None, sample_rate: int | None,
                          loudness_lufs: float | None) -> None:
    """One-line FoleyErrors for absurd generation settings (checked before any model runs)."""
    if not 1 <= steps <= 1000:
        raise FoleyError(f"steps must be between 1 and 1000, got {steps}")
    if not (math.isfinite(cfg) and 0 <= cfg <= 50):
        raise FoleyError(f"cfg (guidance scale) must be between 0 and 50, got {cfg}")
    if duration_s is not None and not (math.isfinite(duration_s) and 0.1 <= duration_s <= MAX_DURATION_S):
        raise FoleyError(f"duration must be between 0.1 and {MAX_DURATION_S:.0f} s, got {duration_s}")
    if sample_rate is not None and not 8000 <= sample_rate <= 192000:
        raise FoleyError(f"sample rate must be between 8000 and 192000 Hz, got {sample_rate}")
    if loudness_lufs is not None and not (math.isfinite(loudness_lufs) and -70 <= loudness_lufs <= 0):
        raise FoleyError(f"loudness must be between -70 and 0 LUFS, got {loudness_lufs}")


def postprocess(audio: np.ndarray, sr: int, duration_s: float, sample_rate: int | None,
                loudness_lufs: float | None) -> tuple[np.ndarray, int, list[str]]:
    """Resample to `sample_rate` (length fixed to round(duration_s * rate)), normalise loudness, keep peaks <= 0.99."""
    from foleyflow.audio import resample

    notes = []
    out_sr = int(sample_rate or sr)
    if out_sr != sr:
        audio = resample(audio, sr, out_sr)
    n = round(duration_s * out_sr)
    audio = audio[:, :n] if audio.shape[1] >= n else np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    if loudness_lufs is not None:
        import pyloudnorm

        if n < round(0.4 * out_sr):
            notes.append("loudness not normalised: the audio is shorter than 0.4 s")
        else:
            # Measured on a copy scaled to a 0.5 peak: loudness scales with gain, and this keeps very quiet audio
            # (below BS.1770's -70 LUFS absolute gate, e.g. from an untrained model) measurable.
            peak_in = float(np.abs(audio).max()) if audio.size else 0.0
            measured = float("-inf")
            if peak_in > 0:
                pre = 0.5 / peak_in
                scaled = (audio.astype(np.float64) * pre).T
                measured = pyloudnorm.Meter(out_sr).integrated_loudness(scaled) - 20 * math.log10(pre)
            if not math.isfinite(measured):
                notes.append("loudness not normalised: the audio is silent")
            else:
                audio = audio * np.float32(10 ** ((loudness_lufs - measured) / 20))
                notes.append(f"loudness {measured:.1f} -> {loudness_lufs:.1f} LUFS")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * np.float32(0.99 / peak)
        notes.append(f"scaled down by {20 * math.log10(peak / 0.99):.1f} dB to avoid clipping")
    return np.ascontiguousarray(audio, dtype=np.float32), out_sr, notes
