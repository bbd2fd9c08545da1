"""The web UI (`foleyflow ui`, issue 22): a Gradio page over FoleyPipeline's public stages.

- `foleyflow.ui.jobs`: what a Generate click does, without Gradio (UIRequest -> generated files).
- `foleyflow.ui.timeline`: the PNG of the video's frames over the soundtrack's spectrogram with detected onsets.
- `foleyflow.ui.app`: the Gradio page (`build_app`) and its offline launch options (`launch_options`).
Importing this package loads nothing heavy: Gradio and matplotlib load inside the functions that use them.
"""
