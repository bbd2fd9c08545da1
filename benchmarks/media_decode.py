"""Decoding speed and memory of foleyflow.media on a synthetic 1080p video (prints figures; not a test).

Usage: python benchmarks/media_decode.py [--seconds 20] [--runs 3]

Encodes a moving 1920x1080 25 fps H.264 test video with 48 kHz stereo AAC into a temporary folder, then, each in a
fresh process, streams it with iter_frames at 8 fps/224 px and 25 fps/224 px and decodes the audio at 16 kHz, and
reports the median wall time, the speed relative to real time and the peak resident memory while decoding
(VmHWM reset after the imports; Linux only). Run with two
lengths to see that memory does not grow with the length of the video.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import av, scipy.signal  # imported before timing: measure decoding, not imports
from foleyflow.media import iter_frames, decode_audio
path, what = sys.argv[2], sys.argv[3]
def hwm_mb():  # peak resident memory since the last reset (VmHWM), in MB
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = hwm_mb()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak: measure decoding, not the imports
t = time.perf_counter()
if what == "audio":
    n = decode_audio(path, 16000, 2).samples.shape[1]
else:
    fps = int(what)
    n = sum(1 for _ in iter_frames(path, fps, 224, "center_crop"))
print(json.dumps({"seconds": time.perf_counter() - t, "count": n,
                  "peak_mb": hwm_mb(), "import_peak_mb": base}))
"""


def make_video(path: Path, seconds: int) -> None:
    import numpy as np

    from foleyflow.media import write_video

    h, w, fps, sr = 1080, 1920, 25, 48000
    yy, xx = np.mgrid[0:h, 0:w]
    base = ((xx // 40 + yy // 40) % 2 * 120 + 60).astype(np.uint8)

    def frames():
        for i in range(seconds * fps):
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = np.roll(base, 7 * i, axis=1)
            img[..., 1] = np.roll(base, 3 * i, axis=0)
            img[..., 2] = (i * 5) % 256
            yield img

    t = np.arange(seconds * sr) / sr
    audio = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)])
    write_video(path, frames(), fps, audio=audio, sample_rate=sr, preset="ultrafast", crf=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench_1080p.mp4"
        make_video(path, args.seconds)
        print(f"{args.seconds} s of 1920x1080 25 fps H.264 + 48 kHz stereo AAC ({path.stat().st_size >> 20} MB)")
        for what, label in [("8", "frames 8 fps 224 px"), ("25", "frames 25 fps 224 px"), ("audio", "audio 16 kHz")]:
            res = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(path), what],
                                             check=True, capture_output=True, text=True).stdout)
                   for _ in range(args.runs)]
            sec = statistics.median(r["seconds"] for r in res)
            print(f"  {label:22s} {res[0]['count']:7d} out  median {sec:6.2f} s  ({args.seconds / sec:5.1f}x real "
                  f"time)  peak RSS {max(r['peak_mb'] for r in res):6.0f} MB (imports alone "
                  f"{res[0]['import_peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
