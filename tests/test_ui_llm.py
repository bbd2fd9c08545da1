"""The web UI's language-model planning (`foleyflow ui --llm-url/--llm-model`): the plan button's "Plan with" choice,
against a fake OpenAI-compatible server on 127.0.0.1 run by the test (no network): a text-to-audio plan for the
Duration field, a video's plan next to a bundle without a planner (the note), the seed sent, the plan handed to
Generate only while video, duration and parts are unchanged, one-line errors in the status line without the API key,
and the command's flag checks."""
from __future__ import annotations


import pytest
from http_helpers import _no_proxy, fake, plan_json  # noqa: F401  (fixtures: a FakeChat server, no proxies)

from test_ui import clip, tiny  # noqa: F401  (a tiny untrained bundle and its pipeline; a 1.5 s video)

from foleyflow.cot.llm import API_KEY_ENV, endpoint

KEY = "sk-test-ui-Secret-42"


def _ep(fake, kind: str):
    return endpoint(f"http://127.0.0.1:{fake.server_address[1]}/{kind}/v1", "tiny-llm", 10.0,
                    environ={API_KEY_ENV: KEY})


def _component(app, elem_id: str):
    return next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _plan_handler(app):
    return next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", None) == "plan")


def test_plan_with_the_language_model_for_text_to_audio_and_a_video(tiny, clip, fake, tmp_path):
    pytest.importorskip("gradio")
    from concurrent.futures import ThreadPoolExecutor

    from foleyflow.cot import parse_plan
    from foleyflow.planning import plan_condition
    from foleyflow.ui.app import LLM_CHOICE, PLANNER_CHOICE, build_app, plan_if_unedited
    from foleyflow.ui.jobs import COT_PARTS

    folder, pipe = tiny                                         # a bundle without a planner
    torch_thread = ThreadPoolExecutor(1, thread_name_prefix="ff-test-torch")
    app = build_app(pipe, tmp_path / "out", torch_thread, bundle=folder, llm=_ep(fake, "good"))
    button, choice = _component(app, "ff-plan"), _component(app, "ff-plan-with")
    assert button.interactive and choice.visible and choice.value == LLM_CHOICE   # no planner: the LLM by default
    assert [c[0] for c in choice.choices] == [PLANNER_CHOICE, LLM_CHOICE]
    plan = _plan_handler(app)
    # text-to-audio: the Duration field's length, the prompt moves into the plan, the form's seed goes along
    *parts, state, prompt, status = plan(None, " a bell in the rain ", LLM_CHOICE, 1.5, 7)
    sent = fake.seen[-1]
    assert sent["auth"] == f"Bearer {KEY}" and sent["body"]["seed"] == 7 and sent["body"]["model"] == "tiny-llm"
    assert sent["body"]["messages"][-1]["content"] == "a bell in the rain"
    assert status.startswith("planned 2 sources with the language model") and "prompt was cleared" in status
    assert prompt == "" and "note:" not in status
    want_parts, want_plan = plan_condition(parse_plan(plan_json(1.5), "want"))
    assert parts == [want_parts[k] for k in COT_PARTS] and "bell" in parts[0]
    cot = dict(zip(COT_PARTS, parts))
    assert plan_if_unedited(state, None, cot, 1.5) == want_plan            # Generate hands the plan over...
    assert plan_if_unedited(state, None, cot, 2.0) is None                 # ...not for another duration
    assert plan_if_unedited(state, "v.mp4", cot, 1.5) is None              # ...nor once a video is uploaded
    # a video: planned for its duration; the bundle has no planner, so the LLM's plan alone, with a note
    *parts, state, prompt, status = plan(str(clip), "a bell", LLM_CHOICE, 99.0, None)
    assert "seed" not in fake.seen[-1]["body"]
    assert status.startswith("planned 2 sources") and "note: the bundle has no automatic planner" in status
    assert state["video"] == str(clip) and state["duration"] is None
    assert abs(state["plan"]["duration_s"] - 1.5) < 0.1
    assert plan_if_unedited(state, str(clip), dict(zip(COT_PARTS, parts)), 8.0) is not None
    # the trained planner is still the other choice (here: none, the usual error)
    *_, status = plan(str(clip), "", PLANNER_CHOICE, 1.5, 0)
    assert status.startswith("error: the model 'test-untrained' has no automatic planner")
    torch_thread.shutdown()


def test_language_model_errors_are_one_line_in_the_status_without_the_key(tiny, fake, tmp_path):
    pytest.importorskip("gradio")
    import gradio as gr

    from foleyflow.ui.app import LLM_CHOICE, build_app

    _, pipe = tiny
    plan = _plan_handler(build_app(pipe, tmp_path / "out", llm=_ep(fake, "unauthorized")))
    untouched = gr.update()
    for prompt, message in [("a bell", "answered HTTP 401"), ("  ", "the language model plans from a prompt")]:
        *fields, status = plan(None, prompt, LLM_CHOICE, 1.5, 0)
        assert status.startswith("error: ") and message in status and "\n" not in status and KEY not in status
        assert fields == [untouched] * 6                                   # the four parts, state, prompt kept


def test_without_llm_flags_the_page_has_no_choice(tiny, tmp_path):
    pytest.importorskip("gradio")
    from foleyflow.ui.app import build_app

    folder, pipe = tiny
    app = build_app(pipe, tmp_path / "out", bundle=folder)
    assert not _component(app, "ff-plan-with").visible and not _component(app, "ff-plan").interactive


def test_ui_command_llm_flags_are_checked_first(capsys, tmp_path):
    from foleyflow.cli import main

    for argv, message in [(["--llm-url", "http://127.0.0.1:9/v1"], "--llm-url and --llm-model go together"),
                          (["--llm-model", "m"], "--llm-url and --llm-model go together"),
                          (["--llm-url", "ftp://x", "--llm-model", "m"], "--llm-url must be an http"),
                          (["--llm-url", "http://x/v1", "--llm-model", "m", "--llm-timeout", "0"],
                           "--llm-timeout must be")]:
        assert main(["ui", "--bundle", str(tmp_path / "none"), *argv]) == 2   # before the missing bundle
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
