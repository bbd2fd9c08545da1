"""Small media files made by the tests themselves (shared by test_media.py and test_info_cli.py)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

BITS_W, BITS_H = 4, 2  # frame j shows j in binary on a 4 x 2 grid of black/white cells (up to 255 frames)


def level_frames(n: int, size=(32, 32)):
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    cell = (ys * BITS_H // h) * BITS_W + xs * BITS_W // w
    for j in range(n):
        bits = (j >> cell) & 1
        yield np.repeat((20 + 215 * bits).astype(np.uint8)[..., None], 3, axis=2)


def frame_index(img: np.ndarray) -> int:
    """Which source frame a decoded frame (any size, stretched) shows: reads the bits at the cell centres."""
    h, w = img.shape[:2]
    j = 0
    for b in range(BITS_W * BITS_H):
        y, x = int((b // BITS_W + 0.5) * h / BITS_H), int((b % BITS_W + 0.5) * w / BITS_W)
        j |= int(img[y, x].mean() > 128) << b
    return j


def make_video(path: Path, n: int, fps, size=(32, 32), audio=None, sample_rate=None) -> Path:
    from foleyflow.media import write_video

    return write_video(path, level_frames(n, size), fps, audio=audio, sample_rate=sample_rate, crf=5)


def make_vfr_video(path: Path, times_s, size=(32, 32)) -> Path:
    """Frames j = 0.. at the given presentation times (variable frame rate), time base 1/1000."""
    import av

    w, h = size
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "5", "bf": "0"}
        s.codec_context.time_base = Fraction(1, 1000)
        for j, (t, img) in enumerate(zip(times_s, level_frames(len(times_s), size))):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_truncated(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def make_unknown_codec(src: Path, dst: Path) -> Path:
    """An mp4 whose video sample entry says 'zzz1' instead of 'avc1': FFmpeg has no decoder for it."""
    data = src.read_bytes()
    assert b"avc1" in data
    dst.write_bytes(data.replace(b"avc1", b"zzz1"))
    return dst


def make_corrupt_header(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    data[:256] = bytes(range(256))
    dst.write_bytes(bytes(data))
    return dst
