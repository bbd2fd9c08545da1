"""Optional language-model front end (issue 19, item 4; docs/cot.md): a free-form prompt -> a "foleyflow-cot/1" plan
through an OpenAI-compatible chat-completions endpoint that the user names. Off by default and never needed: nothing
in foleyflow calls it unless the user gives a URL and a model (`foleyflow plan --llm-url URL --llm-model NAME`,
`foleyflow generate --cot llm ...`).

The request (POST, JSON, standard library only: urllib): `{"model", "messages": [system, user], "temperature": 0,
"response_format": {"type": "json_object"}}` (plus `seed` when given). The system message holds the plan's JSON
Schema (`schema.JSON_SCHEMA`), the clip's duration and FoleyWorld's class vocabulary; the user message is the prompt.
The reply's `choices[0].message.content` must be one JSON object (a ```json fence around it is accepted); "schema" is
filled in when left out and "duration_s" is always the clip's (the clip's length is not the model's to decide); then
`schema.parse_plan` validates it (a schema violation is a one-line PlanError naming the place).

The API key comes from the environment variable FOLEYFLOW_LLM_API_KEY (sent as `Authorization: Bearer KEY`; no key,
no header). It is never logged, never in a repr and never in an error message (every message is also scrubbed of it,
and of user:password parts of the URL). Errors are one line: unreachable, timeout (default 30 s: for connecting and for
each read, and the reply must be complete by then, checked between reads), HTTP status, a reply that is not JSON, an
answer that is not a plan.

`combine(video_plan, llm_plan)` joins the automatic planner's plan of a video with the language model's plan of the
prompt; the planner stays authoritative for what is on screen (see its docstring).
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field

from foleyflow.cot.schema import JSON_SCHEMA, SCHEMA_ID, Plan, Scene, parse_plan, validate
from foleyflow.errors import FoleyError

API_KEY_ENV = "FOLEYFLOW_LLM_API_KEY"
DEFAULT_TIMEOUT_S = 30.0
MAX_REPLY_BYTES = 4 * 2 ** 20
CHAT_PATH = "/chat/completions"


class LLMError(FoleyError):
    """The language model could not be reached, timed out, refused the request or did not answer with JSON."""


@dataclass(frozen=True)
class LLMEndpoint:
    """An OpenAI-compatible chat-completions endpoint. `url`: the full .../chat/completions URL, or a base such as
    http://127.0.0.1:8080/v1 ("/chat/completions" is appended); `api_key` is left out of the repr."""
    url: str
    model: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    api_key: str | None = field(default=None, repr=False)
    seed: int | None = None


def endpoint(url: str, model: str, timeout_s: float = DEFAULT_TIMEOUT_S, environ=None,
             seed: int | None = None) -> LLMEndpoint:
    """An LLMEndpoint from the user's flags, checked (one-line LLMError), with the key from FOLEYFLOW_LLM_API_KEY in
    `environ` (default os.environ)."""
    import os
    from urllib.parse import urlsplit

    environ = os.environ if environ is None else environ
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LLMError(f"--llm-url must be an http:// or https:// URL, got {_safe_url(url)!r}")
    if not (model or "").strip():
        raise LLMError("--llm-model must name the model to ask")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= 3600):
        raise LLMError(f"--llm-timeout must be between 0 and 3600 s, got {timeout_s}")
    path = parts.path.rstrip("/")
    if not path.endswith(CHAT_PATH):
        url = parts._replace(path=path + CHAT_PATH).geturl()
    return LLMEndpoint(url, model.strip(), float(timeout_s), environ.get(API_KEY_ENV) or None, seed)


def _safe_url(url: str) -> str:
    """The URL without user:password@ and without a query (where keys sometimes ride)."""
    from urllib.parse import urlsplit

    try:
        p = urlsplit(url or "")
        host = p.hostname or ""
        if p.port:
            host = f"{host}:{p.port}"
        return p._replace(netloc=host, query="", fragment="").geturl()
    except ValueError:
        return "(a malformed URL)"


def _scrub(text: str, key: str | None) -> str:
    text = " ".join(str(text).split())
    return text.replace(key, "[key]") if key else text


def system_prompt(duration_s: float) -> str:
    """What the model is told: the schema, the clip's duration, the vocabulary, and to answer with JSON only."""
    from foleyflow.cot.convert import KNOWN_CLASSES

    return ("You write sound plans for a video-to-audio generator. Answer with ONE JSON object and nothing else: a "
            f"plan that validates against this JSON Schema (schema \"{SCHEMA_ID}\"):\n{json.dumps(JSON_SCHEMA)}\n"
            f"The clip lasts {duration_s:g} s: every time is in seconds from its start, below {duration_s:g}. Pans go "
            "from -1 (left) to 1 (right). Use these sound classes where they fit (others must be lower-case words "
            f"joined by _): {', '.join(sorted(KNOWN_CLASSES))}. Say on_screen false for sounds whose source is not "
            "seen. Leave out what the description does not say (no events = the times are not known).")


def request_body(ep: LLMEndpoint, prompt: str, duration_s: float) -> dict:
    body = {"model": ep.model, "temperature": 0, "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": system_prompt(duration_s)},
                         {"role": "user", "content": prompt}]}
    if ep.seed is not None:
        body["seed"] = int(ep.seed)
    return body


def _post(ep: LLMEndpoint, body: dict) -> bytes:
    """The raw reply of one POST; LLMError for the network, the clock and the status."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    where = _safe_url(ep.url)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if ep.api_key:
        headers["Authorization"] = f"Bearer {ep.api_key}"
    req = urllib.request.Request(ep.url, data=json.dumps(body).encode(), headers=headers, method="POST")
    end = time.monotonic() + ep.timeout_s
    late = f"the language model at {where} did not answer within {ep.timeout_s:g} s (--llm-timeout)"
    try:
        with urllib.request.urlopen(req, timeout=ep.timeout_s) as resp:
            chunks, size = [], 0
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise LLMError(late)
                chunk = resp.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise LLMError(f"the language model at {where} sent more than {MAX_REPLY_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        detail = _error_detail(e)
        hint = f" (check {API_KEY_ENV})" if e.code in (401, 403) else ""
        raise LLMError(_scrub(f"the language model at {where} answered HTTP {e.code} {e.reason or ''}".rstrip()
                              + hint + (f": {detail}" if detail else ""), ep.api_key)) from None
    except (TimeoutError, socket.timeout):
        raise LLMError(late) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise LLMError(late) from None
        reason = getattr(e.reason, "strerror", None) or e.reason
        raise LLMError(_scrub(f"cannot reach the language model at {where}: {reason}", ep.api_key)) from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # a reset, a malformed status line, a cut reply
        raise LLMError(_scrub(f"cannot talk to the language model at {where}: {type(e).__name__}: {e}",
                              ep.api_key)) from None


def _error_detail(e) -> str:
    """The error message an OpenAI-compatible server puts in its JSON body, shortened; '' if none."""
    try:
        data = json.loads(e.read(65536) or b"{}")
        err = data.get("error") if isinstance(data, dict) else None
        msg = err.get("message") if isinstance(err, dict) else err
        return str(msg)[:160] if isinstance(msg, (str, int, float)) else ""
    except Exception:  # noqa: BLE001 - the detail is a courtesy
        return ""


def _content(raw: bytes, where: str) -> str:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise LLMError(f"the language model at {where} did not answer with JSON (got {len(raw)} bytes that are "
                       "not JSON; is the URL a chat-completions endpoint?)") from None
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMError(f"the language model at {where} answered JSON without choices[0].message.content (not an "
                       "OpenAI-compatible chat-completions reply)") from None
    if not isinstance(content, str):
        raise LLMError(f"the language model at {where} answered a {type(content).__name__}, not text")
    return content


def parse_answer(content: str, duration_s: float, key: str | None = None) -> Plan:
    """The plan in the model's answer (a JSON object, bare or in a ```json fence); LLMError if it is not JSON,
    PlanError (naming the place) if it breaks the schema."""
    text = content.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.S)
    if fence:
        text = fence.group(1)
    try:
        data = json.loads(text)
    except ValueError:
        short = text[:60] + ("..." if len(text) > 60 else "")
        raise LLMError(_scrub(f"the language model's answer is not a JSON plan ({short!r})", key)) from None
    if not isinstance(data, dict):
        raise LLMError(f"the language model's answer is a JSON {type(data).__name__}, not a plan object")
    data.setdefault("schema", SCHEMA_ID)
    data["duration_s"] = float(duration_s)
    from foleyflow.cot.schema import PlanError

    try:
        return parse_plan(data, "the language model's plan")
    except PlanError as e:
        raise PlanError(_scrub(str(e), key)) from None


def plan_from_prompt(ep: LLMEndpoint, prompt: str, duration_s: float) -> Plan:
    """The language model's plan of `prompt` for a clip of duration_s seconds (one request)."""
    if not (prompt or "").strip():
        raise LLMError("the language model plans from a prompt: give --prompt TEXT")
    if not duration_s > 0:
        raise LLMError(f"the clip's duration must be positive, got {duration_s:g} s")
    raw = _post(ep, request_body(ep, prompt.strip(), duration_s))
    return parse_answer(_content(raw, _safe_url(ep.url)), duration_s, ep.api_key)


# ---------------------------------------------------------------------------------------------------- combining
DESCRIPTIVE = ("name", "striker", "texture", "loudness", "distance")


def combine(video_plan: Plan, llm_plan: Plan) -> Plan:
    """The automatic planner's plan of a video joined with the language model's plan of the prompt. The rule: the
    video is authoritative for what is on screen.
    - duration and room are the video plan's; scene loudness and texture words the video plan lacks come from the LLM;
    - every source of the video plan is kept with its class, events, pan or trajectory, material and on_screen flag;
    - an LLM source whose class the video plan has is the same source: it adds only descriptive words the video plan
      lacks (name, striker, texture, loudness, distance); its times, place and material are ignored;
    - any other LLM source is a sound the video does not show: it joins as off-screen (on_screen false, even if the
      LLM said otherwise) with the LLM's times and place (the user's words), under a fresh id if its id is taken."""
    seen = {s.sound_class: i for i, s in enumerate(video_plan.sources)}
    sources = list(video_plan.sources)
    ids = {s.id for s in sources}
    for s in llm_plan.sources:
        if s.sound_class in seen:
            i = seen[s.sound_class]
            extra = {k: getattr(s, k) for k in DESCRIPTIVE
                     if getattr(sources[i], k) is None and getattr(s, k) is not None}
            sources[i] = dataclasses.replace(sources[i], **extra)
            continue
        new_id, k = s.id, 2
        while new_id in ids:
            new_id, k = f"{s.id}_{k}", k + 1
        ids.add(new_id)
        sources.append(dataclasses.replace(s, id=new_id, on_screen=False))
    vs, ls = video_plan.scene, llm_plan.scene
    scene = Scene(vs.room if vs.room is not None else ls.room, vs.loudness or ls.loudness,
                  vs.texture + tuple(w for w in ls.texture if w not in vs.texture))
    return validate(Plan(video_plan.duration_s, tuple(sources), scene), "the combined plan")


__all__ = ["API_KEY_ENV", "DEFAULT_TIMEOUT_S", "LLMEndpoint", "LLMError", "combine", "endpoint",
           "parse_answer", "plan_from_prompt", "request_body", "system_prompt"]
