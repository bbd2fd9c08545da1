"""`foleyflow serve`: every endpoint through a real uvicorn server on 127.0.0.1 (ephemeral port), hostile uploads,
20 concurrent submissions, the docs' curl examples; in-process (no socket needed): the API key, cancelling a running
job, TTL clean-up and schemathesis against the OpenAPI schema. A tiny untrained bundle and videos made by the test."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from hypothesis import HealthCheck, settings

from foleyflow.fileio import is_temp_name
from test_pipeline import TEXT_CFG, make_video, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 300.0     # generous: the 2-core CI machine is shared


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from foleyflow.models.text_encoder import load_text_encoder

    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", load_text_encoder(TEXT_CFG))


class Server:
    """`foleyflow serve --port 0` in a subprocess; `url` once it listens."""

    def __init__(self, bundle: Path, jobs: Path, *args: str):
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        env.pop("FOLEYFLOW_DEBUG", None)
        self.jobs = jobs
        self.proc = subprocess.Popen([sys.executable, "-m", "foleyflow", "serve", "--jobs", str(jobs), "--bundle",
                                      str(bundle), "--port", "0", "--threads", "1", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line, end = "", time.monotonic() + DEADLINE_S
        while "listening on" not in line and time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
        assert "listening on" in line, self.proc.communicate(timeout=30)[1]
        self.url = re.search(r"http://[0-9.]+:\d+", line).group(0)
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def wait(self, job_id: str, states=("done", "failed", "cancelled")) -> dict:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job['state']} after {DEADLINE_S} s")

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str, str]:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=DEADLINE_S)
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    return {"clip": make_video(d / "clip.mp4", 1.0, fps=10, size=(48, 32), audio=False),
            "wide": make_video(d / "wide.mp4", 0.5, fps=10, size=(192, 64), audio=False),
            "long": make_video(d / "long.mp4", 10.0, fps=2, size=(32, 32), audio=False)}


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    s = Server(bundle, tmp_path_factory.mktemp("jobs"), "--workers", "2", "--max-queue", "6", "--max-upload-mb",
               "0.25", "--max-duration", "9", "--max-resolution", "128x128", "--max-steps", "10")
    yield s
    code, _, err = s.stop()
    assert code == 0, err                                  # SIGTERM drains and exits 0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_leftovers(jobs: Path) -> None:
    assert not [p for p in jobs.rglob("*") if is_temp_name(p.name)]
    for d in jobs.iterdir():          # every job folder holds a job record (refused uploads leave nothing)
        assert d.name == ".lock" or (d / "job.json").is_file(), sorted(p.name for p in d.iterdir())


# ------------------------------------------------------------------------------------------------ endpoints
def test_health_and_openapi(server):
    h = server.client.get("/v1/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and len(h.json()["bundle_sha256"]) == 64
    assert h.json()["limits"]["max_queue"] == 6
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/v1/health", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result",
            "/v1/jobs/{job_id}/cancel"} <= set(paths)
    assert {"multipart/form-data", "application/json"} <= set(paths["/v1/jobs"]["post"]["requestBody"]["content"])


def test_video_job_end_to_end_with_a_hostile_file_name(server, media, tmp_path):
    files = {"video": ("../../../evil.mp4", media["clip"].read_bytes(), "text/plain")}   # the name is never a path
    r = server.client.post("/v1/jobs", files=files, data={"steps": "2", "seed": "5", "cfg": "3"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", job["id"]) and job["state"] in ("queued", "running")
    r = server.client.get(f"/v1/jobs/{job['id']}/result")
    assert r.status_code in (409, 200)                    # 409 until it is done
    job = server.wait(job["id"])
    assert job["state"] == "done" and job["progress"] == 1.0, job
    res = job["result"]
    assert job["options"]["steps"] == 2 and job["options"]["seed"] == 5 and res["options"]["cfg_scale"] == 3.0
    assert res["bundle_sha256"] == server.client.get("/v1/health").json()["bundle_sha256"]
    wav = server.client.get(f"/v1/jobs/{job['id']}/result")
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert sha(wav.content) == res["wav"]["sha256"]
    vid = server.client.get(f"/v1/jobs/{job['id']}/result", params={"kind": "video"})
    assert vid.status_code == 200 and sha(vid.content) == res["video"]["sha256"]
    (tmp_path / "out.mp4").write_bytes(vid.content)
    from foleyflow.media import probe
    assert probe(tmp_path / "out.mp4").audio is not None
    assert not list(server.jobs.parent.rglob("evil*"))
    assert server.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    no_leftovers(server.jobs)


def test_text_job_and_result_kinds(server):
    r = server.client.post("/v1/jobs", json={"duration_s": 1.0, "steps": 1, "seed": 2})
    assert r.status_code == 202, r.text
    job = server.wait(r.json()["id"])
    assert job["state"] == "done" and job["kind"] == "text"
    assert server.client.get(f"/v1/jobs/{job['id']}/result", params={"kind": "video"}).status_code == 404
    assert server.client.get(f"/v1/jobs/{job['id']}/result", params={"kind": "gif"}).status_code == 422


def test_status_can_wait_for_the_end_of_a_job(server):
    r = server.client.post("/v1/jobs", json={"duration_s": 1.0, "steps": 2, "seed": 3})
    job_id = r.json()["id"]
    t0 = time.monotonic()
    job = server.client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()   # one request, no polling
    assert job["state"] == "done" and time.monotonic() - t0 < 60
    t0 = time.monotonic()
    assert server.client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()["state"] == "done"
    assert time.monotonic() - t0 < 5                                             # a finished job answers at once
    for bad in ("61", "-1", "soon"):
        r = server.client.get(f"/v1/jobs/{job_id}", params={"wait": bad})
        assert r.status_code == 422 and "error" in r.json(), bad


def _multipart(body: bytes, name: str = "clip.mp4") -> tuple[bytes, str]:
    b = "x" * 20 + "b0undary"
    head = (f"--{b}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{name}\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    return head + body + f"\r\n--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def test_hostile_and_wrong_uploads_are_clear_4xx(server, media):
    c, clip = server.client, media["clip"].read_bytes()
    wav = media["clip"].with_suffix(".wav")
    import numpy as np
    from foleyflow.media import write_audio
    write_audio(wav, np.zeros((1, 8000), np.float32), 16000)
    big = os.urandom(300 * 1024)

    def chunks():                                          # no Content-Length: the limit holds mid-stream
        body, ctype = _multipart(big)
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]

    body, ctype = _multipart(big)
    cases = [
        (413, c.post("/v1/jobs", files={"video": ("a.mp4", big)})),
        (413, c.post("/v1/jobs", content=chunks(), headers={"content-type": ctype})),
        (415, c.post("/v1/jobs", files={"video": ("a.mp4", clip[:len(clip) // 2])})),        # truncated video
        (400, c.post("/v1/jobs", content=_multipart(clip)[0][:-30], headers={"content-type": ctype})),  # cut body
        (415, c.post("/v1/jobs", files={"video": ("a.mp4", wav.read_bytes(), "video/mp4")})),  # audio, named .mp4
        (415, c.post("/v1/jobs", files={"video": ("a.mp4", b"\x00" * 1000)})),
        (415, c.post("/v1/jobs", content=b"hello", headers={"content-type": "text/plain"})),
        (422, c.post("/v1/jobs", files={"video": ("w.mp4", media["wide"].read_bytes())})),    # over 128x128
        (422, c.post("/v1/jobs", files={"video": ("l.mp4", media["long"].read_bytes())})),    # over 9 s
        (422, c.post("/v1/jobs", files={"video": ("a.mp4", clip)}, data={"steps": "abc"})),
        (422, c.post("/v1/jobs", files={"video": ("a.mp4", clip)}, data={"steps": "11"})),
        (422, c.post("/v1/jobs", files={"video": ("a.mp4", clip)}, data={"cot": "no parts here"})),
        (400, c.post("/v1/jobs", files={"video": ("a.mp4", clip)}, data={"colour": "red"})),
        (400, c.post("/v1/jobs", files={"video": ("a.mp4", clip)}, headers={"content-type": "multipart/form-data"})),
        (422, c.post("/v1/jobs", json={"steps": 1})),
        (422, c.post("/v1/jobs", json={"duration_s": 99})),
        (422, c.post("/v1/jobs", json={"duration_s": 1, "rm -rf": 1})),
        (422, c.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})),
        (422, c.post("/v1/jobs", content=b"[" * 5000, headers={"content-type": "application/json"})),
        (404, c.get("/v1/jobs/" + "A" * 32)),
        (404, c.get("/v1/jobs/..%2F..%2Fetc")),
        (404, c.get("/v1/jobs/" + "A" * 32 + "/result")),
        (404, c.post("/v1/jobs/nope/cancel")),
    ]
    for k, (code, r) in enumerate(cases):
        assert r.status_code == code, (k, r.status_code, r.text)
        assert list(r.json()) == ["error"] and "\n" not in r.json()["error"], (k, r.text)
    try:                                                   # a huge header: refused or dropped, the server lives on
        r = c.get("/v1/health", headers={"x-junk": "j" * 200_000})
        assert r.status_code in (400, 431)
    except httpx.HTTPError:
        pass
    body, ctype = _multipart(clip, name="a" * 20_000)     # a huge part header
    assert c.post("/v1/jobs", content=body, headers={"content-type": ctype}).status_code == 400
    assert c.get("/v1/health").status_code == 200
    no_leftovers(server.jobs)


def test_twenty_concurrent_submissions_finish_or_get_429(server):
    codes, ids, lock = [], [], threading.Lock()

    def submit(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            r = c.post("/v1/jobs", json={"duration_s": 1.0, "steps": 1, "seed": k})
        with lock:
            codes.append(r.status_code)
            if r.status_code == 202:
                ids.append(r.json()["id"])
            else:
                assert r.json()["error"].startswith("the queue is full")

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_S)
    assert len(codes) == 20 and set(codes) <= {202, 429} and len(ids) >= 6, codes
    for job_id in ids:                                      # none lost: every accepted job finishes with a result
        job = server.wait(job_id)
        assert job["state"] == "done", job["error"]
        wav = server.client.get(f"/v1/jobs/{job_id}/result")
        assert sha(wav.content) == job["result"]["wav"]["sha256"]
    assert server.client.get("/v1/health").json()["jobs"]["queued"] == 0


def _bash_blocks(section: str) -> list[str]:
    text = (ROOT / "docs" / "apps.md").read_text()
    part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", part, re.S)


def test_docs_curl_examples_work_as_written(server, tmp_path):
    blocks = _bash_blocks("REST service")
    assert len(blocks) >= 3
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = "set -euo pipefail\n" + "\n".join(blocks).replace("http://127.0.0.1:8000", server.url)
    p = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE_S)
    assert p.returncode == 0, p.stderr + p.stdout
    assert '"state":"done"' in p.stdout
    from foleyflow.media import probe
    assert probe(tmp_path / "demo.foley.mp4").audio is not None and (tmp_path / "demo.foley.wav").stat().st_size


# ------------------------------------------------------------------------------------------------ restart
def test_restart_mid_job_keeps_results_and_fails_the_interrupted_job(bundle, tmp_path):
    jobs = tmp_path / "jobs"
    s = Server(bundle, jobs, "--max-steps", "1000")
    done = s.wait(s.client.post("/v1/jobs", json={"duration_s": 1.0, "steps": 2}).json()["id"])
    first = s.client.get(f"/v1/jobs/{done['id']}/result").content
    slow = s.client.post("/v1/jobs", json={"duration_s": 2.0, "steps": 1000}).json()["id"]
    end = time.monotonic() + DEADLINE_S
    while s.client.get(f"/v1/jobs/{slow}").json()["steps_done"] < 2 and time.monotonic() < end:
        time.sleep(0.05)
    s.stop(signal.SIGKILL)                                  # a crash in the middle of the job
    assert not (jobs / slow / "audio.wav").exists()

    s = Server(bundle, jobs, "--max-steps", "1000", "--drain-timeout", "120")
    assert s.client.get(f"/v1/jobs/{done['id']}").json()["state"] == "done"
    assert s.client.get(f"/v1/jobs/{done['id']}/result").content == first
    job = s.client.get(f"/v1/jobs/{slow}").json()
    assert job["state"] == "failed" and "interrupted" in job["error"]
    assert s.client.get(f"/v1/jobs/{slow}/result").status_code == 409
    no_leftovers(jobs)
    # SIGTERM drains: the running job finishes, the queued one is marked failed, exit 0
    running = s.client.post("/v1/jobs", json={"duration_s": 1.0, "steps": 300}).json()["id"]
    queued = s.client.post("/v1/jobs", json={"duration_s": 1.0, "steps": 300}).json()["id"]
    s.wait(running, states=("running", "done"))
    code, out, err = s.stop(signal.SIGTERM)
    assert code == 0 and "stopped" in out, err
    record = lambda i: json.loads((jobs / i / "job.json").read_text())   # noqa: E731
    assert record(running)["state"] == "done" and (jobs / running / "audio.wav").is_file()
    assert record(queued)["state"] == "failed" and "stopped before" in record(queued)["error"]
    no_leftovers(jobs)


# ------------------------------------------------------------------------------------------------ in process
@pytest.fixture(scope="module")
def pipe(bundle):
    from foleyflow.pipeline import FoleyPipeline
    return FoleyPipeline.from_bundle(bundle)


def _service(pipe, folder: Path, **kw):
    from foleyflow.serve.jobs import JobService, Limits
    return JobService(pipe, folder, bundle_sha256="0" * 64, limits=Limits(max_duration_s=2.0, max_steps=2,
                                                                             max_queue=4), **kw)


def test_api_key_is_required_when_set(pipe, tmp_path):
    from fastapi.testclient import TestClient

    from foleyflow.serve.app import create_app

    key = "k" * 24
    with TestClient(create_app(_service(pipe, tmp_path / "jobs"), key)) as c:
        assert c.get("/v1/health").status_code == 200                    # open
        assert c.get("/v1/jobs/" + "A" * 32).status_code == 401
        assert c.get("/v1/jobs/" + "A" * 32, headers={"x-api-key": "k" * 23 + "x"}).status_code == 401
        assert c.post("/v1/jobs", json={"duration_s": 1}).status_code == 401
        assert c.get("/v1/jobs/" + "A" * 32, headers={"x-api-key": key}).status_code == 404
        assert c.get("/v1/jobs/" + "A" * 32, headers={"authorization": f"Bearer {key}"}).status_code == 404


def test_cancel_stops_a_running_job_between_steps_and_ttl_cleans_up(pipe, tmp_path):
    from foleyflow.serve.jobs import Job, Limits, new_job_id

    svc = _service(pipe, tmp_path / "jobs", ttl_s=60)
    svc.limits = Limits(max_steps=1000)
    svc.start()
    try:
        job_id = new_job_id()
        svc.job_folder(job_id).mkdir()
        job = svc.submit(Job(job_id, "text", {"options": {"steps": 1000}, "duration_s": 2.0}))
        end = time.monotonic() + DEADLINE_S
        while job.steps_done < 1 and time.monotonic() < end:
            time.sleep(0.01)
        svc.cancel(job_id)
        while job.state == "running" and time.monotonic() < end:
            time.sleep(0.01)
        assert job.state == "cancelled" and 0 < job.steps_done < 1000
        assert not (tmp_path / "jobs" / job_id / "audio.wav").exists()
        assert svc.cleanup(now=time.time()) == 0 and svc.cleanup(now=time.time() + 61) == 1
        assert not (tmp_path / "jobs" / job_id).exists()
    finally:
        svc.shutdown()


def test_a_second_server_on_one_job_folder_is_refused(pipe, tmp_path):
    from foleyflow.errors import FoleyError

    a = _service(pipe, tmp_path / "jobs")
    a.start()
    try:
        with pytest.raises(FoleyError, match="in use by another"):
            _service(pipe, tmp_path / "jobs").start()
    finally:
        a.shutdown()


def test_the_thread_that_loads_the_pipeline_runs_the_jobs(pipe, tmp_path):
    """One thread loads and runs PyTorch (a pipeline used from another thread than the one that loaded it sampled
    25-50% slower: docs/apps.md); a failing load is raised by start() and leaves the folder free."""
    import threading

    from foleyflow.errors import FoleyError
    from foleyflow.serve.jobs import Job, JobService, Limits, new_job_id

    def broken():
        raise FoleyError("not a bundle")

    with pytest.raises(FoleyError, match="not a bundle"):
        JobService(None, tmp_path / "jobs", bundle_sha256="0" * 64, load=broken).start()
    with pytest.raises(ValueError, match="either"):
        JobService(pipe, tmp_path / "jobs", bundle_sha256="0" * 64, load=lambda: pipe)

    threads = {}

    class Spy:
        """The pipeline, noting the thread of each call."""
        def __getattr__(self, name):
            threads.setdefault(name, set()).add(threading.get_ident())
            return getattr(pipe, name)

    def load():
        threads["load"] = {threading.get_ident()}
        return Spy()

    svc = JobService(None, tmp_path / "jobs", bundle_sha256="0" * 64, limits=Limits(max_steps=2), load=load)
    svc.start()                                   # the folder was left unlocked by the failed start
    try:
        assert isinstance(svc.pipe, Spy) and threading.get_ident() not in threads["load"]
        job_id = new_job_id()
        svc.job_folder(job_id).mkdir()
        job = svc.submit(Job(job_id, "text", {"options": {"steps": 2}, "duration_s": 1.0}))
        end = time.monotonic() + DEADLINE_S
        while job.state in ("queued", "running") and time.monotonic() < end:
            time.sleep(0.01)
        assert job.state == "done", job.error
        assert threads["generate"] == threads["load"]
    finally:
        svc.shutdown()


# ------------------------------------------------------------------------------------------------ cot=auto
from test_planner import _video, bundles  # noqa: E402,F401  (tiny bundles with and without a tiny planner)


def test_cot_auto_plans_the_video_with_the_cli_planner_and_returns_the_plan(bundles, tmp_path):
    from fastapi.testclient import TestClient

    from foleyflow.cot import parse_plan
    from foleyflow.pipeline import FoleyPipeline
    from foleyflow.planning import AutoPlanner, load_video_planner, planned_cot
    from foleyflow.serve.app import create_app

    clip = _video(tmp_path / "clip.mp4", 1.2)          # within the bundle's one 1.5 s window
    video = clip.read_bytes()
    pipe = FoleyPipeline.from_bundle(bundles["with"], precision="fp32")
    svc = _service(pipe, tmp_path / "jobs", planner=AutoPlanner.of(bundles["with"]))
    with TestClient(create_app(svc, bundle_name="golden")) as c:
        assert c.get("/v1/health").json()["planner"] is True
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")}, data={"cot": "auto", "steps": "1"})
        assert r.status_code == 202, r.text
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert job["state"] == "done", job["error"]
        assert job["request"]["cot"] == "auto"
        # the plan (valid JSON of the schema) and text are the ones `generate --cot auto` would use
        cot, plan = planned_cot(clip, load_video_planner(bundles["with"]))
        assert parse_plan(job["result"]["plan"]) == plan and job["result"]["cot"] == cot
        # cot=auto is for videos; with a prompt the prompt stays the text and the plan gives the timing
        r = c.post("/v1/jobs", json={"duration_s": 1.0, "cot": "auto"})
        assert r.status_code == 422 and "text-only job" in r.json()["error"]
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")},
                   data={"cot": "auto", "prompt": "rain", "steps": "1"})
        assert r.status_code == 202, r.text
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert job["state"] == "done" and parse_plan(job["result"]["plan"]) == plan and job["result"]["cot"] is None
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")},
                   data={"cot": "Semantic: rain", "prompt": "rain"})
        assert r.status_code == 422 and r.json()["error"].startswith("give a prompt or a cot, not both")
        # this bundle does not plan by default: a video job without a cot has no plan
        assert c.get("/v1/health").json()["plan_by_default"] is False
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")}, data={"steps": "1"})
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert job["state"] == "done" and "plan" not in job["result"]
    # a bundle without a planner: 422, one line, and nothing left in the job folder
    svc = _service(pipe, tmp_path / "jobs2", planner=AutoPlanner.of(bundles["plain"]))
    with TestClient(create_app(svc, bundle_name="golden")) as c:
        assert c.get("/v1/health").json()["planner"] is False
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")}, data={"cot": "auto"})
        assert r.status_code == 422 and "has no automatic planner" in r.json()["error"], r.text
        assert "\n" not in r.json()["error"]
    assert [p.name for p in (tmp_path / "jobs2").iterdir()] == [".lock"]


def test_a_bundle_that_plans_by_default_plans_video_jobs_without_a_cot(bundles, tmp_path):
    """As `foleyflow generate VIDEO`: a video job without a cot is planned (prompt kept as the text), cot=none opts
    out, and a video too short to plan is generated without a plan and a note; the planner shares the pipeline's
    encoders."""
    from fastapi.testclient import TestClient

    from foleyflow.cot import parse_plan
    from foleyflow.pipeline import FoleyPipeline
    from foleyflow.planning import AutoPlanner, load_video_planner, planned_cot
    from foleyflow.serve.app import create_app

    clip = _video(tmp_path / "clip.mp4", 1.2)
    short = _video(tmp_path / "short.mp4", 0.4).read_bytes()
    pipe = FoleyPipeline.from_bundle(bundles["with"], precision="fp32")
    planner = AutoPlanner.of(bundles["with"], pipe)
    svc = _service(pipe, tmp_path / "jobs", planner=planner)
    svc.plan_by_default = True
    cot, plan = planned_cot(clip, load_video_planner(bundles["with"]))

    def run(data, video=clip.read_bytes()):
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", video, "video/mp4")}, data={"steps": "1", **data})
        assert r.status_code == 202, r.text
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert job["state"] == "done", job["error"]
        return job["result"]

    with TestClient(create_app(svc, bundle_name="golden")) as c:
        assert c.get("/v1/health").json()["plan_by_default"] is True
        res = run({})
        assert parse_plan(res["plan"]) == plan and res["cot"] == cot
        assert planner.load().semantic is pipe.semantic
        res = run({"prompt": "rain"})     # the prompt's off-screen source joins the plan, untimed
        got = parse_plan(res["plan"])
        assert got == planned_cot(clip, load_video_planner(bundles["with"]), "rain")[1] and res["cot"] is None
        assert got.sources[:len(plan.sources)] == plan.sources
        assert [(s.sound_class, s.on_screen, s.events) for s in got.sources[len(plan.sources):]] == [
            ("rain", False, None)]
        assert "plan" not in run({"cot": "none"})
        res = run({}, short)
        assert "plan" not in res and any("too short to plan" in n for n in res["notes"]), res["notes"]


# ------------------------------------------------------------------------------------------------ schemathesis
@pytest.fixture(scope="module")
def api_schema(pipe, tmp_path_factory):
    import schemathesis

    from foleyflow.serve.app import create_app

    svc = _service(pipe, tmp_path_factory.mktemp("st-jobs"))
    svc.start()
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(svc))
    svc.shutdown()


def test_api_follows_its_openapi_schema(api_schema):
    """schemathesis: generated requests for every operation of /openapi.json (a few examples each) never get a 5xx
    and every answer matches the schema. (Driven by hand: schemathesis' pytest plugin does not run on pytest 9.)"""
    from hypothesis import given
    from schemathesis.checks import not_a_server_error, response_schema_conformance

    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 5
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        check()


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("args, message", [
    (["--max-resolution", "big"], "--max-resolution must look like"),
    (["--max-queue", "0"], "--max-queue must be between"),
    (["--max-duration", "nan"], "--max-duration must be between"),
    (["--port", "70000"], "--port must be between"),
    (["--api-key-file", "{tmp}/short.key"], "at least 16 characters"),
    (["--api-key-file", "{tmp}/missing.key"], "cannot read the API key"),
    (["--jobs", "{tmp}/short.key"], "is a file, not a folder"),
])
def test_bad_serve_arguments_are_one_line_errors(capsys, tmp_path, args, message):
    from test_pipeline import cli

    (tmp_path / "short.key").write_text("abc\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--jobs" not in args:
        args += ["--jobs", str(tmp_path / "jobs")]
    code, _, err = cli(capsys, "serve", "--bundle", tmp_path / "no-bundle", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_refine_rewrites_the_prompt_of_a_job_and_reports_it(pipe, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from foleyflow.cot.refine import THRESHOLD
    from foleyflow.serve.app import create_app, parse_refine
    from foleyflow.serve.jobs import JobService, Unprocessable

    asked = []

    class Shout:
        def refine_text(self, text):
            return text.upper()

    monkeypatch.setattr(JobService, "_refiner", lambda self, similarity: asked.append(similarity) or Shout())
    assert parse_refine(None) is None and parse_refine(False) is None and parse_refine("off") is None
    assert parse_refine(True) == parse_refine("true") == THRESHOLD and parse_refine("0.7") == parse_refine(0.7) == 0.7
    for bad in ("0", "1.5", "maybe", -1):
        with pytest.raises(Unprocessable, match="refine must be true, false or a similarity"):
            parse_refine(bad)
    with TestClient(create_app(_service(pipe, tmp_path / "jobs"), None)) as c:
        r = c.post("/v1/jobs", json={"duration_s": 1.0, "steps": 1, "prompt": "a purple lorry", "refine": 0.75})
        assert r.status_code == 202, r.text
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert job["state"] == "done", job
        assert job["result"]["prompt_refined"] == "A PURPLE LORRY" and job["request"]["refine"] == 0.75
        assert asked == [0.75]
        r = c.post("/v1/jobs", json={"duration_s": 1.0, "steps": 1, "prompt": "rain"})
        job = c.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 60}).json()
        assert "prompt_refined" not in job["result"] and asked == [0.75]          # off unless asked for
        for body, words in (({"duration_s": 1.0, "refine": True}, "refine rewrites the prompt: give a prompt"),
                            ({"duration_s": 1.0, "prompt": "x", "refine": 2}, "refine must be true, false or")):
            r = c.post("/v1/jobs", json=body)
            assert r.status_code == 422 and words in r.json()["error"], r.text
