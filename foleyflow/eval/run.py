"""One evaluation run: a generated set and the baselines scored against a reference set (and ground truth).

Ties together the metric modules for `foleyflow evaluate`. What runs without trained evaluation models: FD and KAD on
the fixed `melstats` embedding (features.py), the ground-truth metrics (onsets, pan, aesthetics; truth.py) and the
spatial errors against the reference audio (ITD by GCC-PHAT and ILD, whole clip). What needs evaluation models is
computed when they are passed in `EvalModels` and otherwise listed under "skipped" with the reason.
Systems scored: "generated", then the baselines of `baselines.py`: "reference" (the reference audio itself: the
ceiling of the paired and ground-truth metrics; its distribution metrics against itself are trivially 0 and are not
reported; nor are those of "shuffled", the same clips in another order), "baseline_set" (an independent set of the same kind: the noise floor of FD and KAD; distribution metrics
and aesthetics only), "shuffled", "silence", "noise", and "retrieval" (the --train clip whose video is nearest by the
pipeline's semantic encoder, given as `retrieval_embedder`; listed as skipped without it, --train or --video).
The generated set's per-clip figures (every quantity its set-level keys are pooled from) are the report's "per_clip"
list, written as per_clip.jsonl (paired.py, which also compares two evaluated sets clip by clip).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.audio import resample
from foleyflow.eval.audio_io import list_audio
from foleyflow.eval.baselines import AudioSet, folder_set, noise_set, retrieval_set, shuffled_set, silence_set
from foleyflow.eval.desync import WINDOW_S, OffsetClassifier, av_similarity, clip_desync, text_audio_similarity
from foleyflow.eval.features import melstats_embedding
from foleyflow.eval.metrics import (_one_blas_thread, frechet_distance, inception_score, kernel_audio_distance,
                                     kl_divergence, paired_cosine)
from foleyflow.eval.spatial import aesthetics, clip_spatial
from foleyflow.eval.truth import EventClassifier, reference_pan_info, score_clip, summarize
from foleyflow.events import read_events

NO_MODEL = "no trained evaluation model given"


@dataclass
class EvalModels:
    """Optional evaluation models. audio_embedder(audio (2, N), sr) -> (D,) embedding (FD/KAD `learned`);
    audio_classifier(audio, sr) -> (C,) logits (KL, IS); event_classifier: see truth.EventClassifier."""
    audio_embedder: Callable[[np.ndarray, int], np.ndarray] | None = None
    audio_classifier: Callable[[np.ndarray, int], np.ndarray] | None = None
    event_classifier: EventClassifier | None = None
    # alignment (see desync.py): offset_classifier with video_frames(name) -> (T, H, W, 3) frames at its video_fps
    offset_classifier: OffsetClassifier | None = None
    video_frames: Callable[[str], np.ndarray] | None = None
    # IB score: video_embedding(name) -> (D,) and av_audio_embedder(audio, sr) -> (D,) of one joint model
    video_embedding: Callable[[str], np.ndarray] | None = None
    av_audio_embedder: Callable[[np.ndarray, int], np.ndarray] | None = None
    # CLAP score: text_embedding(name) -> (D,) and text_audio_embedder(audio, sr) -> (D,) of one joint model
    text_embedding: Callable[[str], np.ndarray] | None = None
    text_audio_embedder: Callable[[np.ndarray, int], np.ndarray] | None = None
    # quality: quality_scorer(audio, sr) -> score in 1..10 (eval/quality.py; the `quality` key, per clip too)
    quality_scorer: Callable[[np.ndarray, int], float] | None = None
    # published embedders (published_metrics.PublishedModel): fd/kad/kl/is/clap_<name> as av-benchmark computes them
    published: list = field(default_factory=list)
    # why a model of a models folder was not loaded ({"event"|"clap"|"offset"|"av"|"quality": reason}; eval/models.py)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def desync(self) -> bool:
        return self.offset_classifier is not None and self.video_frames is not None

    @property
    def ib(self) -> bool:
        return self.video_embedding is not None and self.av_audio_embedder is not None

    @property
    def clap(self) -> bool:
        return self.text_embedding is not None and self.text_audio_embedder is not None


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, key: str, t0: float) -> float:
        now = perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - t0
        return now


def _progress(items, desc, on):
    if not on:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="clip")


def _scan(audio_set: AudioSet, names, *, truth, reference_spatial, models, timer, desc, progress,
          keep_onsets=(), spatial_out: dict | None = None, with_aesthetics: bool = True,
          pan_flags: dict | None = None, truth_for_flags: dict | None = None, aligned: bool = False,
          quality: bool = False):
    """Per-clip pass over one set: embeddings, classifier outputs, spatial and ground-truth results; with
    `aligned` (clip names are those of the videos and texts), the alignment metrics the models allow; with `quality`,
    the quality predictor's score per clip."""
    emb, learned, logits, truth_res, aes, onsets = [], [], [], [], [], {}
    quality_scores: dict[str, float] = {}
    spatial_err: dict[str, tuple[float, float]] = {}   # clip -> (ITD error ms, ILD error dB)
    desync: dict[str, float] = {}
    ib, clap, desync_short = [], [], 0                  # ib, clap: (clip, embedding, audio embedding)
    pub: dict = {m.name: {"embedding": [], "logits": [], "clap": []} for m in models.published}
    for name in _progress(names, desc, progress):
        t = perf_counter()
        audio, sr = audio_set[name]()
        t = timer.add("load", t)
        emb.append(melstats_embedding(audio, sr))
        t = timer.add("embedding_melstats", t)
        if models.audio_embedder is not None:
            learned.append(np.asarray(models.audio_embedder(audio, sr), np.float64).ravel())
            t = timer.add("embedding_learned", t)
        if models.audio_classifier is not None:
            logits.append(np.asarray(models.audio_classifier(audio, sr), np.float64).ravel())
            t = timer.add("classifier_outputs", t)
        if aligned and models.desync and audio.shape[-1] < WINDOW_S * sr - 1:
            desync_short += 1  # DeSync's protocol needs a whole 4.8 s window: counted, not scored
        elif aligned and models.desync:
            clf = models.offset_classifier
            desync[name] = clip_desync(name, models.video_frames(name), resample(audio, sr, clf.sample_rate,
                                                                                 dtype=None), clf).desync_s
            t = timer.add("desync", t)
        if aligned and models.ib:
            ib.append((name, models.video_embedding(name), models.av_audio_embedder(audio, sr)))
            t = timer.add("ib_score", t)
        for m in models.published:
            out = m.audio(audio, sr)
            for key in ("embedding", "logits"):
                if key in out:
                    pub[m.name][key].append(np.asarray(out[key], np.float64))
            if aligned and "clap" in out and m.text is not None and name in m.captions:
                pub[m.name]["clap"].append((m.text(m.captions[name]), out["clap"]))
            t = timer.add(f"published_{m.name}", t)
        if aligned and models.clap:
            clap.append((name, models.text_embedding(name), models.text_audio_embedder(audio, sr)))
            t = timer.add("clap_score", t)
        if quality and models.quality_scorer is not None:
            quality_scores[name] = float(models.quality_scorer(audio, sr))
            t = timer.add("quality", t)
        if spatial_out is not None and name in spatial_out:
            spatial_out[name] = clip_spatial(audio, sr)
            t = timer.add("spatial_vs_reference", t)
        if truth_for_flags is not None and name in truth_for_flags:
            pan_flags[name] = reference_pan_info(audio, sr, truth_for_flags[name])
            t = timer.add("pan", t)
        if reference_spatial is not None:
            s = clip_spatial(audio, sr)
            r = reference_spatial[name]
            spatial_err[name] = (abs(s["itd_ms"] - r["itd_ms"]), abs(s["ild_db"] - r["ild_db"]))
            t = timer.add("spatial_vs_reference", t)
        if truth is not None:
            res = score_clip(name, audio, sr, truth[name], classifier=models.event_classifier,
                             timings=timer.seconds, pan_reference=(pan_flags or {}).get(name))
            truth_res.append(res)
            aes.append(res.aesthetics)
            if name in keep_onsets:
                onsets[name] = res.detected_onsets
            t = perf_counter()
        elif with_aesthetics:
            aes.append(aesthetics(audio, sr))
            t = timer.add("aesthetics", t)
    return dict(names=list(names), emb=np.array(emb), learned=np.array(learned) if learned else None,
                logits=np.array(logits) if logits else None, spatial_err=spatial_err, truth=truth_res, aes=aes,
                onsets=onsets, desync=desync, desync_short=desync_short, ib=ib, clap=clap, quality=quality_scores,
                published=pub)


def _distribution(out: dict, scan: dict, ref: dict, timer: _Timer, seed: int, extrapolate: bool) -> None:
    for tag, key in (("melstats", "emb"), ("learned", "learned")):
        if scan[key] is None or ref[key] is None:
            continue
        t = perf_counter()
        fd = frechet_distance(scan[key], ref[key], extrapolate=extrapolate, seed=seed)
        t = timer.add(f"fd_{tag}", t)
        out[f"fd_{tag}"], out["fd_n"] = fd.value, fd.n_generated
        if fd.extrapolated is not None:
            out[f"fd_{tag}_inf"] = fd.extrapolated
        kad = kernel_audio_distance(scan[key], ref[key], seed=seed)
        timer.add(f"kad_{tag}", t)
        out[f"kad_{tag}"], out[f"kad_{tag}_bandwidth"] = kad.value, kad.bandwidth


def _published(out: dict, scan: dict, ref: dict | None, *, paired: bool, distribution: bool, timer: _Timer,
               seed: int) -> None:
    """fd/kad_<name> (rows of all clips stacked, as av-benchmark stacks VGGish examples), kl_<name> (paired),
    is_<name> (10 clips or more) and clap_<name> for each published embedder (see published_metrics.py)."""
    from foleyflow.eval.published_metrics import inception_score_av, kl_softmax

    for name, got in scan["published"].items():
        t = perf_counter()
        other = (ref or {}).get("published", {}).get(name)
        if distribution and other is not None and got["embedding"] and other["embedding"]:
            g, r = np.concatenate(got["embedding"]), np.concatenate(other["embedding"])
            out[f"fd_{name}"] = frechet_distance(g, r, seed=seed).value
            out[f"kad_{name}"] = kernel_audio_distance(g, r, seed=seed).value
        if got["logits"]:
            logits = np.stack(got["logits"])
            if len(logits) >= 10:
                out[f"is_{name}"], out[f"is_{name}_std"] = inception_score_av(logits)
            if paired and other is not None and other["logits"]:
                out[f"kl_{name}"] = kl_softmax(np.stack(other["logits"]), logits)
        if got["clap"]:
            out[f"clap_{name}"] = paired_cosine(*map(np.array, zip(*got["clap"])))
        timer.add(f"published_{name}_metrics", t)


def _set_figures(scan: dict, ref: dict | None, *, paired: bool, timer: _Timer, seed: int, extrapolate: bool,
                 event_classifier: bool, distribution: bool = True) -> dict:
    out: dict = {"clips": len(scan["emb"])}
    if ref is not None and distribution:
        _distribution(out, scan, ref, timer, seed, extrapolate)
    _published(out, scan, ref, paired=paired, distribution=distribution and ref is not None, timer=timer,
               seed=seed)
    if scan["logits"] is not None:
        t = perf_counter()
        if len(scan["logits"]) >= 10:
            out["is"], out["is_std"] = inception_score(scan["logits"])
        if paired and ref is not None and ref["logits"] is not None:
            out["kl"] = kl_divergence(ref["logits"], scan["logits"])
        timer.add("kl_is", t)
    if scan["desync"]:
        out["desync_s"] = float(np.mean(list(scan["desync"].values())))
    if scan.get("desync_short"):
        out["desync_clips_too_short"] = scan["desync_short"]  # shorter than 4.8 s: not in desync_s
    if scan["ib"]:
        out["ib_score"] = av_similarity(*map(np.array, list(zip(*scan["ib"]))[1:]))
    if scan["clap"]:
        out["clap_score"] = text_audio_similarity(*map(np.array, list(zip(*scan["clap"]))[1:]))
    if scan.get("quality"):
        out["quality"] = float(np.mean(list(scan["quality"].values())))
        out["quality_per_clip"] = dict(scan["quality"])
    if scan["spatial_err"]:
        e = np.array(list(scan["spatial_err"].values()))
        out["itd_error_ms"], out["ild_error_db"] = float(e[:, 0].mean()), float(e[:, 1].mean())
    if scan["truth"]:
        out.update(summarize(scan["truth"], event_classifier))
    else:
        for key in ("loudness_lufs", "clipping_ratio", "noise_floor_db"):
            out[key] = float(np.mean([a[key] for a in scan["aes"]]))
    return out


def _clip_records(scan: dict, ref: dict | None, classifier_used: bool) -> list[dict]:
    """per_clip.jsonl records of one scanned set (see paired.py); ref: the paired reference scan (per-clip KL)."""
    from foleyflow.eval.desync import text_audio_similarities
    from foleyflow.eval.metrics import kl_divergences, paired_cosines
    from foleyflow.eval.paired import clip_record

    names = scan["names"]
    values: dict[str, dict] = {n: {} for n in names}
    for n, v in scan["desync"].items():
        values[n]["desync_s"] = v
    for n, v in scan["quality"].items():
        values[n]["quality"] = v
    for n, (itd, ild) in scan["spatial_err"].items():
        values[n].update(itd_error_ms=itd, ild_error_db=ild)
    for key, pairs, fn in (("ib_score", scan["ib"], lambda a, b: 100.0 * paired_cosines(a, b)),
                           ("clap_score", scan["clap"], text_audio_similarities)):
        if pairs:
            clips, a, b = zip(*pairs)
            for n, v in zip(clips, fn(np.array(a), np.array(b))):
                values[n][key] = float(v)
    if scan["logits"] is not None and ref is not None and ref.get("logits") is not None:
        for n, v in zip(names, kl_divergences(ref["logits"], scan["logits"])):
            values[n]["kl"] = float(v)
    truth = {r.name: r for r in scan["truth"]}
    aes = dict(zip(names, scan["aes"])) if not truth else {}
    return [clip_record(n, truth=truth.get(n), classifier_used=classifier_used, aesthetics=aes.get(n),
                        values=values[n]) for n in names]


def _retrieval(reference: AudioSet, names: list[str], video_dir, train_dir, reference_dir, embed, timer: _Timer,
               progress: bool) -> tuple[AudioSet, dict]:
    """The retrieval baseline set and its record (encoder identity, training clips, matches)."""
    video_dir, train_dir = Path(video_dir), Path(train_dir)
    if train_dir.resolve() == Path(reference_dir).resolve():
        raise EvalError("--train is the reference folder: the retrieval baseline would retrieve each clip itself")
    train_audio = folder_set(train_dir)
    train_videos = {n: train_dir / f"{n}.mp4" for n in sorted(train_audio) if (train_dir / f"{n}.mp4").is_file()}
    if not train_videos:
        raise EvalError(f"the retrieval baseline needs <name>.mp4 next to the audio files in {train_dir}")
    lost = [n for n in names if not (video_dir / f"{n}.mp4").is_file()]
    if lost:
        raise EvalError(f"{len(lost)} clips have no video in {video_dir} (e.g. {', '.join(lost[:3])})")
    t = perf_counter()
    train_emb = {n: embed(p) for n, p in _progress(list(train_videos.items()), "retrieval: training videos",
                                                      progress)}
    query_emb = {n: embed(video_dir / f"{n}.mp4") for n in _progress(names, "retrieval: videos", progress)}
    timer.add("video_embeddings", t)
    rset, match = retrieval_set(reference, query_emb, train_audio, train_emb)
    return rset, {"encoder": getattr(embed, "identity", None), "train_dir": str(train_dir),
                  "train_clips": len(train_videos), "matches": match}


def _caption_retrieval(reference: AudioSet, names: list[str], text_file, train_dir, reference_dir, embed_texts,
                       timer: _Timer) -> tuple[AudioSet, dict]:
    """The text-to-audio retrieval baseline: each clip gets the audio of the training clip whose caption is nearest
    (cosine of `embed_texts(captions) -> (N, D)`) to its own caption."""
    from foleyflow.eval.models import read_captions

    train_dir = Path(train_dir)
    if train_dir.resolve() == Path(reference_dir).resolve():
        raise EvalError("--train is the reference folder: the retrieval baseline would retrieve each clip itself")
    if text_file is None:
        raise EvalError("the caption retrieval baseline needs --text (captions of the clips and the training clips)")
    captions = read_captions(text_file)
    train_audio = folder_set(train_dir)
    train_names = sorted(n for n in train_audio if captions.get(n))
    if not train_names:
        raise EvalError(f"the caption retrieval baseline found no training clip of {train_dir} with a caption in "
                        f"{text_file}")
    lost = [n for n in names if not captions.get(n)]
    if lost:
        raise EvalError(f"{len(lost)} clips have no caption in {text_file} (e.g. {', '.join(lost[:3])})")
    t = perf_counter()
    train_emb = dict(zip(train_names, np.asarray(embed_texts([captions[n] for n in train_names]))))
    query_emb = dict(zip(names, np.asarray(embed_texts([captions[n] for n in names]))))
    timer.add("caption_embeddings", t)
    rset, match = retrieval_set(reference, query_emb, train_audio, train_emb)
    return rset, {"by": "caption", "encoder": getattr(embed_texts, "identity", None), "train_dir": str(train_dir),
                  "train_clips": len(train_names), "matches": match}


def run_evaluation(*args, **kwargs) -> dict:
    """Scores the generated set and the baselines; returns the report dict (see report.write_report). BLAS runs on
    one thread (see metrics._one_blas_thread). Arguments: see _run_evaluation."""
    with _one_blas_thread():
        return _run_evaluation(*args, **kwargs)


def _run_evaluation(generated_dir: str | Path, reference_dir: str | Path, *, truth_dir: str | Path | None = None,
                   baseline_set_dir: str | Path | None = None, video_dir=None, text_file=None, train_dir=None,
                   models: EvalModels = EvalModels(), baselines: bool = True, seed: int = 0,
                   extrapolate_fd: bool = False, num_examples: int = 3, progress: bool = False,
                   retrieval_embedder: Callable[[Path], np.ndarray] | None = None,
                   caption_embedder: Callable[[list[str]], np.ndarray] | None = None) -> dict:
    """generated_dir/reference_dir: audio matched by file stem; truth_dir: <stem>.json ground truth; baseline_set_dir:
    an independent set (FD/KAD noise floor); video_dir: <stem>.mp4 videos (alignment metrics, retrieval); text_file:
    recorded; train_dir: training clips (<stem>.wav/.flac and <stem>.mp4) for the retrieval baseline;
    models: optional evaluation models; extrapolate_fd: also FD at N -> inf; retrieval_embedder(video path) -> (D,):
    the pipeline's semantic encoder (av_models.load_video_embedder) for the retrieval baseline; caption_embedder(texts)
    -> (N, D): instead, the retrieval baseline of text-to-audio, by caption (needs text_file and train_dir)."""
    reference, ref_paths = folder_set(reference_dir), list_audio(reference_dir)
    generated, gen_paths = folder_set(generated_dir), list_audio(generated_dir)
    missing = [n for n in generated if n not in reference]
    if missing:
        raise EvalError(f"{len(missing)} generated clips have no reference of the same name in {reference_dir} "
                        f"(e.g. {', '.join(missing[:3])})")
    names = sorted(generated)
    truth = None
    if truth_dir is not None:
        truth_dir = Path(truth_dir)
        lost = [n for n in names if not (truth_dir / f"{n}.json").is_file()]
        if lost:
            raise EvalError(f"{len(lost)} clips have no ground truth in {truth_dir} (e.g. {', '.join(lost[:3])})")
        truth = {n: read_events(truth_dir / f"{n}.json") for n in names}
    examples = names[:num_examples]

    timers: dict[str, dict] = {}
    systems: dict[str, dict] = {}
    ref_timer = _Timer()
    ref_all = sorted(reference)
    ref_spatial: dict = {n: None for n in names}
    pan_flags: dict = {}
    ref_scan = _scan(reference, ref_all, truth=None, reference_spatial=None, models=models, timer=ref_timer,
                     desc="reference", progress=progress, spatial_out=ref_spatial, with_aesthetics=False,
                     pan_flags=pan_flags, truth_for_flags=truth)
    timers["reference_features"] = ref_timer.seconds
    # paired reference outputs (KL) restricted and ordered like the generated names
    idx = {n: i for i, n in enumerate(ref_all)}
    ref_paired = dict(ref_scan, logits=None if ref_scan["logits"] is None
                      else ref_scan["logits"][[idx[n] for n in names]],
                      published={k: dict(v, logits=[v["logits"][idx[n]] for n in names] if v["logits"] else [])
                                 for k, v in ref_scan["published"].items()})

    plan: list[tuple[str, AudioSet, list[str], bool]] = [("generated", generated, names, True)]
    retrieval_info = None
    if baselines:
        plan += [("reference", reference, names, True), ("shuffled", shuffled_set({n: reference[n] for n in names},
                 seed), names, True), ("silence", silence_set({n: reference[n] for n in names}), names, True),
                 ("noise", noise_set({n: reference[n] for n in names}, seed), names, True)]
        if caption_embedder is not None and train_dir is not None:
            timer = _Timer()
            rset, retrieval_info = _caption_retrieval({n: reference[n] for n in names}, names, text_file, train_dir,
                                                      reference_dir, caption_embedder, timer)
            timers["retrieval_embeddings"] = timer.seconds
            plan.append(("retrieval", rset, names, True))
        elif retrieval_embedder is not None and train_dir is not None and video_dir is not None:
            timer = _Timer()
            rset, retrieval_info = _retrieval({n: reference[n] for n in names}, names, video_dir, train_dir,
                                              reference_dir, retrieval_embedder, timer, progress)
            timers["retrieval_embeddings"] = timer.seconds
            plan.append(("retrieval", rset, names, True))
        if baseline_set_dir is not None:
            other = folder_set(baseline_set_dir)
            plan.append(("baseline_set", other, sorted(other), False))
    onsets_by_system: dict[str, dict] = {}
    for sys_name, aset, snames, paired in plan:
        timer = _Timer()
        scan = _scan(aset, snames, truth=truth if paired else None,
                     reference_spatial=ref_spatial if paired else None, models=models, timer=timer, desc=sys_name,
                     progress=progress, keep_onsets=examples,
                     pan_flags=None if sys_name == "reference" else pan_flags, aligned=paired, quality=True)
        figures = _set_figures(scan, None if sys_name == "reference" else ref_paired, paired=paired, timer=timer,
                               seed=seed, extrapolate=extrapolate_fd,
                               event_classifier=models.event_classifier is not None,
                               distribution=sys_name != "shuffled")
        if sys_name == "reference" and scan["logits"] is not None and len(scan["logits"]) >= 10:
            figures["is"], figures["is_std"] = inception_score(scan["logits"])
        systems[sys_name] = figures
        if sys_name == "generated":
            per_clip = _clip_records(scan, ref_paired, models.event_classifier is not None)
        timers[sys_name] = timer.seconds
        onsets_by_system[sys_name] = scan["onsets"]

    if "reference" in systems and systems["generated"].get("quality_per_clip"):
        from foleyflow.eval.paired import paired_bootstrap

        gen_q, ref_q = systems["generated"]["quality_per_clip"], systems["reference"]["quality_per_clip"]
        diff, lo, hi = paired_bootstrap([gen_q[n] for n in names], [ref_q[n] for n in names], seed=seed)
        systems["generated"].update(quality_minus_reference=diff, quality_minus_reference_ci95=[lo, hi])
    skipped = {}
    why = models.skipped

    def reason(model: str, what: str, needs: str = "") -> str:
        """Why a model-based metric is missing: the models folder's reason, else no model (and a missing input)."""
        return f"{what}: {why[model]}" if model in why else f"{NO_MODEL}: {what}" + needs

    if models.audio_embedder is None:
        skipped["fd_learned/kad_learned"] = reason("event", "audio embedder") + \
            "; FD/KAD use the untrained melstats embedding"
    if models.audio_classifier is None:
        skipped["kl/is"] = reason("event", "audio event classifier")
    if models.event_classifier is None and truth is not None:
        skipped["class_accuracy"] = reason("event", "audio event classifier")
    if truth is None:
        skipped["ground_truth"] = "onset, pan and class metrics need --truth"
    if not models.desync:
        skipped["desync"] = reason("offset", "audio-visual offset classifier", "" if video_dir else
                                   "; --video not given")
    if not models.ib:
        skipped["ib_score"] = reason("av", "audio-visual embedding", "" if video_dir else "; --video not given")
    if not models.clap:
        skipped["clap_score"] = reason("clap", "text-audio embedding", "" if text_file else "; --text not given")
    if models.quality_scorer is None:
        skipped["quality"] = reason("quality", "audio quality predictor")
    if baselines:
        if retrieval_info is None:
            missing = [what for what, given in (("the pipeline's semantic encoder (--retrieval-encoder)",
                                                 retrieval_embedder), ("--train", train_dir), ("--video", video_dir))
                       if given is None]
            skipped["retrieval"] = "retrieval baseline needs " + ", ".join(missing)
        if baseline_set_dir is None:
            skipped["baseline_set"] = "independent-set baseline needs --baseline-set"
    examples_out = [{"name": n, "reference_onsets": sorted(e.onset_s for e in truth[n] if e.kind == "discrete")
                     if truth else [], "detected_onsets": {s: o[n] for s, o in onsets_by_system.items() if n in o},
                     "generated_path": str(gen_paths[n]), "reference_path": str(ref_paths[n])}
                    for n in examples]
    return {"systems": systems, "skipped": skipped, "timings_s": timers, "examples": examples_out,
            "per_clip": per_clip,
            "settings": {"generated": str(generated_dir), "reference": str(reference_dir),
                         "truth": str(truth_dir) if truth_dir else None, "seed": seed,
                         "onset_tolerances_ms": [25, 50, 100], "embedding": "melstats (untrained, see features.py)",
                         "retrieval": retrieval_info}}
