"""Speed of FoleyWorld's audio side: sound-bank rendering and loading, and render_scene_audio for a typical scene.

    python benchmarks/bench_world_audio.py [--runs 7] [--rates 16000 44100]

A typical scene: 8 s, 11 events (7 discrete strikes/impacts from 6 sources, a rolling object, a passing engine, rain).
Prints wall-clock medians (and min) and CPU-time medians of this process over --runs renders per configuration.
Wall times on a shared machine are noisy; CPU time is what the render costs when the cores are free.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foleyflow.events import SoundEvent  # noqa: E402
from foleyflow.world.mixer import render_scene_audio  # noqa: E402
from foleyflow.world.soundbank import _LOADED, load_soundbank  # noqa: E402


def typical_scene() -> list[SoundEvent]:
    return [
        SoundEvent("marimba", "discrete", 0.52, source_id=1, pan=-0.5, params={"midi_note": 62, "impact_speed": 2.0}),
        SoundEvent("impact_wood", "discrete", 1.20, source_id=2, pan=0.3, params={"size": 0.1, "impact_speed": 3.0}),
        SoundEvent("impact_metal", "discrete", 2.05, source_id=3, pan=0.6, params={"size": 0.3, "impact_speed": 1.0}),
        SoundEvent("impact_glass", "discrete", 2.50, source_id=4, pan=0.8, params={"size": 0.1, "impact_speed": 1.5}),
        SoundEvent("tom", "discrete", 3.00, source_id=5, pan=0.0, params={"midi_note": 45}),
        SoundEvent("snare", "discrete", 3.50, source_id=5, pan=0.0),
        SoundEvent("glockenspiel", "discrete", 4.00, source_id=6, pan=0.9, params={"midi_note": 80}),
        SoundEvent("rolling", "continuous", 1.20, offset_s=3.0, source_id=2, pan_track=[(1.2, 0.3), (3.0, -0.5)],
                   param_track={"speed": [(1.2, 2.0), (3.0, 0.2)]}, params={"material": "wood"}),
        SoundEvent("engine", "continuous", 0.0, offset_s=8.0, source_id=7, pan_track=[(0.0, -1.0), (8.0, 1.0)],
                   params={"closest_s": 4.0, "pass_speed": 20.0}),
        SoundEvent("rain", "ambience", 0.0, offset_s=8.0, gain=0.5),
        SoundEvent("impact_plastic", "discrete", 5.00, source_id=8, pan=-0.9, params={"size": 0.2}),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rates", type=int, nargs="+", default=[16000, 44100])
    args = ap.parse_args()
    events = typical_scene()
    for rate in args.rates:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            load_soundbank(rate, cache_dir=tmp)
            render_s = time.perf_counter() - t
            _LOADED.clear()
            t = time.perf_counter()
            bank = load_soundbank(rate, cache_dir=tmp)
            load_s = time.perf_counter() - t
        print(f"bank {rate} Hz: render + cache {render_s:.2f} s (soundfont hash included), load from cache "
              f"{load_s:.2f} s, {bank.audio.nbytes / 1e6:.1f} MB int16, {len(bank.index)} notes")
        for room in ("dry", "small_room", "hall"):
            for binaural in (False, True):
                render_scene_audio(events, 8.0, rate, room=room, binaural=binaural, seed=0, bank=bank)  # warm-up
                times, cpu = [], []
                for run in range(args.runs):
                    t, c = time.perf_counter(), time.process_time()
                    render_scene_audio(events, 8.0, rate, room=room, binaural=binaural, seed=run, bank=bank)
                    times.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                print(f"  scene 8 s, {len(events)} events, {rate} Hz, room={room:10s} binaural={binaural!s:5s}: "
                      f"wall median {1000 * statistics.median(times):6.1f} ms (min {1000 * min(times):6.1f}), "
                      f"CPU median {1000 * statistics.median(cpu):6.1f} ms")


if __name__ == "__main__":
    main()
