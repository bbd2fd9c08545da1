"""Overhead of `foleyflow serve` over a direct `FoleyPipeline.generate` call for an 8 s clip (issue 22 target: at most
10%), median of N runs (default 5) after one warm-up each.

direct:  pipe.generate(video, steps, seed) in this process (the models loaded once, before timing).
service: a `foleyflow serve` subprocess on 127.0.0.1 (the same bundle, one worker); per run: upload the video
         (multipart), wait for the job (GET /v1/jobs/{id}?wait=30), download the .wav. The service also writes the .wav and
         muxes the video (the result a client gets), which the direct call does not: that is part of its overhead.

    .venv/bin/python benchmarks/bench_serve.py [--bundle DIR] [--video examples/demo.mp4] [--steps 25] [--runs 5]

Then 20 concurrent submissions of the clip (all must finish or get 429) and the server's peak RSS before and after.
Pause background training while timing (kill -STOP PID, then kill -CONT PID); the figures hold for the CPU printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def concurrent_submissions(url: str, data: bytes, steps: int, n: int = 20) -> list[int]:
    """n clients submit the video at once; waits for every accepted job; returns the submissions' status codes."""
    import threading

    import httpx

    codes, ids, lock = [], [], threading.Lock()

    def submit(k: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            r = c.post("/v1/jobs", files={"video": ("clip.mp4", data)}, data={"steps": str(steps), "seed": str(k)})
        with lock:
            codes.append(r.status_code)
            if r.status_code == 202:
                ids.append(r.json()["id"])

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with httpx.Client(base_url=url, timeout=600) as c:
        for job_id in ids:
            while (state := c.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()["state"]) in ("queued",
                                                                                                  "running"):
                pass
            if state != "done":
                codes.append(f"job {job_id} {state}")
    return codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "foleyflow" / "assets" / "default"))
    ap.add_argument("--video", default=str(ROOT / "examples" / "demo.mp4"))
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in both (0: torch's default)")
    args = ap.parse_args()

    import httpx
    import torch

    from foleyflow.media import probe
    from foleyflow.pipeline import FoleyPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    duration = probe(args.video).video.duration_s
    pipe = FoleyPipeline.from_bundle(args.bundle)
    pipe.generate(args.video, steps=args.steps, seed=0)                 # warm-up
    direct = []
    for k in range(args.runs):
        t0 = time.perf_counter()
        pipe.generate(args.video, steps=args.steps, seed=k)
        direct.append(time.perf_counter() - t0)
    del pipe

    with tempfile.TemporaryDirectory() as jobs:
        cmd = [sys.executable, "-m", "foleyflow", "serve", "--jobs", jobs, "--bundle", args.bundle, "--port", "0",
               "--max-steps", str(max(100, args.steps)), "--max-duration", str(max(60.0, duration + 1))]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        try:
            line = ""
            while "listening on" not in line:
                line = proc.stdout.readline()
                if not line and proc.poll() is not None:
                    sys.exit("the service did not start")
            url = re.search(r"http://[0-9.]+:\d+", line).group(0)
            data = Path(args.video).read_bytes()
            with httpx.Client(base_url=url, timeout=600) as c:
                def one(seed: int) -> float:
                    t0 = time.perf_counter()
                    r = c.post("/v1/jobs", files={"video": ("clip.mp4", data)},
                               data={"steps": str(args.steps), "seed": str(seed)})
                    r.raise_for_status()
                    job_id = r.json()["id"]
                    while c.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()["state"] in ("queued", "running"):
                        pass
                    c.get(f"/v1/jobs/{job_id}/result").raise_for_status()
                    return time.perf_counter() - t0

                one(0)                                                   # warm-up
                service = [one(k) for k in range(args.runs)]
                one_job_rss = peak_rss_mb(proc.pid)
                codes = concurrent_submissions(url, data, args.steps)
                burst_rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=600)

    d, s = statistics.median(direct), statistics.median(service)
    print(f"CPU: {cpu_name()}; torch threads: {args.threads or torch.get_num_threads()}; clip {duration:.1f} s, "
          f"{args.steps} steps, {len(data)} bytes uploaded")
    print(f"direct FoleyPipeline.generate: median {d:.3f} s over {args.runs} runs "
          f"({', '.join(f'{x:.3f}' for x in direct)})")
    print(f"service (upload + job + download): median {s:.3f} s ({', '.join(f'{x:.3f}' for x in service)})")
    print(f"overhead: {100 * (s - d) / d:+.1f}% (target: at most +10%)")
    print(f"20 concurrent submissions: {codes.count(202)} accepted and finished, {codes.count(429)} refused (429), "
          f"other: {[c for c in codes if c not in (202, 429)]}; server peak RSS {one_job_rss:.0f} MB after single "
          f"jobs, "
          f"{burst_rss:.0f} MB after the burst (target: at most one job's + 1024 MB)")


if __name__ == "__main__":
    main()
