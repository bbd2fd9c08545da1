"""The job service behind `foleyflow serve`: a job folder, a bounded queue and N worker threads sharing ONE pipeline.

The pipeline is best loaded by the first worker thread (pass `load`, a function returning it), so one thread both
loads and runs PyTorch. PyTorch's OpenMP runtime (libgomp) keeps a pool of helper threads for each thread that runs
parallel work; once the pools' threads outnumber the cores, libgomp stops spinning between parallel regions and
every region waits for a wake-up. A pipeline loaded in the main thread and used in a worker thread sampled 25-50%
slower than in one thread on a 2-core machine (session 8's measurement, docs/apps.md).

No web framework here (foleyflow.serve.app maps HTTP onto it), so it is tested and reused without one.

Job folder (chosen by the operator): one sub-folder per job, named by its id (`secrets.token_urlsafe(24)`: 32
characters, 192 random bits, unguessable), holding
    job.json    the job's state, request, resolved options and result (rewritten atomically on every state change)
    input.<ext> the uploaded video (video jobs; ext from a short list of video suffixes, else .bin)
    audio.wav   the result's soundtrack, and video.mp4 the input with it muxed in (video jobs)
A video job with cot "auto" is first planned by the bundle's planner (`planner`, a foleyflow.planning.AutoPlanner:
the same `planned_cot` as `foleyflow generate --cot auto`); it generates with the plan's four-part text and (for a
generator that follows plans) its time-aligned track, and its result holds the plan (JSON) and the text. A job with
cot "llm" is planned the same way by the language model of `serve --llm-url` (`llm`, a foleyflow.cot.llm.LLMEndpoint):
its prompt, through `foleyflow.planning.plan_with_llm` as `foleyflow generate --cot llm`; a model that fails fails the
job with the one-line LLMError.
Every file is written through foleyflow.fileio.atomic_write, so a result file that exists is complete.
States: queued -> running -> done | failed | cancelled (a queued job can be cancelled at once; a running one between
two sampler steps, through the pipeline's cancel hook).

Restart (documented in docs/apps.md): `start()` takes a lock on the folder (one server per folder), then reads every
job: finished ones (done, failed, cancelled) are kept as they were; jobs that were queued or running when the
previous server stopped are marked failed ("interrupted"), since their client may have gone; atomic-write leftovers
and sub-folders without a job.json (a submission cut short) are removed. Finished jobs are deleted `ttl_s` after
they finished (a clean-up thread, and at start).
Shutdown (SIGTERM): `shutdown()` refuses new jobs, marks queued jobs failed, lets running jobs finish for up to
`drain_s` seconds, then cancels the rest (marked failed).
"""
from __future__ import annotations

import contextlib
import json
import queue
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from foleyflow.errors import FoleyError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32}$")
FINISHED = ("done", "failed", "cancelled")
JOB_FILE = "job.json"


class ServeError(FoleyError):
    """An error a client caused; `status` is its HTTP status code."""
    status = 400


class NotFound(ServeError):
    status = 404


class Conflict(ServeError):
    status = 409


class TooLarge(ServeError):
    status = 413


class UnsupportedMedia(ServeError):
    status = 415


class Unprocessable(ServeError):
    status = 422


class QueueFull(ServeError):
    status = 429


class Unavailable(ServeError):
    status = 503


@dataclass(frozen=True)
class Limits:
    """What one job may ask for. Resolution limits hold for either orientation (a portrait 1080x1920 fits 1920x1080)."""

    max_upload_bytes: int = 200 * 2 ** 20
    max_duration_s: float = 60.0
    max_width: int = 1920
    max_height: int = 1080
    max_queue: int = 16          # jobs waiting (running ones not counted)
    max_steps: int = 100

    def check_video(self, width: int, height: int, duration_s: float) -> None:
        long_side, short_side = max(width, height), min(width, height)
        if long_side > max(self.max_width, self.max_height) or short_side > min(self.max_width, self.max_height):
            raise Unprocessable(f"the video is {width}x{height}; this server takes at most "
                                f"{self.max_width}x{self.max_height} (either orientation)")
        self.check_duration(duration_s, "the video lasts")

    def check_duration(self, duration_s: float, what: str = "duration") -> None:
        if duration_s > self.max_duration_s:
            raise Unprocessable(f"{what} {duration_s:.1f} s; this server takes at most {self.max_duration_s:g} s")


@dataclass
class Job:
    id: str
    kind: str                                 # "video" or "text"
    request: dict[str, Any]                   # prompt, cot, negative, duration_s, options (as given)
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    steps_done: int = 0
    steps_total: int = 0
    error: str | None = None
    input_name: str | None = None
    options: dict[str, Any] | None = None     # the resolved GenerationOptions (echoed in the result)
    result: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The job as the API shows it."""
        d = asdict(self)
        d.pop("input_name")
        d["progress"] = 1.0 if self.state == "done" else (self.steps_done / self.steps_total if self.steps_total
                                                          else 0.0)
        return d


def new_job_id() -> str:
    return secrets.token_urlsafe(24)


class JobService:
    """Jobs over one loaded FoleyPipeline `pipe`, kept in `folder`. Thread-safe."""

    def __init__(self, pipe, folder: str | Path, *, bundle_sha256: str, limits: Limits = Limits(), workers: int = 1,
                 ttl_s: float = 86400.0, drain_s: float = 300.0, load: Callable[[], Any] | None = None,
                 planner=None, llm=None):
        if (pipe is None) == (load is None):
            raise ValueError("give either a loaded pipeline or a function `load` that returns one")
        self.pipe, self.folder, self.limits = pipe, Path(folder), limits
        self._load = load
        self.planner = planner        # an AutoPlanner (loads on the first cot=auto job, in its worker) or None
        self.plan_by_default = False  # video jobs without a cot are planned (a bundle with "plan": "auto")
        self.llm = llm                # a foleyflow.cot.llm.LLMEndpoint (cot=llm jobs; `serve --llm-url`) or None
        self.bundle_sha256, self.ttl_s, self.drain_s = bundle_sha256, float(ttl_s), float(drain_s)
        self.workers = int(workers)
        self._jobs: dict[str, Job] = {}
        self._cancel: set[str] = set()
        self._refiners: dict = {}     # refine: {"embed": MiniLM, similarity: Refiner}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._queued = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._accepting = False
        self._threads: list[threading.Thread] = []
        self._lock_file = None

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Locks the folder, recovers the jobs of a previous run (see the module docstring), starts the threads.

        With `load`, the first worker thread loads the pipeline before the others start; its error (a bad bundle) is
        raised here, with the folder unlocked again."""
        import fcntl

        if self._lock_file is not None:   # already started (e.g. by a test before the app's lifespan)
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.folder / ".lock", "w")
        except OSError as e:
            raise FoleyError(f"cannot use the job folder {self.folder}: {e.strerror}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FoleyError(f"the job folder {self.folder} is in use by another foleyflow serve") from None
        self.recover()
        self.cleanup()
        ready, failure = threading.Event(), []
        for k in range(self.workers):
            t = threading.Thread(target=self._work, args=(ready, failure) if k == 0 else (),
                                 name=f"foleyflow-worker-{k}", daemon=True)
            t.start()
            if k == 0:
                ready.wait()
                if failure:
                    t.join()
                    self._lock_file.close()
                    self._lock_file = None
                    raise failure[0]
            self._threads.append(t)
        self._accepting = True
        t = threading.Thread(target=self._janitor, name="foleyflow-janitor", daemon=True)
        t.start()

    def recover(self) -> None:
        from foleyflow.fileio import remove_temporaries

        for d in sorted(self.folder.iterdir()):
            if not d.is_dir() or not ID_PATTERN.match(d.name):
                continue
            job = self._read(d)
            if job is None:           # a submission cut short: no job was ever announced
                shutil.rmtree(d, ignore_errors=True)
                continue
            remove_temporaries(d)
            if job.state not in FINISHED:
                job.state, job.finished = "failed", time.time()
                job.error = "interrupted: the server stopped before this job finished; submit it again"
                self._save(job)
            self._jobs[job.id] = job

    def shutdown(self) -> None:
        """Stops taking jobs, fails the queued ones, lets running jobs finish for up to drain_s, cancels the rest."""
        if self._stop.is_set() or self._lock_file is None:
            return
        with self._lock:
            self._accepting = False
            for job in self._jobs.values():
                if job.state == "queued":
                    self._finish(job, "failed", "the server was stopped before this job started; submit it again")
        for _ in self._threads:
            self._queue.put(None)
        end = time.monotonic() + self.drain_s
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._lock:
            self._cancel.update(j.id for j in self._jobs.values() if j.state == "running")
        for t in self._threads:
            t.join(30.0)
        self._stop.set()
        if self._lock_file is not None:
            self._lock_file.close()

    # ------------------------------------------------------------------------------------------------ jobs
    def job_folder(self, job_id: str) -> Path:
        if not ID_PATTERN.match(job_id):
            raise NotFound("no such job")
        return self.folder / job_id

    def check_room(self) -> None:
        """QueueFull (429) when the queue is full, Unavailable (503) while shutting down."""
        if not self._accepting:
            raise Unavailable("the server is shutting down")
        if self._queued >= self.limits.max_queue:
            raise QueueFull(f"the queue is full ({self.limits.max_queue} jobs waiting); try again later")

    def submit(self, job: Job) -> Job:
        """Queues a job whose folder (and input) exist; QueueFull if there is no room."""
        with self._lock:
            self.check_room()
            self._save(job)
            self._jobs[job.id] = job
            self._queued += 1
            self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job:
        self.job_folder(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("no such job")
        return job

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state in FINISHED:
                raise Conflict(f"the job is already {job.state}")
            if job.state == "queued":
                self._finish(job, "cancelled", None)
            else:
                self._cancel.add(job.id)
        return job

    def result_path(self, job_id: str, kind: str) -> Path:
        job = self.get(job_id)
        if job.state != "done":
            raise Conflict(f"the job is {job.state}; its result is there once it is done")
        name = (job.result or {}).get(kind, {}).get("file")
        if name is None:
            raise NotFound(f"this job has no {kind} result" + (" (a text-only job has no video)"
                                                               if kind == "video" else ""))
        return self.folder / job.id / name

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {s: states.count(s) for s in ("queued", "running", "done", "failed", "cancelled")}

    def cleanup(self, now: float | None = None) -> int:
        """Deletes finished jobs older than the TTL; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            old = [j for j in self._jobs.values()
                   if j.state in FINISHED and (j.finished or j.created) + self.ttl_s < now]
            for j in old:
                del self._jobs[j.id]
        for j in old:
            shutil.rmtree(self.folder / j.id, ignore_errors=True)
        return len(old)

    # ------------------------------------------------------------------------------------------------ internals
    def _read(self, d: Path) -> Job | None:
        try:
            data = json.loads((d / JOB_FILE).read_text())
            job = Job(**data)
        except (OSError, ValueError, TypeError):
            return None
        return job if job.id == d.name else None

    def _save(self, job: Job) -> None:
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(self.folder / job.id / JOB_FILE, json.dumps(asdict(job), indent=1))

    def _finish(self, job: Job, state: str, error: str | None) -> None:
        with self._lock:
            if job.state == "queued":
                self._queued -= 1
            job.state, job.error, job.finished = state, error, time.time()
            self._cancel.discard(job.id)
            self._save(job)

    def _janitor(self) -> None:
        while not self._stop.wait(min(60.0, max(1.0, self.ttl_s / 4))):
            with contextlib.suppress(Exception):
                self.cleanup()

    def _work(self, ready: threading.Event | None = None, failure: list | None = None) -> None:
        if ready is not None:      # the first worker loads the pipeline (see the module docstring)
            try:
                if self.pipe is None:
                    self.pipe = self._load()
            except BaseException as e:  # noqa: BLE001 - handed to start(), which raises it
                failure.append(e)
                return
            finally:
                ready.set()
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None or job.state != "queued":
                    continue
                self._queued -= 1
                job.state, job.started = "running", time.time()
                self._save(job)
            self._run(job)

    def _plan(self, video: str | None):
        """(CoT parts, Plan) of a cot=auto job's video by the bundle's planner (PlannerError if it has none)."""
        from foleyflow.planning import PlannerError

        if self.planner is None or video is None:
            raise PlannerError("cot=auto needs a video and a bundle with a planner")
        return self.planner.plan(video)

    def _plan_llm(self, job: Job, video: str | None, prompt: str):
        """(CoT parts, Plan, notes) of a cot=llm job: the language model plans `prompt` (the job's, refined when it
        asks for refinement) (for the video's
        duration, combined with the bundle's planner's plan of the video when there is one; for duration_s without
        a video) through `foleyflow.planning.plan_with_llm`, exactly as `foleyflow generate --cot llm`; the job's seed
        is sent to the model. LLMError (one line, the key scrubbed) when the model fails."""
        import dataclasses

        from foleyflow.planning import PlannerError, plan_condition, plan_with_llm

        if self.llm is None:
            raise PlannerError("cot=llm: this server was started without --llm-url")
        ep = dataclasses.replace(self.llm, seed=job.request.get("options", {}).get("seed"))
        plan, notes = plan_with_llm(ep, prompt, video=video,
                                    duration_s=job.request.get("duration_s"), planner=self.planner)
        cot, plan = plan_condition(plan)
        return cot, plan, list(notes)

    def _refiner(self, similarity: float):
        """A Refiner per similarity, sharing one MiniLM (loaded on the first job that asks for refinement)."""
        from foleyflow.cot.refine import Refiner, minilm_embedder

        with self._lock:
            cache = self._refiners
            if "embed" not in cache:
                cache["embed"] = minilm_embedder()
            if similarity not in cache:
                cache[similarity] = Refiner(cache["embed"], threshold=similarity)
            return cache[similarity]

    def _run(self, job: Job) -> None:
        from foleyflow.hashing import file_sha256
        from foleyflow.media import mux_audio, write_audio
        from foleyflow.outputs import own_tag
        from foleyflow.pipeline import Cancelled

        d = self.folder / job.id
        req = job.request

        def progress(done: int, total: int) -> None:
            job.steps_done, job.steps_total = done, total

        try:
            opts = self.pipe.options(**req.get("options", {}))
            job.options = opts.as_record()
            video = str(d / job.input_name) if job.input_name else None
            cot, plan, prompt, notes = req.get("cot"), None, req.get("prompt"), []
            if req.get("refine") is not None and prompt:
                prompt = self._refiner(req["refine"]).refine_text(prompt)   # as `foleyflow generate --refine`
            if cot is None and video is not None and self.plan_by_default and self.planner is not None:
                from foleyflow.planning import default_plan

                cot, plan, note = default_plan(self.planner, video, prompt)    # as `foleyflow generate VIDEO`
                notes += [note] if note else []
            elif cot == "none":
                cot = None
            elif cot == "auto":
                cot, plan = self._plan(video)
                if prompt:
                    cot = None                    # the prompt is the text; the plan gives the timing
            elif cot == "llm":
                cot, plan, notes = self._plan_llm(job, video, prompt)
                prompt = None                     # it went into the plan (as generate --cot llm)
            res = self.pipe.generate(video, prompt=prompt, cot=cot, duration_s=req.get("duration_s"),
                                     options=opts, progress=progress, cancel=lambda: job.id in self._cancel,
                                     plan=plan)
            write_audio(d / "audio.wav", res.audio, res.sample_rate, tag=own_tag("serve"))
            result = {"wav": {"file": "audio.wav", "sha256": file_sha256(d / "audio.wav")},
                      "sample_rate": res.sample_rate, "duration_s": res.duration_s, "precision": res.precision,
                      "notes": notes + list(res.notes), "options": job.options, "bundle_sha256": self.bundle_sha256,
                      "timings_s": {k: round(v, 3) for k, v in res.timings_s.items()}}
            if req.get("refine") is not None and prompt is not None:
                result["prompt_refined"] = prompt
            if plan is not None:
                from foleyflow.cot import plan_to_dict

                result["plan"], result["cot"] = plan_to_dict(plan), cot
            if video is not None:
                mux_audio(video, res.audio, res.sample_rate, d / "video.mp4", tag=own_tag("serve"),
                          aac_coder="fast")   # a third of the encoding time (mux_audio); the wav is exact
                result["video"] = {"file": "video.mp4", "sha256": file_sha256(d / "video.mp4")}
            job.result = result
            self._finish(job, "done", None)
        except Cancelled:
            stopping = not self._accepting
            self._finish(job, "failed" if stopping else "cancelled",
                         "the server was stopped while this job ran; submit it again" if stopping else None)
        except FoleyError as e:
            self._finish(job, "failed", str(e))
        except Exception as e:  # noqa: BLE001 - a bug must fail the job, not the worker
            self._finish(job, "failed", f"internal error ({type(e).__name__}: {e})")
