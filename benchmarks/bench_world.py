"""FoleyWorld throughput: clips/s for mp4 + wav + JSON at the default size (8 s, 128x128, 25 fps, 16 kHz stereo).

    python benchmarks/bench_world.py [--n 40] [--workers 2] [--repeats 3] [--out /tmp/bench_world] [--profile]

Prints the median over repeats of clips/s, MB per clip on disk, and the projected time for a 20,000-clip training
set; with --profile, the per-stage seconds per clip measured in one process (scene+physics, audio, text+truth,
frames, wav, mp4) as wall time and as CPU time of the process (all its threads), and the rate the CPU time
implies on two free cores. The issue's target is 5 clips/s on the 2-core reference machine. Timings are noisy when other
jobs share the cores.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children (all threads)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def profile(n: int, out: Path) -> dict:
    from foleyflow.media import write_audio, write_video
    from foleyflow.world.config import WorldConfig
    from foleyflow.world.make import load_bank
    from foleyflow.world.mixer import render_scene_audio
    from foleyflow.world.physics import plan_clip
    from foleyflow.world.render import render_frames
    from foleyflow.world.text import write_texts
    from foleyflow.world.truth import build_truth, write_truth

    cfg = WorldConfig()
    bank = load_bank(cfg)
    out.mkdir(parents=True, exist_ok=True)
    spent: dict[str, float] = {}
    cpu: dict[str, float] = {}
    clock = [time.process_time()]

    def lap(name, t0):
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - clock[0]
        clock[0] = time.process_time()
        return time.perf_counter()

    for seed in range(n):
        t = time.perf_counter()
        clock[0] = time.process_time()
        scene, sim = plan_clip(seed, "train", cfg)
        t = lap("scene+physics", t)
        audio = render_scene_audio(sim.events, cfg.duration_s, cfg.sample_rate, scene.room, False, seed, bank)
        t = lap("audio", t)
        truth = build_truth("b", scene, sim, audio.events, cfg)
        truth["text"] = write_texts(truth)
        write_truth(out / "b.json", truth)
        t = lap("text+truth", t)
        frames = render_frames(scene, sim, cfg)
        t = lap("frames", t)
        write_audio(out / "b.wav", audio.mix, cfg.sample_rate)
        t = lap("wav", t)
        write_video(out / "b.mp4", frames, cfg.fps, audio=audio.mix, sample_rate=cfg.sample_rate, crf=cfg.crf)
        lap("mp4", t)
    return {k: v / n for k, v in spent.items()}, {k: v / n for k, v in cpu.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="/tmp/bench_world")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from foleyflow.world.config import WorldConfig
    from foleyflow.world.make import load_bank, make_split

    cfg = WorldConfig()
    load_bank(cfg)                       # the bank is rendered once per machine; not part of the clip rate
    out = Path(args.out)
    rates, sizes, cpus = [], [], []
    for r in range(args.repeats):
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        cpu0 = _cpu()
        make_split(out, "train", args.n, cfg, seed=r * args.n, workers=args.workers)
        dt = time.perf_counter() - t0
        cpus.append((_cpu() - cpu0) / args.n)
        rates.append(args.n / dt)
        files = [p for p in (out / "train").glob("train_*") if p.suffix in (".mp4", ".wav", ".json")]
        sizes.append(sum(p.stat().st_size for p in files) / args.n / 1e6)
        print(f"run {r + 1}: {args.n} clips in {dt:.2f} s = {rates[-1]:.2f} clips/s, {sizes[-1]:.3f} MB/clip, "
              f"{cpus[-1]:.3f} CPU s/clip (all processes)")
    rate = statistics.median(rates)
    print(f"median: {rate:.2f} clips/s with {args.workers} workers (target 5), {statistics.median(sizes):.3f} MB per "
          f"clip (mp4 + wav + JSON); 20,000 clips: {20000 / rate / 3600:.2f} h, "
          f"{20000 * statistics.median(sizes) / 1000:.1f} GB; {statistics.median(cpus):.3f} CPU s per clip, i.e. "
          f"{2 / statistics.median(cpus):.2f} clips/s if 2 cores were free")
    if args.profile:
        wall, cpu = profile(min(args.n, 20), out / "profile")
        for name, prof in (("wall", wall), ("CPU (all threads of the process)", cpu)):
            total = sum(prof.values())
            print(f"per-clip {name} seconds in one process: " + ", ".join(f"{k} {v:.3f}" for k, v in prof.items())
                  + f"; total {total:.3f}")
        print(f"CPU-bound projection on 2 free cores: {2 / sum(cpu.values()):.2f} clips/s")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
