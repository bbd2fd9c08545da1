"""Media I/O on PyAV and soundfile: probe, decode frames and audio at target rates, write audio, encode and mux video.

(Under construction: the encoding helpers below come first because FoleyWorld needs them.)
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from foleyflow.errors import MediaError


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: Fraction | int | str, *,
                audio: np.ndarray | None = None, sample_rate: int | None = None, crf: int = 23,
                preset: str = "veryfast", audio_bitrate: int = 128_000) -> Path:
    """Encodes frames (each (H, W, 3) uint8 RGB) as H.264 (yuv420p) at the exact rational `fps` and, if given, `audio`
    ((C, num_samples) float in [-1, 1], C = 1 or 2) as AAC at `sample_rate`, into an mp4 at `path`.

    H and W must be even (yuv420p). AAC adds encoder priming; decoders that honour the edit list get the exact length
    back within one AAC frame (1024 samples).
    """
    import av

    path = Path(path)
    if not path.parent.is_dir():
        raise MediaError(f"cannot write {path}: folder {path.parent} does not exist")
    fps = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
    try:
        container = av.open(str(path), mode="w")
    except (OSError, av.error.FFmpegError) as e:
        raise MediaError(f"cannot write {path}: {e}") from None
    with container:
        vstream = None
        astream = None
        if audio is not None:
            if sample_rate is None:
                raise ValueError("sample_rate is required with audio")
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim != 2 or audio.shape[0] not in (1, 2):
                raise ValueError(f"audio must be (channels, num_samples) with 1 or 2 channels, got {audio.shape}")
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if vstream is None:
                h, w = frame.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"frame size must be even for H.264 yuv420p, got {w}x{h}")
                vstream = container.add_stream("libx264", rate=fps)
                vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
                vstream.options = {"crf": str(crf), "preset": preset}
                vstream.codec_context.time_base = Fraction(1) / fps
                if audio is not None:
                    astream = container.add_stream("aac", rate=sample_rate)
                    astream.layout = "stereo" if audio.shape[0] == 2 else "mono"
                    astream.bit_rate = audio_bitrate
            for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if vstream is None:
            raise ValueError("no frames to write")
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            chunk = 1024
            for start in range(0, audio.shape[1], chunk):
                block = np.ascontiguousarray(audio[:, start:start + chunk])
                aframe = av.AudioFrame.from_ndarray(block, format="fltp", layout=astream.layout.name)
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *, subtype: str | None = None) -> Path:
    """Writes (C, num_samples) float audio as wav (float32 by default... PCM_16 if subtype='PCM_16') or flac."""
    import soundfile as sf

    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if not path.parent.is_dir():
        raise MediaError(f"cannot write {path}: folder {path.parent} does not exist")
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("wav", "flac"):
        raise MediaError(f"cannot write {path}: audio files must end in .wav or .flac")
    if subtype is None:
        subtype = "FLOAT" if fmt == "wav" else "PCM_24"
    try:
        sf.write(str(path), audio.T, sample_rate, subtype=subtype)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise MediaError(f"cannot write {path}: {e}") from None
    return path
