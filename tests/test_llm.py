"""The optional language-model front end (foleyflow.cot.llm, issue 19 item 4) against a fake OpenAI-compatible server
on 127.0.0.1 run by the test (http.server in a thread): a good reply (bare and fenced), malformed replies, a schema
violation, a timeout, a 401, an unreachable port, that the API key is sent but never appears in any error or repr,
the combining rule with a video plan, and `foleyflow plan --llm-url` in-process."""
from __future__ import annotations

import json
import socket
import time
from http.server import BaseHTTPRequestHandler

import pytest
from http_helpers import _no_proxy, local_server, send_json  # noqa: F401  (_no_proxy: autouse fixture)

from foleyflow.cot import PlanError, Plan, Scene, Source, plan_to_dict, read_plan
from foleyflow.cot.llm import API_KEY_ENV, LLMError, combine, endpoint, plan_from_prompt

KEY = "sk-test-Secret-0123456789"
GOOD = {"schema": "foleyflow-cot/1", "duration_s": 99,
        "scene": {"room": "hall", "texture": ["sparse"]},
        "sources": [{"id": "bell", "class": "bell", "on_screen": True, "events": [0.5, 2.0], "pan": -0.5,
                     "name": "a brass bell"},
                    {"id": "rain", "class": "rain", "on_screen": False, "events": [[0, 4]]}]}


def _reply(content) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()


class Fake(BaseHTTPRequestHandler):
    """The path chooses the behaviour; every request is recorded on the server."""

    def log_message(self, *args):   # quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.seen.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
        kind = self.path.split("/")[1]
        status, data = 200, None
        if kind == "good":
            data = _reply(json.dumps(GOOD))
        elif kind == "short":                      # GOOD for a 2 s clip
            data = _reply(json.dumps({**GOOD, "sources": [{**GOOD["sources"][0], "events": [0.5]},
                                                          {**GOOD["sources"][1], "events": [[0, 2]]}]}))
        elif kind == "fenced":
            data = _reply("```json\n" + json.dumps({k: v for k, v in GOOD.items() if k != "schema"}) + "\n```")
        elif kind == "prose":
            data = _reply("Sure! Here is your plan: a bell rings twice.")
        elif kind == "html":
            data = b"<html><body>not an API</body></html>"
        elif kind == "nochoices":
            data = json.dumps({"object": "list"}).encode()
        elif kind == "badpan":
            data = _reply(json.dumps({**GOOD, "sources": [{**GOOD["sources"][0], "pan": 3}]}))
        elif kind == "echo":                       # a schema violation whose value is the key itself
            data = _reply(json.dumps({**GOOD, "sources": [{**GOOD["sources"][0], "class": KEY}]}))
        elif kind == "slow":
            time.sleep(3)
            data = _reply(json.dumps(GOOD))
        elif kind == "unauthorized":               # a server that echoes the key it got in its error message
            status = 401
            data = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers.get('authorization')}"}
                               }).encode()
        try:
            send_json(self, status, data)
        except (BrokenPipeError, ConnectionResetError):   # the client gave up (the timeout case)
            pass


@pytest.fixture(scope="module")
def fake():
    with local_server(Fake) as server:
        yield server


def _ep(fake, kind: str, timeout_s: float = 10.0, key: str | None = KEY):
    env = {API_KEY_ENV: key} if key else {}
    return endpoint(f"http://127.0.0.1:{fake.server_address[1]}/{kind}/v1", "tiny-model", timeout_s, environ=env,
                    seed=3)


def test_a_good_reply_becomes_a_validated_plan_and_the_request_is_openai_shaped(fake):
    plan = plan_from_prompt(_ep(fake, "good"), "a brass bell rings twice in the rain", 4.0)
    assert plan.duration_s == 4.0                              # the clip's, not the model's 99
    assert [s.sound_class for s in plan.sources] == ["bell", "rain"] and plan.source("bell").onsets == [0.5, 2.0]
    seen = fake.seen[-1]
    assert seen["path"] == "/good/v1/chat/completions" and seen["auth"] == f"Bearer {KEY}"
    body = seen["body"]
    assert body["model"] == "tiny-model" and body["temperature"] == 0 and body["seed"] == 3
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][1]["content"] == "a brass bell rings twice in the rain"
    assert '"foleyflow-cot/1"' in body["messages"][0]["content"] and "4 s" in body["messages"][0]["content"]
    # a fenced answer without "schema" is read too; no key in the environment: no Authorization header
    fenced = plan_from_prompt(_ep(fake, "fenced", key=None), "a bell", 4.0)
    assert fenced == plan and fake.seen[-1]["auth"] is None


@pytest.mark.parametrize("kind, message", [
    ("prose", "the language model's answer is not a JSON plan ('Sure! Here is"),
    ("html", "did not answer with JSON"),
    ("nochoices", "without choices[0].message.content"),
    ("badpan", "the language model's plan: sources[0].pan: 3 is not a pan in -1..1"),
    ("unauthorized", "answered HTTP 401 Unauthorized (check FOLEYFLOW_LLM_API_KEY): Incorrect API key provided"),
])
def test_bad_replies_are_one_line_errors_without_the_key(fake, kind, message):
    with pytest.raises((LLMError, PlanError)) as e:
        plan_from_prompt(_ep(fake, kind), "a bell", 4.0)
    text = str(e.value)
    assert message in text and "\n" not in text and KEY not in text
    if kind == "unauthorized":
        assert "Bearer [key]" in text                           # the echoed key was scrubbed


def test_timeout_unreachable_and_the_key_never_shows(fake):
    errors = []
    t0 = time.monotonic()
    with pytest.raises(LLMError, match=r"did not answer within 0.5 s \(--llm-timeout\)") as e:
        plan_from_prompt(_ep(fake, "slow", timeout_s=0.5), "a bell", 4.0)
    assert time.monotonic() - t0 < 2.5
    errors.append(str(e.value))
    with socket.socket() as s:                                 # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = endpoint(f"http://user:{KEY}@127.0.0.1:{port}/v1?key={KEY}", "m", 5, environ={API_KEY_ENV: KEY})
    with pytest.raises(LLMError, match=f"cannot reach the language model at http://127.0.0.1:{port}/v1/chat") as e:
        plan_from_prompt(ep, "a bell", 4.0)
    errors.append(str(e.value))
    with pytest.raises(PlanError) as e:
        plan_from_prompt(_ep(fake, "echo"), "a bell", 4.0)
    errors.append(str(e.value))
    with pytest.raises(LLMError, match="must be an http"):
        endpoint(f"ftp://{KEY}@x/v1", "m")
    assert all(KEY not in t and "\n" not in t for t in errors), errors
    assert KEY not in repr(_ep(fake, "good"))
    with pytest.raises(LLMError, match="give --prompt"):
        plan_from_prompt(_ep(fake, "good"), "  ", 4.0)


def test_combine_keeps_the_video_authoritative_on_screen():
    video = Plan(4.0, (Source("impact_wood", "impact_wood", True, (0.5, 1.5), pan=-0.4, material="wood"),),
                 Scene(room="dry", loudness=None, texture=("sparse",)))
    llm = Plan(4.0, (Source("a", "impact_wood", True, (3.0,), pan=0.9, material="metal", name="a wooden crate",
                            texture="hollow"),
                     Source("impact_wood", "bell", True, (2.0,), pan=0.5),
                     Source("rain", "rain", False, ((0.0, 4.0),))),
               Scene(room="hall", loudness="loud", texture=("sparse", "busy")))
    out = combine(video, llm)
    wood = out.source("impact_wood")
    assert (wood.events, wood.pan, wood.material, wood.on_screen) == ((0.5, 1.5), -0.4, "wood", True)   # the video's
    assert (wood.name, wood.texture) == ("a wooden crate", "hollow")                 # words the video lacked
    bell = next(s for s in out.sources if s.sound_class == "bell")
    assert bell.id == "impact_wood_2" and not bell.on_screen and bell.events == (2.0,) and bell.pan == 0.5
    assert not out.source("rain").on_screen and out.source("rain").intervals == [(0.0, 4.0)]
    assert out.scene == Scene("dry", "loud", ("sparse", "busy")) and out.duration_s == 4.0


def test_plan_command_with_llm_url(fake, tmp_path, monkeypatch, capsys):
    from foleyflow.cli import main

    monkeypatch.setenv(API_KEY_ENV, KEY)
    url = f"http://127.0.0.1:{fake.server_address[1]}/good/v1"
    out = tmp_path / "plan.json"
    assert main(["plan", "--prompt", "a bell in the rain", "--llm-url", url, "--llm-model", "m", "--duration", "4",
                 "-o", str(out)]) == 0
    assert plan_to_dict(read_plan(out))["duration_s"] == 4.0 and fake.seen[-1]["auth"] == f"Bearer {KEY}"
    capsys.readouterr()
    url = f"http://127.0.0.1:{fake.server_address[1]}/unauthorized/v1"
    for argv, message in [
        (["--prompt", "a bell", "--llm-url", url, "--llm-model", "m"], "answered HTTP 401"),
        (["--prompt", "a bell", "--llm-url", url], "--llm-url and --llm-model go together"),
        (["--llm-url", url, "--llm-model", "m"], "--llm-url plans from a prompt"),
        (["--prompt", "a bell", "--llm-url", url, "--llm-model", "m", "--llm-timeout", "0"], "--llm-timeout must be"),
    ]:
        assert main(["plan", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1 and KEY not in err, err
    # generate: --cot llm needs its flags and a prompt; the flags need --cot llm (all before any model loads)
    for argv, message in [
        (["--duration", "1", "--cot", "llm", "--prompt", "a bell"], "--cot llm needs --llm-url and --llm-model"),
        (["--duration", "1", "--prompt", "a bell", "--llm-url", url, "--llm-model", "m"], "--llm-url is for --cot llm"),
        (["--duration", "1", "--cot", "llm", "--llm-url", url, "--llm-model", "m"], "plans from a prompt"),
        (["--duration", "1", "--cot", "auto", "--prompt", "a bell"], "--cot auto plans from the video"),
        (["--duration", "1", "--cot", "cot.txt", "--prompt", "a bell"], "give --prompt or a --cot file, not both"),
    ]:
        assert main(["generate", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


from test_planner import bundles  # noqa: E402,F401,F811  (tiny bundles with and without a tiny planner; a 2 s clip)


def test_with_a_video_the_planner_stays_authoritative_and_without_one_the_llm_plan_is_used(fake, bundles):
    from foleyflow.planning import load_video_planner, plan_video, plan_with_llm

    ep = _ep(fake, "short")
    seen = plan_video(bundles["video"], load_video_planner(bundles["with"]))
    plan, notes = plan_with_llm(ep, "a brass bell and rain", video=bundles["video"], bundle=bundles["with"])
    assert notes == [] and plan.duration_s == seen.duration_s
    on = [s for s in plan.sources if s.on_screen]
    assert on == list(seen.sources) and {s.sound_class for s in on} == {"impact_wood", "marimba"}
    # the LLM's bell and rain are not what the video shows: off-screen, with the LLM's times (within the 2 s clip)
    off = {s.sound_class: s for s in plan.sources if not s.on_screen}
    assert set(off) == {"bell", "rain"} and off["bell"].onsets == [0.5]
    plan, notes = plan_with_llm(ep, "a brass bell", video=bundles["video"], bundle=bundles["plain"])
    assert "no automatic planner" in notes[0] and plan.source("bell").on_screen
