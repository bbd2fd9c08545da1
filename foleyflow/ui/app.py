"""The Gradio page of `foleyflow ui`: one loaded FoleyPipeline behind a form, results as players and downloads.

Layout (elem_ids in brackets are what the browser test drives):
  left   the input video [ff-video] (leave empty for text-to-audio), prompt [ff-prompt], a box that refines
         the prompt's unknown sound words [ff-refine] (as `generate --refine`), negative prompt [ff-negative],
         the chain-of-thought editor (Semantic / Temporal / Aesthetic / Spatial [ff-cot-*], and a "Plan automatically"
         button [ff-plan]: the bundle's automatic planner (foleyflow.planning, the same `planned_cot` as `generate
         --cot auto` and the REST service's cot=auto) plans the uploaded video and fills the four parts; disabled,
         its label saying so, when the bundle has no planner; with `--llm-url/--llm-model` a choice "Plan with"
         [ff-plan-with] between that planner and the language model, see below), steps, guidance, seed, duration
         (text-to-audio only)
         and the number of seeded variations; Generate [ff-generate], Cancel [ff-cancel].
  right  the status line [ff-status] (progress text, and every error inline as `error: <message>`), the result video
         [ff-result-video] and soundtrack [ff-result-audio], the timeline PNG [ff-timeline] (frames over the
         spectrogram with the detected onsets), a variation picker and the downloads [ff-files].
Gradio shows a progress bar over the outputs while a job runs (`gr.Progress`). Cancel sets this browser session's
flag, which the pipeline checks between sampler steps; the job then ends with "cancelled" in the status line.

Plan and Generate: while the four parts are exactly what the planner wrote, Generate also hands the plan itself to the
pipeline (a generator that follows plans gets its time-aligned track, as with `--cot auto`); once a part is edited
only the text counts. A prompt given when planning names off-screen sources; it goes into the plan and the prompt
field is cleared (a prompt and a chain of thought are not generated with together).

Language model (`foleyflow ui --llm-url URL --llm-model NAME`, build_app's `llm`): "Plan with" offers the language
model of foleyflow.cot.llm besides the trained planner. It plans the prompt (needed; it then moves into the plan) as
`generate --cot llm` does (foleyflow.planning.plan_with_llm, the form's seed as the request's): for the uploaded
video's duration, the planner's plan of the video staying authoritative on screen when the bundle has a planner; with
no video, for the Duration field's length (Generate then hands the plan over while video and duration are unchanged).
Its errors (unreachable, timeout, HTTP status, a reply that is no plan) show in the status line as `error: ...`.

Offline: `offline_environment()` turns off Gradio's analytics and version check and Hugging Face telemetry (set
before Gradio is imported); the theme uses the system's fonts only (no font files, Google's or Gradio's); launch
options (`launch_options`) bind 127.0.0.1, disable the share tunnel, SSR (node), MCP, PWA, monitoring and the
browser-side run history. tests/test_ui_browser.py loads the page in Chromium and fails on any non-loopback request.
"""
import contextvars
import os
import tempfile
import threading
from pathlib import Path

from foleyflow.errors import FoleyError
from foleyflow.ui.jobs import COT_PARTS, MAX_VARIATIONS, UIRequest, run_request

DEFAULT_HOST = "127.0.0.1"
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Helvetica", "Arial", "sans-serif")
SYSTEM_MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "GRADIO_RUN_HISTORY": "False", "DO_NOT_TRACK": "1"}
PLANNER_CHOICE = "the model's planner (video)"
LLM_CHOICE = "the language model (prompt)"
CSS = "#ff-status {min-height: 2.2em} #ff-status p {margin: 0}"


def offline_environment() -> None:
    """Sets OFFLINE_ENV in os.environ (Gradio and huggingface_hub read some of it at import time)."""
    os.environ.update(OFFLINE_ENV)


def plan_if_unedited(planned: dict | None, video, cot: dict, duration=None):
    """The Plan the plan button wrote (`planned`: {"video", "parts", "plan"} and, for a language model's plan without
    a video, "duration") while the form still shows its video (or no video and the same duration, s) and its four
    parts unedited (whitespace aside), else None (then only the text counts)."""
    if not planned or planned.get("video") != (video or None):
        return None
    if not video and (planned.get("duration") is None or duration is None
                      or abs(float(duration) - planned["duration"]) > 1e-9):
        return None
    if any((cot.get(k) or "").strip() != (planned["parts"].get(k) or "").strip() for k in COT_PARTS):
        return None
    from foleyflow.cot import parse_plan

    return parse_plan(planned["plan"], "the planned plan")


def theme():
    """Gradio's default theme with system fonts only: the page requests no font file."""
    import gradio as gr

    return gr.themes.Default(font=list(SYSTEM_FONTS), font_mono=list(SYSTEM_MONO))


def launch_options(host: str = DEFAULT_HOST, port: int | None = None, out_dir: str | Path | None = None,
                   max_file_size: str = "500mb") -> dict:
    """The keyword arguments of `gr.Blocks.launch` for an offline, local page."""
    return dict(server_name=host, server_port=port, share=False, theme=theme(), css=CSS, ssr_mode=False,
                mcp_server=False, pwa=False, enable_monitoring=False, run_history=False, footer_links=[],
                allowed_paths=[str(Path(out_dir).resolve())] if out_dir else None, max_file_size=max_file_size,
                show_error=False, inbrowser=False, quiet=True)


def build_app(pipe, out_dir: str | Path | None = None, torch_thread=None, bundle: str | Path | None = None,
              llm=None):
    """A `gr.Blocks` page generating with `pipe` (a loaded FoleyPipeline); results go to folders under `out_dir`
    (default: a new temporary folder). bundle: the folder `pipe` was loaded from; its planner (if it names one)
    drives the plan button, loaded on the first click (None: no planner, the button is disabled unless `llm`).
    llm: a foleyflow.cot.llm.LLMEndpoint (`--llm-url/--llm-model`) the plan button may plan with instead.
    torch_thread: a one-thread `concurrent.futures` executor in which every pipeline and planner call runs (the
    language model's request too), best the one that loaded `pipe` (Gradio runs handlers in a pool of threads;
    PyTorch sampled 25-50% slower in another thread than the one that loaded the models: see foleyflow.serve.jobs)."""
    offline_environment()
    import gradio as gr

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="foleyflow-ui-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    defaults = pipe.options()
    cancel_flags: dict[str, threading.Event] = {}
    from foleyflow.planning import AutoPlanner

    auto = AutoPlanner.of(bundle, pipe)        # on the page's pipeline's encoders
    from foleyflow.planning import plans_by_default

    by_default = auto if auto is not None and plans_by_default(bundle) else None   # Generate plans a bare video
    choices = [PLANNER_CHOICE, LLM_CHOICE] if llm is not None else [PLANNER_CHOICE]

    def on_torch_thread(fn, *args, **kwargs):
        if torch_thread is None:
            return fn(*args, **kwargs)
        # the caller's context goes along: Gradio finds a handler's progress bar through context variables
        return torch_thread.submit(contextvars.copy_context().run, fn, *args, **kwargs).result()

    def flag(request) -> threading.Event:
        key = getattr(request, "session_hash", None) or "default"
        return cancel_flags.setdefault(key, threading.Event())

    def generate(video, prompt, refine, negative, sem, tem, aes, spa, steps, cfg, seed, duration, variations, planned,
                 request: gr.Request, progress=gr.Progress()):
        stop = flag(request)
        stop.clear()
        cot = dict(zip(COT_PARTS, (sem, tem, aes, spa)))
        req = UIRequest(video=video or None, prompt=prompt or "", negative=negative or "", cot=cot, steps=steps,
                        cfg_scale=cfg, seed=seed if seed is not None else 0, duration_s=duration,
                        variations=variations or 1, plan=plan_if_unedited(planned, video, cot, duration),
                        refine=bool(refine))
        empty = (None, None, None, None, [], gr.update(choices=[], value=None, visible=False))
        try:
            progress(0.0, desc="starting")
            results = on_torch_thread(run_request, pipe, req, out_dir, planner=by_default,
                                      progress=lambda f, text: progress(f, desc=text), cancel=stop.is_set)
        except FoleyError as e:
            from foleyflow.pipeline import Cancelled

            text = "cancelled: no result was written" if isinstance(e, Cancelled) else f"error: {e}"
            return (text,) + empty
        except Exception as e:  # a bug, not bad input: still one line in the page, never a traceback
            return (f"error: internal error ({type(e).__name__}: {e})",) + empty
        first = results[0]
        files = [str(p) for r in results for p in (r.video, r.wav, r.timeline) if p is not None]
        notes = sorted({n for r in results for n in r.notes})
        lines = [f"done: {len(results)} result(s). " + "; ".join(r.summary for r in results)]
        if not pipe.trained:
            lines.append("note: the model is UNTRAINED (random weights): its sound is unrelated to the input")
        if not getattr(pipe.generator.cfg, "use_text", True) and (req.prompt or req.negative or any(req.cot.values())):
            lines.append("note: this model was trained without text: the prompt, chain of thought and negative "
                         "prompt were ignored")
        lines += [f"note: {n}" for n in notes]
        choices = [f"seed {r.seed}" for r in results]
        state = [[r.seed, None if r.video is None else str(r.video), str(r.wav), str(r.timeline)] for r in results]
        return ("\n\n".join(lines), None if first.video is None else str(first.video), str(first.wav),
                str(first.timeline), files, state,
                gr.update(choices=choices, value=choices[0], visible=len(results) > 1))

    def show(choice, state):
        for seed, video, wav, png in state or []:
            if choice == f"seed {seed}":
                return video, wav, png
        return gr.update(), gr.update(), gr.update()

    def cancel(request: gr.Request):
        flag(request).set()
        return "cancelling after the current sampler step..."

    def plan(video, prompt, plan_with=PLANNER_CHOICE, duration=None, seed=None):
        keep = (gr.update(),) * 6
        if plan_with == LLM_CHOICE and llm is not None:
            return plan_llm(video, prompt, duration, seed)
        if auto is None:
            return keep + (f"error: the model '{pipe.name}' has no automatic planner",)
        if not video:
            return keep + ("error: upload a video to plan for",)
        prompt = (prompt or "").strip() or None
        try:
            parts, p = on_torch_thread(auto.plan, video, prompt)
        except FoleyError as e:
            return keep + (f"error: {e}",)
        except Exception as e:  # a bug, not bad input: one line in the page
            return keep + (f"error: internal error ({type(e).__name__}: {e})",)
        from foleyflow.cot import plan_to_dict

        state = {"video": video, "parts": parts, "plan": plan_to_dict(p)}
        status = (f"planned {len(p.sources)} sources: edit the four parts, then Generate"
                  + ("; the prompt's sounds are in the plan (off-screen), so the prompt was cleared" if prompt else ""))
        return tuple(parts[k] for k in COT_PARTS) + (state, "" if prompt else gr.update(), status)

    def plan_llm(video, prompt, duration, seed):
        keep = (gr.update(),) * 6
        prompt = (prompt or "").strip()
        if not prompt:
            return keep + ("error: the language model plans from a prompt: type one in Prompt",)
        import dataclasses

        from foleyflow.planning import plan_condition, plan_with_llm

        duration = None if video or duration is None else float(duration)
        ep = llm if seed is None else dataclasses.replace(llm, seed=int(seed))
        try:
            p, notes = on_torch_thread(plan_with_llm, ep, prompt, video=video or None, duration_s=duration,
                                       planner=auto)
            parts, p = plan_condition(p)
        except FoleyError as e:
            return keep + (f"error: {e}",)
        except Exception as e:  # a bug, not bad input: one line in the page
            return keep + (f"error: internal error ({type(e).__name__}: {e})",)
        from foleyflow.cot import plan_to_dict

        state = {"video": video or None, "duration": duration, "parts": parts, "plan": plan_to_dict(p)}
        status = "\n\n".join([f"planned {len(p.sources)} sources with the language model: edit the four parts, then "
                               "Generate; the prompt is in the plan, so the prompt was cleared"]
                              + [f"note: {n}" for n in notes])
        return tuple(parts[k] for k in COT_PARTS) + (state, "", status)

    title = f"foleyflow: sound for pictures ({pipe.name or 'unnamed model'})"
    with gr.Blocks(title="foleyflow", analytics_enabled=False) as app:
        gr.Markdown(f"## {title}\nUpload a video for video-to-audio, or leave it empty and describe the sound for "
                    "text-to-audio. The result is a stereo soundtrack, muxed into the video."
                    + ("" if pipe.trained else "\n\n**This model is UNTRAINED (random weights).**"))
        with gr.Row():
            with gr.Column(scale=5):
                video = gr.Video(label="Input video (empty = text-to-audio)", sources=["upload"],
                                 height=300, elem_id="ff-video")
                prompt = gr.Textbox(label="Prompt", placeholder="e.g. a ball bouncing on a wooden floor", lines=2,
                                    elem_id="ff-prompt")
                refine = gr.Checkbox(False, label="Refine the prompt's sound words (map words the model was not "
                                     "trained with onto its vocabulary; docs/cot.md)", elem_id="ff-refine")
                negative = gr.Textbox(label="Negative prompt", placeholder="what the sound should not be",
                                      elem_id="ff-negative")
                with gr.Accordion("Chain of thought (instead of a prompt; see docs/cot.md)", open=False):
                    cot = [gr.Textbox(label=p.capitalize(), lines=2, elem_id=f"ff-cot-{p}") for p in COT_PARTS]
                    plan_with = gr.Radio(choices, value=PLANNER_CHOICE if auto is not None else choices[-1],
                                         label="Plan with", visible=llm is not None, elem_id="ff-plan-with")
                    plan_btn = gr.Button("Plan automatically" if llm is not None else
                                         "Plan automatically from the video" if auto else
                                         "Plan automatically (this model has no planner)",
                                         interactive=auto is not None or llm is not None, elem_id="ff-plan",
                                         size="sm")
                    planned = gr.State(None)
                with gr.Row():
                    steps = gr.Slider(1, 100, value=defaults.steps, step=1, label="Steps", elem_id="ff-steps")
                    cfg = gr.Slider(1.0, 15.0, value=defaults.cfg_scale, step=0.5, label="Guidance",
                                    elem_id="ff-cfg")
                with gr.Row():
                    seed = gr.Number(value=defaults.seed, precision=0, minimum=0, label="Seed", elem_id="ff-seed")
                    duration = gr.Number(value=8.0, minimum=0.1, label="Duration (s, text-to-audio)",
                                         elem_id="ff-duration")
                    variations = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations (seed, seed+1, ...)",
                                           elem_id="ff-variations")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="ff-generate")
                    stop = gr.Button("Cancel", variant="stop", elem_id="ff-cancel")
            with gr.Column(scale=6):
                status = gr.Markdown("ready", elem_id="ff-status")
                out_video = gr.Video(label="Result", interactive=False, height=320, elem_id="ff-result-video")
                out_audio = gr.Audio(label="Soundtrack (.wav)", type="filepath", interactive=False,
                                     elem_id="ff-result-audio")
                timeline = gr.Image(label="Timeline: frames, spectrogram and detected onsets", type="filepath",
                                    interactive=False, elem_id="ff-timeline")
                pick = gr.Radio([], label="Variation", visible=False, elem_id="ff-pick")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="ff-files")
                state = gr.State([])
        go.click(generate, [video, prompt, refine, negative, *cot, steps, cfg, seed, duration, variations, planned],
                 [status, out_video, out_audio, timeline, files, state, pick], concurrency_limit=1,
                 show_progress="full")
        stop.click(cancel, None, [status], queue=False)
        pick.change(show, [pick, state], [out_video, out_audio, timeline])
        plan_btn.click(plan, [video, prompt, plan_with, duration, seed], [*cot, planned, prompt, status],
                       concurrency_limit=1)
    app.foleyflow_out_dir = out_dir
    return app
