"""The HTTP API of `foleyflow serve` (FastAPI): `create_app(service, api_key)` maps /v1/... onto a JobService.

    GET  /v1/health                 status, model, queue (no API key needed)
    POST /v1/jobs                   multipart/form-data with a `video` file (plus optional fields, below), or JSON
                                    {"duration_s": ...} for a text-only job -> 202 and the job
    GET  /v1/jobs/{id}              state, progress (0..1), request, resolved options, result (sha256s, bundle);
                                    ?wait=S (at most 60) answers when the job ends or after S seconds, whichever is
                                    first: a client waits for its result without polling
    GET  /v1/jobs/{id}/result       the .wav (?kind=video: the input video with the soundtrack muxed in)
    POST /v1/jobs/{id}/cancel       cancel (a running job stops between two sampler steps)
    GET  /openapi.json, /docs       the schema (FastAPI's)
Fields (form fields or JSON keys): prompt, cot (FoleyWorld's "Semantic: ... Temporal: ..." text, or "auto": the
bundle's planner plans the uploaded video, as `foleyflow generate --cot auto`; 422 for a bundle without a planner or a
text-only job; the plan is in the job's result; or "llm": the language model of `serve --llm-url` plans the
prompt, as `foleyflow generate --cot llm`; 422 without a prompt or without --llm-url), negative, steps, cfg, seed,
sampler, guidance, refine (true, or a similarity in (0, 1]: the prompt's unknown sound words are mapped onto the
model's vocabulary first, as `foleyflow generate --refine`; the refined prompt is in the job's result); JSON adds
duration_s. Every error is JSON `{"error": "<one line>"}` with a 4xx code:
400 malformed request, 401 missing/wrong API key, 404 no such job, 409 not finished / already finished, 413 upload
larger than the limit (enforced while streaming, before the whole body is read), 415 not a video (decided by probing
the file's content, never by its name or declared type), 422 bad values or a video over the duration/resolution
limits, 429 queue full, 431 headers over 32 KB, 503 shutting down.
The upload is streamed to the job's folder (python-multipart's parser fed chunk by chunk); the client's file name is
never used as a path. The API key, when set, is compared with hmac.compare_digest (header X-API-Key or
`Authorization: Bearer KEY`).
(No `from __future__ import annotations` here: FastAPI reads the handlers' annotations at run time.)
"""
import asyncio
import hmac
import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from foleyflow.errors import FoleyError
from foleyflow.serve.jobs import (Job, JobService, ServeError, TooLarge, Unprocessable, UnsupportedMedia,
                                  new_job_id)

FIELDS = ("prompt", "cot", "negative", "steps", "cfg", "seed", "sampler", "guidance", "refine")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".webm", ".avi")
MAX_FIELD_BYTES = 16 * 1024          # one form field or the whole JSON body
MAX_HEADER_BYTES = 32 * 1024         # all of a request's headers (431 beyond)
MAX_WAIT_S, WAIT_TICK_S = 60.0, 0.01  # GET /v1/jobs/{id}?wait=: the longest wait, and how often the job is looked at
COT_DESCRIPTION = ("chain of thought: 'Semantic: ... Temporal: ... Aesthetic: ... Spatial: ...', or 'auto' (video "
                   "jobs only): the bundle's automatic planner plans the video, as `foleyflow generate --cot auto`, "
                   "and the job's result holds the plan (result.plan, schema foleyflow-cot/1) and its text "
                   "(result.cot); 422 when the bundle has no planner (GET /v1/health: planner); or 'llm': the language "
                   "model of `foleyflow serve --llm-url` plans the job's prompt (required), with the video when "
                   "there is one, as `foleyflow generate --cot llm`; the result holds the plan and its text as for "
                   "'auto'; 422 when the server has no language model (GET /v1/health: llm); or 'none': no plan. "
                   "A video job without a cot is planned as 'auto' when the bundle plans by default (GET "
                   "/v1/health: plan_by_default); with a prompt (and 'auto' or that default) the prompt stays the "
                   "text and the plan gives the timing")
ERRORS = {400: "malformed request", 401: "missing or wrong API key", 404: "no such job", 409: "conflict",
          413: "too large", 415: "not a video", 422: "bad values", 429: "queue full", 503: "shutting down"}


class HeaderLimit:
    """ASGI middleware: a request whose headers hold more than `limit` bytes gets 431 and a JSON error."""

    def __init__(self, app, limit: int = MAX_HEADER_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope["headers"]) > self.limit:
            body = json.dumps({"error": f"the request's headers are larger than {self.limit} bytes"}).encode()
            await send({"type": "http.response.start", "status": 431,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def parse_fields(fields: dict[str, Any], limits, *, text_only: bool) -> dict[str, Any]:
    """The job request of the given fields (strings from a form or JSON values), checked: Unprocessable (422)."""
    from foleyflow.options import canonical
    from foleyflow.pipeline import check_duration

    req: dict[str, Any] = {}
    try:
        opts = {}
        for name, kind, key in (("steps", int, "steps"), ("cfg", float, "cfg_scale"), ("seed", int, "seed")):
            v = fields.get(name)
            if v is None or v == "":
                continue
            if isinstance(v, str):
                try:
                    v = kind(v)
                except ValueError:
                    raise Unprocessable(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                                        f"got {v[:40]!r}") from None
            opts[key] = v
        for name in ("sampler", "guidance", "negative"):
            if fields.get(name):
                opts[name] = fields[name]
        opts = canonical(opts)
        if opts.get("steps", 0) > limits.max_steps:
            raise Unprocessable(f"steps {opts['steps']}: this server takes at most {limits.max_steps}")
        req["options"] = opts
        if fields.get("cot") == "llm":
            v = fields.get("prompt")
            if not isinstance(v, str) or not v.strip():
                raise Unprocessable("cot=llm plans from a prompt: give a prompt (text)")
        elif fields.get("prompt") and fields.get("cot") not in (None, "", "auto", "none"):
            raise Unprocessable("give a prompt or a cot, not both (with a prompt, cot=auto adds the planner's "
                                "timing)")
        for name in ("prompt", "cot"):
            v = fields.get(name)
            if v is not None and not isinstance(v, str):
                raise Unprocessable(f"{name} must be a string")
            if v:
                req[name] = v
        refine = parse_refine(fields.get("refine"))
        if refine is not None:
            if not req.get("prompt"):
                raise Unprocessable("refine rewrites the prompt: give a prompt (text)")
            req["refine"] = refine
        if req.get("cot") == "llm":
            req["prompt"] = req["prompt"].strip()
        elif req.get("cot") == "auto":
            if text_only:
                raise Unprocessable("cot=auto plans from a video; a text-only job has none (send the video as "
                                    "multipart/form-data)")
        elif req.get("cot") == "none":
            pass                                  # no plan, even from a bundle that plans by default
        elif "cot" in req:
            from foleyflow.conditioning import cot_parts

            req["cot"] = cot_parts(req["cot"])
        if text_only:
            d = fields.get("duration_s")
            if isinstance(d, bool) or not isinstance(d, (int, float)):
                raise Unprocessable("a text-only job needs duration_s (seconds, a number)")
            check_duration(float(d))
            limits.check_duration(float(d))
            req["duration_s"] = float(d)
    except ServeError:
        raise
    except FoleyError as e:
        raise Unprocessable(str(e)) from None
    return req


def parse_refine(v) -> float | None:
    """The similarity of a `refine` field: absent, empty, false, "false", "no" or "off" -> None (off); true, "true",
    "yes" or "on" -> the default (foleyflow.cot.refine.THRESHOLD); a number in (0, 1] -> itself; else Unprocessable."""
    if v is None or v is False or (isinstance(v, str) and v.strip().lower() in ("", "false", "no", "off")):
        return None
    if v is True or (isinstance(v, str) and v.strip().lower() in ("true", "yes", "on")):
        from foleyflow.cot.refine import THRESHOLD

        return THRESHOLD
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if not 0 < x <= 1:
        raise Unprocessable(f"refine must be true, false or a similarity in (0, 1], got {str(v)[:40]!r}")
    return x


async def stream_upload(request, folder: Path, limits) -> tuple[Path, dict[str, str]]:
    """Streams a multipart body into `folder`: the `video` part to input<ext> (atomically), the other parts as
    fields. TooLarge (413) as soon as the body passes the limit; ServeError (400) for a malformed body."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    from foleyflow.fileio import atomic_write

    ctype, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ServeError("expected multipart/form-data with a boundary")
    state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None, "size": 0,
                             "fields": {}, "buf": bytearray(), "video": None}
    video_target = folder / "input.bin"
    ctx = atomic_write(video_target)
    tmp = ctx.__enter__()
    fh = None

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        nonlocal fh
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"], state["buf"] = name, bytearray()
        if name == "video":
            if state["video"] is not None:
                raise ServeError("more than one video part")
            suffix = Path(disp.get(b"filename", b"").decode("utf-8", "replace")).suffix.lower()
            state["video"] = suffix if suffix in VIDEO_SUFFIXES else ".bin"
            fh = open(tmp, "wb")
        elif name not in FIELDS:
            raise ServeError(f"unknown form field {name[:40]!r} (known: video, {', '.join(FIELDS)})")

    def on_part_data(data, start, end):
        if state["name"] == "video":
            fh.write(data[start:end])
        else:
            state["buf"] += data[start:end]
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise ServeError(f"form field {state['name']!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end():
        nonlocal fh
        if state["name"] == "video":
            fh.close()
            fh = None
        else:
            try:
                state["fields"][state["name"]] = state["buf"].decode("utf-8")
            except UnicodeDecodeError:
                raise ServeError(f"form field {state['name']!r} is not UTF-8 text") from None
        state["headers"] = {}

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    ok = False
    try:
        async for chunk in request.stream():
            state["size"] += len(chunk)
            if state["size"] > limits.max_upload_bytes:
                raise TooLarge(f"the upload is larger than this server's limit of {limits.max_upload_bytes} bytes")
            try:
                parser.write(chunk)
            except ServeError:
                raise
            except Exception as e:   # python-multipart's parse errors
                raise ServeError(f"malformed multipart body ({type(e).__name__})") from None
        try:
            parser.finalize()
        except Exception as e:
            raise ServeError(f"malformed multipart body ({type(e).__name__})") from None
        if state["video"] is None or fh is not None:
            raise ServeError("the multipart body has no complete `video` file part" if state["video"] is not None
                             else "no `video` file part (for a text-only job send JSON with duration_s)")
        ok = True
    finally:
        if fh is not None:
            fh.close()
        if ok:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(ServeError, ServeError("upload failed"), None)
    target = folder / f"input{state['video']}"
    video_target.rename(target)
    return target, state["fields"]


def create_app(service: JobService, api_key: str | None = None, *, bundle_name: str = ""):
    """The FastAPI application over `service` (started and stopped by the app's lifespan)."""
    import contextlib

    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    class TextJob(BaseModel):
        model_config = ConfigDict(extra="forbid")
        duration_s: float = Field(..., description="seconds of audio to generate")
        prompt: str | None = None
        cot: str | None = Field(None, description=COT_DESCRIPTION)
        negative: str | None = None
        steps: int | None = None
        cfg: float | None = None
        seed: int | None = None
        sampler: str | None = None
        guidance: str | None = None
        refine: bool | float | None = Field(None, description="map the prompt's unknown sound words onto the "
                                            "model's vocabulary first (true, or a similarity in (0, 1])")

    class JobInfo(BaseModel):
        id: str
        kind: Literal["video", "text"]
        state: Literal["queued", "running", "done", "failed", "cancelled"]
        progress: float
        steps_done: int
        steps_total: int
        created: float
        started: float | None = None
        finished: float | None = None
        error: str | None = None
        request: dict[str, Any]
        options: dict[str, Any] | None = None
        result: dict[str, Any] | None = None

    class ErrorBody(BaseModel):
        error: str

    class Health(BaseModel):
        status: str
        model: str
        bundle_sha256: str
        trained: bool
        planner: bool
        plan_by_default: bool = Field(False, description="whether a video job without a cot is planned by the "
                                      "bundle's planner (bundle.json \"plan\": \"auto\"; cot=none turns it off)")
        llm: bool = Field(False, description="whether a language model is configured (cot=llm; `serve --llm-url`)")
        workers: int
        jobs: dict[str, int]
        limits: dict[str, Any]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.shutdown)

    app = FastAPI(title="foleyflow", version="1", lifespan=lifespan,
                  description="Generate synchronized stereo soundtracks for videos (or audio from text).")
    app.add_middleware(HeaderLimit)
    errors = {code: {"model": ErrorBody, "description": what} for code, what in ERRORS.items()}

    def error(code: int, message: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=code, headers=headers)

    @app.exception_handler(ServeError)
    async def serve_error(request, exc: ServeError):
        return error(exc.status, str(exc))

    @app.exception_handler(StarletteHTTPException)      # FastAPI's and the router's (404, 405)
    async def http_error(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, f"{where}: {first.get('msg', 'invalid')}"[:300])

    @app.exception_handler(Exception)
    async def internal_error(request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__})")

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (header X-API-Key)")

    auth = [Depends(check_key)]

    def check_llm(req: dict[str, Any]) -> None:
        if req.get("cot") == "llm" and service.llm is None:
            raise Unprocessable("cot=llm: this server has no language model (start it with --llm-url and "
                                "--llm-model)")

    @app.get("/v1/health", response_model=Health)
    def health():
        lim = service.limits
        return {"status": "ok", "model": bundle_name, "bundle_sha256": service.bundle_sha256,
                "trained": bool(service.pipe.trained), "planner": service.planner is not None,
                "plan_by_default": bool(service.plan_by_default),
                "llm": service.llm is not None,
                "workers": service.workers, "jobs": service.counts(),
                "limits": {"max_upload_bytes": lim.max_upload_bytes, "max_duration_s": lim.max_duration_s,
                           "max_resolution": f"{lim.max_width}x{lim.max_height}", "max_queue": lim.max_queue,
                           "max_steps": lim.max_steps}}

    form_schema = {"type": "object", "required": ["video"], "properties": {
        "video": {"type": "string", "format": "binary"}, **{f: {"type": "string"} for f in FIELDS},
        "cot": {"type": "string", "description": COT_DESCRIPTION}}}
    body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": form_schema},
        "application/json": {"schema": TextJob.model_json_schema()}}}}

    @app.post("/v1/jobs", status_code=202, response_model=JobInfo, dependencies=auth, openapi_extra=body,
              responses={k: v for k, v in errors.items() if k != 409})
    async def submit(request: Request):
        limits = service.limits
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes + 64 * 1024:
            raise TooLarge(f"the upload is larger than this server's limit of {limits.max_upload_bytes} bytes")
        service.check_room()        # before reading the body: a full queue costs the client no upload
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        job_id = new_job_id()
        if ctype == "application/json":
            raw = b""
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_FIELD_BYTES:
                    raise TooLarge(f"a JSON body may hold at most {MAX_FIELD_BYTES} bytes")
            try:
                data = json.loads(raw)
                TextJob.model_validate(data)
            except (ValueError, RecursionError) as e:
                raise Unprocessable(f"invalid JSON job: {str(e).splitlines()[0][:200]}") from None
            req = parse_fields(data, limits, text_only=True)
            check_llm(req)
            service.job_folder(job_id).mkdir(parents=True)
            return service.submit(Job(job_id, "text", req)).public()
        if ctype != "multipart/form-data":
            raise UnsupportedMedia("send multipart/form-data with a `video` file, or JSON for a text-only job")
        folder = service.job_folder(job_id)
        folder.mkdir(parents=True)
        try:
            path, fields = await stream_upload(request, folder, limits)
            req = parse_fields(fields, limits, text_only=False)
            check_llm(req)
            auto = req.get("cot") == "auto"
            if auto and service.planner is None:
                raise Unprocessable(f"cot=auto: the model '{bundle_name or 'served'}' has no automatic planner; "
                                    "send the chain of thought as text")
            await run_in_threadpool(check_video, path, limits, auto)
            return service.submit(Job(job_id, "video", req, input_name=path.name)).public()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @app.get("/v1/jobs/{job_id}", response_model=JobInfo, dependencies=auth,
             responses={k: errors[k] for k in (401, 404)})
    async def status(job_id: str, wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S,
                                                      description="answer when the job ends or after this many "
                                                                  "seconds, whichever is first")):
        job = service.get(job_id)
        end = time.monotonic() + wait
        while job.state in ("queued", "running") and time.monotonic() < end:
            await asyncio.sleep(WAIT_TICK_S)
        return job.public()

    @app.get("/v1/jobs/{job_id}/result", dependencies=auth, response_class=FileResponse,
             responses={200: {"content": {"audio/wav": {}, "video/mp4": {}}, "description": "the result file"},
                        **{k: errors[k] for k in (401, 404, 409, 422)}})
    def result(job_id: str, kind: Literal["wav", "video"] = "wav"):
        path = service.result_path(job_id, kind)
        return FileResponse(path, media_type="audio/wav" if kind == "wav" else "video/mp4",
                            filename=f"{job_id}.{'wav' if kind == 'wav' else 'mp4'}")

    @app.post("/v1/jobs/{job_id}/cancel", response_model=JobInfo, dependencies=auth,
              responses={k: errors[k] for k in (401, 404, 409)})
    def cancel(job_id: str):
        return service.cancel(job_id).public()

    return app


def check_video(path: Path, limits, planned: bool = False) -> None:
    """Probes the upload's content: UnsupportedMedia (415) unless it is a readable video; Unprocessable (422) over the
    duration or resolution limits, or (planned: cot=auto) too short for the planner."""
    from foleyflow.media import probe

    try:
        info = probe(path)
    except FoleyError:
        raise UnsupportedMedia("the upload is not a readable video (checked by probing its content)") from None
    if info.video is None or info.video.codec is None:
        raise UnsupportedMedia("the upload has no video stream that can be decoded")
    limits.check_video(info.video.display_width, info.video.display_height, float(info.video.duration_s))
    if planned:
        from foleyflow.planning import MIN_VIDEO_S

        if float(info.video.duration_s) < MIN_VIDEO_S:
            raise Unprocessable(f"cot=auto: the video lasts {float(info.video.duration_s):.2f} s, too short to plan "
                                f"(at least {MIN_VIDEO_S} s)")
