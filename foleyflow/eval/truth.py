"""Metrics against FoleyWorld's exact ground truth: onsets, event classes, pan, and aesthetic proxies.

Not in the published systems (they have no ground truth); defined here. For each generated clip `NAME.wav` the truth
folder holds `NAME.json`: a list of `SoundEvent` dicts, or an object with an "events" list (other keys ignored),
read by `foleyflow.events.read_events`.

- Onsets: the detector of `onsets.py` on the generated audio against the onsets of the clip's **discrete** events
  (near-simultaneous ones merged, see `onsets.py`); starts of continuous events are optional (a detection there is
  neither a hit nor a false alarm), and so is a discrete event the ground truth marks inaudible in the mix
  (`params["audible"] == False`, e.g. a soft bounce under a loud engine: no detector can hear it), and so are the
  times an ambience or continuous event lists in `params["transients_s"]` (rain droplets: real, unlabelled onsets);
  ambience is otherwise ignored; the first and last 20 ms are not scored. Counts are summed
  over clips (micro average) before P/R/F1; the mean absolute onset error is over pairs matched at +-100 ms.
- Pan: `spatial.event_pans` per non-ambience event (overlap rules there), at the events attributable in the
  reference audio when it is given (else in the audio itself), each discrete event measured where it sounds (its
  label moved by the difference of the detections matched to it in this audio and in the reference), so a late event
  is not also a pan error; the mean absolute error over scored events and the mean of per-clip means.
- Class accuracy: an `EventClassifier` (an evaluation model, trained elsewhere) is shown the generated audio around
  each non-ambience event; top-1 accuracy against the label, and the mean posterior of the true class. Events of a
  class the classifier does not know are counted apart (`class_events_not_covered`). Without a classifier the figure
  is skipped and the report says so.
- Off-screen sources (issue 17's off-screen target; sets whose truth has sources marked `on_screen` false, e.g.
  FoleyWorld's `test-offscreen`): with a classifier that has a clip head (`clip_outputs`), the clip-head presence of
  each off-screen source's class on the whole clip; per clip the lowest over its off-screen sources;
  `offscreen_presence` is its mean and `offscreen_detected` the share of clips where it is at least 0.5, over the
  `offscreen_clips` clips that have such a source. Absent from reports of sets without off-screen sources.
- Aesthetic proxies per clip (LUFS, clipping ratio, noise floor), averaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.audio import resample
from foleyflow.eval.audio_io import list_audio, pair_by_stem, read_stereo
from foleyflow.eval.onsets import (TOLERANCES_S, OnsetConfig, OnsetScores, detect_onsets, match_onsets,
                                   score_onsets)
from foleyflow.eval.spatial import aesthetics, event_pans
from foleyflow.events import SoundEvent, marked_audible, read_events

EDGE_S = 0.02


class EventClassifier(Protocol):
    """An audio event classifier used for evaluation.

    class_names: the C classes its posteriors cover, in order. sample_rate: the rate it expects (clips are resampled).
    segment_s: length of the segment it takes; pre_s: how much of it precedes the labelled onset.
    __call__(segment) takes float32 (2, round(segment_s * sample_rate)) audio (zero-padded at clip edges) and returns
    (C,) class posteriors (non-negative, summing to 1).
    """

    class_names: Sequence[str]
    sample_rate: int
    segment_s: float
    pre_s: float

    def __call__(self, segment: np.ndarray) -> np.ndarray: ...


def event_segment(audio: np.ndarray, sample_rate: int, onset_s: float, segment_s: float, pre_s: float
                  ) -> np.ndarray:
    """(2, round(segment_s * sample_rate)) float32 slice starting pre_s before onset_s, zero-padded outside."""
    n = int(round(segment_s * sample_rate))
    start = int(round((onset_s - pre_s) * sample_rate))
    out = np.zeros((audio.shape[0], n), np.float32)
    a, b = max(start, 0), min(start + n, audio.shape[1])
    if b > a:
        out[:, a - start: b - start] = audio[:, a:b]
    return out


def classify_events(audio: np.ndarray, sample_rate: int, events: list[SoundEvent], classifier: EventClassifier
                    ) -> list[dict]:
    """[{label, predicted, p_true}] for the non-ambience events of one clip; predicted is None for a label the
    classifier does not cover (such events are counted apart, not scored)."""
    names = list(classifier.class_names)
    x = resample(audio, sample_rate, classifier.sample_rate, dtype=None)
    out = []
    for ev in events:
        if ev.kind == "ambience":
            continue
        seg = event_segment(x, classifier.sample_rate, ev.onset_s, classifier.segment_s,
                            getattr(classifier, "pre_s", 0.0))
        post = np.asarray(classifier(seg), np.float64).ravel()
        if post.shape != (len(names),) or not np.all(np.isfinite(post)):
            raise EvalError(f"the event classifier returned shape {post.shape}; expected ({len(names)},) posteriors")
        if ev.sound_class not in names:
            out.append({"label": ev.sound_class, "predicted": None, "p_true": None})
            continue
        p_true = float(post[names.index(ev.sound_class)])
        out.append({"label": ev.sound_class, "predicted": names[int(np.argmax(post))], "p_true": p_true})
    return out


@dataclass
class PanReference:
    """What the reference audio says about each non-ambience event of a clip, for measuring pan in other audio:
    whether its pan is attributable there (`scored`) and the reference's detected onset matched to it (`detected_s`,
    None when unmatched or not discrete)."""
    scored: list[bool]
    detected_s: list[float | None]


def _matched_detections(events: list[SoundEvent], detected: np.ndarray, tolerance_s: float) -> list[float | None]:
    timed = [e for e in events if e.kind != "ambience"]
    out: list[float | None] = [None] * len(timed)
    idx = [i for i, e in enumerate(timed) if e.kind == "discrete"]
    for a, j in match_onsets([timed[i].onset_s for i in idx], detected, tolerance_s):
        out[idx[a]] = float(detected[j])
    return out


def reference_pan_info(reference_audio: np.ndarray, sample_rate: int, events: list[SoundEvent], *,
                       onset_config: OnsetConfig = OnsetConfig()) -> PanReference:
    """PanReference of one reference clip (see spatial.event_pans for what is attributable)."""
    det = detect_onsets(reference_audio, sample_rate, onset_config)
    return PanReference([m.status == "ok" for m in event_pans(reference_audio, sample_rate, events)],
                        _matched_detections(events, det, max(TOLERANCES_S)))


def _accuracy(classes: list[dict]) -> float | None:
    known = [c for c in classes if c["predicted"] is not None]
    return float(np.mean([c["label"] == c["predicted"] for c in known])) if known else None


OFFSCREEN_THRESHOLD = 0.5  # issue 17's off-screen target: clip-head presence at least 0.5


def offscreen_presence(audio: np.ndarray, sample_rate: int, events: list[SoundEvent], classifier) -> list[dict]:
    """[{source_id, class, presence}] for each source the truth marks off screen (`on_screen` false; audible
    discrete or continuous events, not ambience): the classifier's clip-head presence probability of the source's
    class on the whole clip (`clip_outputs`: sigmoid presence per class). Empty without such sources, for a
    classifier without a clip head, or for classes the clip head does not know."""
    if not hasattr(classifier, "clip_outputs") or not hasattr(classifier, "clip_class_names"):
        return []
    sources: dict = {}
    for e in events:
        if e.on_screen or e.kind == "ambience" or (e.kind == "discrete" and not marked_audible(e)):
            continue
        sources.setdefault((e.source_id, e.sound_class), None)
    names = list(classifier.clip_class_names)
    known = [(sid, c) for sid, c in sources if c in names]
    if not known:
        return []
    prob = np.asarray(classifier.clip_outputs(audio, sample_rate)[0], np.float64).ravel()
    return [{"source_id": sid, "class": c, "presence": float(prob[names.index(c)])} for sid, c in known]


def clip_offscreen(offscreen: list[dict]) -> tuple[float | None, float | None]:
    """(presence, detected) of one clip: the lowest presence over its off-screen sources and 1.0 when that is at
    least OFFSCREEN_THRESHOLD (every off-screen source heard), else 0.0; (None, None) without off-screen sources."""
    if not offscreen:
        return None, None
    low = min(o["presence"] for o in offscreen)
    return low, float(low >= OFFSCREEN_THRESHOLD)


@dataclass
class ClipTruthResult:
    name: str
    duration_s: float
    reference_onsets: list[float]
    detected_onsets: list[float]
    onsets: OnsetScores
    pan_errors: list[float]
    pan_status: dict[str, int]
    aesthetics: dict
    classes: list[dict] = field(default_factory=list)
    offscreen: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"name": self.name, "duration_s": self.duration_s,
                "reference_onsets": self.reference_onsets, "detected_onsets": self.detected_onsets,
                **{k: v for k, v in self.onsets.to_json().items() if "f1" in k or "error" in k},
                "pan_error": float(np.mean(self.pan_errors)) if self.pan_errors else None,
                "pan_status": self.pan_status, **self.aesthetics,
                "class_accuracy": _accuracy(self.classes),
                "offscreen_presence": clip_offscreen(self.offscreen)[0]}


def onset_targets(events: list[SoundEvent]) -> tuple[list[float], list[float]]:
    """(onsets to find, optional onsets) of one clip's events, in seconds (see the module docstring): the audible
    discrete events; the starts of continuous events, inaudible discrete events and listed transients."""
    discrete = [e.onset_s for e in events if e.kind == "discrete" and marked_audible(e)]
    optional = [e.onset_s for e in events if e.kind == "continuous" or (e.kind == "discrete" and not marked_audible(e))]
    optional += [float(t) for e in events if e.kind != "discrete" for t in (e.params or {}).get("transients_s", ())]
    return discrete, optional


def score_detections(events: list[SoundEvent], detected, duration_s: float, tolerances_s=TOLERANCES_S
                     ) -> OnsetScores:
    """Onset scores of detected times (s) of any detector against one clip's events, as `foleyflow evaluate` scores
    its own detector: `onset_targets`, the first and last EDGE_S not scored."""
    discrete, optional = onset_targets(events)
    return score_onsets(discrete, detected, tolerances_s, span_s=(EDGE_S, duration_s - EDGE_S), optional=optional)


def score_clip(name: str, audio: np.ndarray, sample_rate: int, events: list[SoundEvent], *,
               classifier: EventClassifier | None = None, onset_config: OnsetConfig = OnsetConfig(),
               tolerances_s=TOLERANCES_S, timings: dict | None = None,
               pan_reference: PanReference | None = None) -> ClipTruthResult:
    """All ground-truth metrics of one (2, num_samples) clip against its events.
    timings: if given, seconds spent are added under "onsets", "pan", "aesthetics", "class_accuracy".
    pan_reference: from the reference audio (`reference_pan_info`): which events the pan error covers, and where
    each discrete event is measured: its labelled onset moved by (this audio's matched detection - the reference's
    matched detection), so a late event is measured where it sounds and identical audio scores identically.
    None: decided on this audio at the labelled onsets (right for the reference itself)."""
    from time import perf_counter

    tick = [perf_counter()]

    def lap(key):
        if timings is not None:
            now = perf_counter()
            timings[key] = timings.get(key, 0.0) + now - tick[0]
            tick[0] = now

    dur = audio.shape[1] / sample_rate
    det = detect_onsets(audio, sample_rate, onset_config)
    scores = score_detections(events, det, dur, tolerances_s)
    lap("onsets")
    anchors = scored = None
    if pan_reference is not None:
        timed = [e for e in events if e.kind != "ambience"]
        mine = _matched_detections(events, det, max(tolerances_s))
        anchors = [e.onset_s + (m - r if m is not None and r is not None else 0.0)
                   for e, m, r in zip(timed, mine, pan_reference.detected_s)]
        scored = pan_reference.scored
    pans = event_pans(audio, sample_rate, events, scored=scored, anchors_s=anchors)
    status: dict[str, int] = {}
    for m in pans:
        status[m.status] = status.get(m.status, 0) + 1
    lap("pan")
    aes = aesthetics(audio, sample_rate)
    lap("aesthetics")
    classes = classify_events(audio, sample_rate, events, classifier) if classifier is not None else []
    offscreen = offscreen_presence(audio, sample_rate, events, classifier) if classifier is not None else []
    lap("class_accuracy")
    return ClipTruthResult(name, dur, sorted(onset_targets(events)[0]), det.tolist(), scores,
                           [m.error for m in pans if m.error is not None], status, aes, classes, offscreen)


def summarize(results: list[ClipTruthResult], classifier_used: bool) -> dict:
    """Set-level figures from per-clip results (see the module docstring for the averaging)."""
    if not results:
        raise EvalError("no clips to summarise")
    total = results[0].onsets
    for r in results[1:]:
        total = total + r.onsets
    out = {"clips": len(results), **total.to_json()}
    errs = [e for r in results for e in r.pan_errors]
    clip_means = [float(np.mean(r.pan_errors)) for r in results if r.pan_errors]
    out["pan_error"] = float(np.mean(errs)) if errs else None
    out["pan_error_clip_mean"] = float(np.mean(clip_means)) if clip_means else None
    for s in ("ok", "overlapped", "masked", "silent", "outside", "not_scored"):
        out[f"pan_events_{s}"] = sum(r.pan_status.get(s, 0) for r in results)
    for key in ("loudness_lufs", "clipping_ratio", "noise_floor_db"):
        out[key] = float(np.mean([r.aesthetics[key] for r in results]))
    cls = [c for r in results for c in r.classes]
    if classifier_used:
        known = [c for c in cls if c["predicted"] is not None]
        out["class_accuracy"] = _accuracy(known)
        out["class_p_true"] = float(np.mean([c["p_true"] for c in known])) if known else None
        out["class_events"] = len(known)
        out["class_events_not_covered"] = len(cls) - len(known)
    else:
        out["class_accuracy"] = None
        out["class_accuracy_skipped"] = "no event classifier given (no trained evaluation model)"
    off = [clip_offscreen(r.offscreen) for r in results if r.offscreen]
    if off:  # only for sets whose truth has off-screen sources (FoleyWorld's test-offscreen has one in every clip)
        out["offscreen_clips"] = len(off)
        out["offscreen_presence"] = float(np.mean([p for p, _ in off]))
        out["offscreen_detected"] = float(np.mean([d for _, d in off]))
    return out


def evaluate_truth(generated_dir: str | Path, truth_dir: str | Path, *, reference_dir: str | Path | None = None,
                   classifier: EventClassifier | None = None, onset_config: OnsetConfig = OnsetConfig(),
                   progress: bool = False) -> tuple[dict, list]:
    """Scores every audio file of `generated_dir` against `truth_dir/<stem>.json`; with `reference_dir`, the events
    the pan error covers are chosen on the reference audio of the same name. Returns (summary, [ClipTruthResult])."""
    pairs = pair_by_stem(list_audio(generated_dir), truth_dir, ".json", "ground truth")
    refs = dict((n, r) for n, _, r in pair_by_stem(list_audio(generated_dir), reference_dir, None, "reference")) \
        if reference_dir is not None else {}
    results = []
    it = pairs
    if progress:
        from tqdm import tqdm
        it = tqdm(pairs, desc="ground truth", unit="clip")
    for name, wav, js in it:
        audio, sr = read_stereo(wav)
        events = read_events(js)
        info = (reference_pan_info(*read_stereo(refs[name], sr), events, onset_config=onset_config)
                if name in refs else None)
        results.append(score_clip(name, audio, sr, events, classifier=classifier, onset_config=onset_config,
                                  pan_reference=info))
    return summarize(results, classifier is not None), results
