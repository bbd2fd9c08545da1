"""`foleyflow serve --llm-url/--llm-model`: cot=llm jobs against a fake OpenAI-compatible server on 127.0.0.1 run by
the test (no network), in process (FastAPI's TestClient) over a tiny untrained bundle: the fake model's plan in the
result (a text-only job and a video job, the job's seed sent), 422 without a prompt or without a language model,
an invalid reply or an HTTP error -> a failed job with a one-line error, the key in no response, job record or log
line, and the command's flag checks."""
from __future__ import annotations

import json
import logging

import pytest
from http_helpers import _no_proxy, fake, plan_json  # noqa: F401  (fixtures: a FakeChat server, no proxies)

from test_ui import clip, tiny  # noqa: F401  (a tiny untrained bundle without a planner; a 1.5 s video)

from foleyflow.cot.llm import API_KEY_ENV, endpoint

KEY = "sk-test-serve-Secret-77"


def _client(pipe, folder, llm):
    from fastapi.testclient import TestClient

    from foleyflow.serve.app import create_app
    from foleyflow.serve.jobs import JobService, Limits

    svc = JobService(pipe, folder, bundle_sha256="0" * 64, limits=Limits(max_duration_s=3.0, max_steps=2), llm=llm)
    return TestClient(create_app(svc, bundle_name="tiny"))


def _ep(fake, kind: str):
    return endpoint(f"http://127.0.0.1:{fake.server_address[1]}/{kind}/v1", "tiny-llm", 10.0,
                    environ={API_KEY_ENV: KEY})


def _wait(c, job_id: str) -> dict:
    return c.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()


def test_cot_llm_job_returns_the_fake_models_plan(tiny, clip, fake, tmp_path, caplog, capfd):
    from foleyflow.cot import parse_plan
    from foleyflow.planning import plan_condition

    caplog.set_level(logging.DEBUG)
    _, pipe = tiny
    with _client(pipe, tmp_path / "jobs", _ep(fake, "good")) as c:
        health = c.get("/v1/health").json()
        assert health["llm"] is True and "127.0.0.1" not in json.dumps(health) and KEY not in json.dumps(health)
        # a text-only job: the prompt goes to the model with the job's seed; the plan and its text come back
        r = c.post("/v1/jobs", json={"duration_s": 1.5, "cot": "llm", "prompt": " a bell in the rain ",
                                     "steps": 1, "seed": 7})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert job["state"] == "done", job["error"]
        sent = fake.seen[-1]
        assert sent["auth"] == f"Bearer {KEY}" and sent["body"]["seed"] == 7 and sent["body"]["model"] == "tiny-llm"
        assert sent["body"]["messages"][-1]["content"] == "a bell in the rain"
        want_cot, want_plan = plan_condition(parse_plan(plan_json(1.5), "want"))
        assert parse_plan(job["result"]["plan"]) == want_plan and job["result"]["cot"] == want_cot
        assert job["request"]["cot"] == "llm" and job["request"]["prompt"] == "a bell in the rain"
        # a video job: planned for the video's duration; this bundle has no planner, so the model's plan alone
        r = c.post("/v1/jobs", files={"video": ("clip.mp4", clip.read_bytes(), "video/mp4")},
                   data={"cot": "llm", "prompt": "a bell", "steps": "1"})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert job["state"] == "done", job["error"]
        assert "seed" not in fake.seen[-1]["body"]
        assert abs(job["result"]["plan"]["duration_s"] - 1.5) < 0.1 and len(job["result"]["plan"]["sources"]) == 2
        assert any("no automatic planner" in n for n in job["result"]["notes"])
        assert KEY not in json.dumps(c.get("/openapi.json").json())
    out, err = capfd.readouterr()
    assert KEY not in out + err + caplog.text
    assert all(KEY not in p.read_text() for p in (tmp_path / "jobs").rglob("job.json"))


def test_cot_llm_needs_a_prompt_and_a_language_model(tiny, fake, tmp_path):
    _, pipe = tiny
    with _client(pipe, tmp_path / "jobs", _ep(fake, "good")) as c:
        for body in ({"duration_s": 1.0, "cot": "llm"}, {"duration_s": 1.0, "cot": "llm", "prompt": "  "}):
            r = c.post("/v1/jobs", json=body)
            assert r.status_code == 422 and r.json()["error"] == "cot=llm plans from a prompt: give a prompt (text)"
    with _client(pipe, tmp_path / "jobs2", None) as c:
        assert c.get("/v1/health").json()["llm"] is False
        r = c.post("/v1/jobs", json={"duration_s": 1.0, "cot": "llm", "prompt": "rain"})
        assert r.status_code == 422 and "this server has no language model" in r.json()["error"]
        assert "\n" not in r.json()["error"]
    assert [p.name for p in (tmp_path / "jobs2").iterdir()] == [".lock"]


@pytest.mark.parametrize("kind, message", [("bad", "answer is not a JSON plan"), ("unauthorized", "answered HTTP 401")])
def test_language_model_failures_fail_the_job_with_one_line(tiny, fake, tmp_path, kind, message, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    _, pipe = tiny
    with _client(pipe, tmp_path / "jobs", _ep(fake, kind)) as c:
        r = c.post("/v1/jobs", json={"duration_s": 1.0, "cot": "llm", "prompt": "rain", "steps": 1})
        assert r.status_code == 202, r.text
        job = _wait(c, r.json()["id"])
        assert fake.seen[-1]["auth"] == f"Bearer {KEY}"
        assert job["state"] == "failed" and message in job["error"], job["error"]
        assert "\n" not in job["error"] and KEY not in job["error"] and "internal error" not in job["error"]
    out, err = capfd.readouterr()
    assert KEY not in out + err + caplog.text
    assert all(KEY not in p.read_text() for p in (tmp_path / "jobs").rglob("job.json"))


def test_serve_command_llm_flags_are_checked_first(capsys, tmp_path):
    from foleyflow.cli import main

    for argv, message in [(["--llm-url", "http://127.0.0.1:9/v1"], "--llm-url and --llm-model go together"),
                          (["--llm-url", "ftp://x", "--llm-model", "m"], "--llm-url must be an http")]:
        assert main(["serve", "--jobs", str(tmp_path / "j"), "--bundle", str(tmp_path / "none"), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "j").exists()
