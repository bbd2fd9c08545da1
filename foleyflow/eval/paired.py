"""Per-clip figures of an evaluation (`per_clip.jsonl`) and the paired comparison of two evaluated sets.

`foleyflow evaluate` writes, next to report.json, `per_clip.jsonl`: one JSON object per generated clip (the
"generated" system only), `{"clip": NAME, ...}`, holding every per-clip quantity a set-level key is pooled from
(null where the clip has no value):
- `onset_tp@{25,50,100}ms`, `onset_fp@...`, `onset_fn@...`: the clip's onset counts (truth.py); onset precision,
  recall and F1 are pooled from the counts summed over clips (micro average), as report.json's are;
  `onset_matched_pairs` and `onset_mean_abs_error_ms` (over the pairs matched at +-100 ms), pooled weighted by pairs;
- `pan_error` (mean absolute error over the clip's scored events) and `pan_events` (how many): `pan_error` is
  re-pooled over events (sum of mean x count / sum of counts), `pan_error_clip_mean` over clips with events;
- with an event classifier: `class_correct`, `class_total` (events of covered classes) and `class_p_true` (mean
  posterior of the true class over them): `class_accuracy` = sum correct / sum total; `class_p_true` weighted by total;
- `clap_score`, `ib_score` (100 x cosine), `desync_s` (null for clips shorter than DeSync's 4.8 s window), `quality`,
  `kl` (KL(reference || generated) of the clip), `itd_error_ms`, `ild_error_db`, `loudness_lufs`, `clipping_ratio`,
  `noise_floor_db`: plain means over the clips that have them, as report.json's;
- where the truth has off-screen sources and the classifier a clip head: `offscreen_presence` (the lowest clip-head
  presence over the clip's off-screen sources) and `offscreen_detected` (1 when that is at least 0.5), means over
  those clips.
Set-level only (not in the file, not compared): FD and KAD (`fd_*`, `kad_*`, on any embedding, including the
published ones) and IS (`is`, `is_*`) are statistics of the whole set's distribution, not sums of per-clip terms;
the published embedders' `kl_<name>` and `clap_<name>` are not recorded per clip either.

The paired comparison (`compare`, benchmarks/paired_eval.py) keeps the clips both sets have, resamples clips with
replacement (the same resample for both sets, so clip difficulty cancels), re-pools every key within each resample
exactly as above and reports the difference new - base with its 95% percentile interval. A resample in which a key
is undefined for either set (e.g. no scored pan event drawn) is left out of that key's interval.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.onsets import onset_prf

PER_CLIP_FILE = "per_clip.jsonl"
AESTHETIC_KEYS = ("loudness_lufs", "clipping_ratio", "noise_floor_db")
# plain per-clip means, in table order
MEAN_KEYS = ("clap_score", "ib_score", "desync_s", "quality", "kl", "itd_error_ms", "ild_error_db") + AESTHETIC_KEYS
# means over the clips whose truth has an off-screen source (truth.offscreen_presence)
OFFSCREEN_KEYS = ("offscreen_presence", "offscreen_detected")
_ONSET = re.compile(r"onset_(f1|precision|recall)@(\d+)ms(.*)")


# -------------------------------------------------------------------------------------------------- the records
def clip_record(name: str, *, truth=None, classifier_used: bool = False, aesthetics: dict | None = None,
                values: dict | None = None) -> dict:
    """One line of per_clip.jsonl. truth: the clip's truth.ClipTruthResult (onsets, pan, classes, aesthetics);
    aesthetics: the clip's spatial.aesthetics when there is no truth; values: {key of MEAN_KEYS: float or None}."""
    rec: dict = {"clip": name}
    if truth is not None:
        for tol, c in sorted(truth.onsets.counts.items()):
            ms = int(round(tol * 1000))
            rec.update({f"onset_tp@{ms}ms": c.tp, f"onset_fp@{ms}ms": c.fp, f"onset_fn@{ms}ms": c.fn})
        rec["onset_matched_pairs"] = len(truth.onsets.abs_errors_s)
        rec["onset_mean_abs_error_ms"] = truth.onsets.mean_abs_error_ms
        rec["pan_error"] = float(np.mean(truth.pan_errors)) if truth.pan_errors else None
        rec["pan_events"] = len(truth.pan_errors)
        if classifier_used:
            known = [c for c in truth.classes if c["predicted"] is not None]
            rec["class_correct"] = sum(c["label"] == c["predicted"] for c in known)
            rec["class_total"] = len(known)
            rec["class_p_true"] = float(np.mean([c["p_true"] for c in known])) if known else None
        if getattr(truth, "offscreen", None):
            from foleyflow.eval.truth import clip_offscreen

            rec["offscreen_presence"], rec["offscreen_detected"] = clip_offscreen(truth.offscreen)
        aesthetics = truth.aesthetics
    for key in AESTHETIC_KEYS:
        if aesthetics is not None and key in aesthetics:
            rec[key] = float(aesthetics[key])
    for key, v in (values or {}).items():
        rec[key] = None if v is None else float(v)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


def write_per_clip(records: list[dict], path: str | Path) -> Path:
    """Writes the records as JSON Lines (atomic; the folder is created)."""
    from foleyflow.fileio import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
    return Path(path)


def read_per_clip(path: str | Path) -> dict[str, dict]:
    """{clip: record} of a per_clip.jsonl, or of the per_clip.jsonl inside a report folder."""
    path = Path(path)
    if path.is_dir():
        path = path / PER_CLIP_FILE
    if not path.is_file():
        raise EvalError(f"{path}: no such file (per_clip.jsonl is written by `foleyflow evaluate`)")
    out: dict[str, dict] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalError(f"{path}:{i}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("clip"), str):
            raise EvalError(f"{path}:{i}: expected an object with a \"clip\" name")
        if rec["clip"] in out:
            raise EvalError(f"{path}:{i}: clip {rec['clip']!r} appears twice")
        out[rec["clip"]] = rec
    if not out:
        raise EvalError(f"{path} holds no clips")
    return out


def read_report(folder: str | Path) -> tuple[dict, dict[str, dict]]:
    """(the generated system's pooled values from report.json, {clip: record} from per_clip.jsonl) of a
    `foleyflow evaluate` report folder; EvalError (one line) when either is missing or unreadable."""
    path = Path(folder)
    try:
        pooled = json.loads((path / "report.json").read_text())["systems"]["generated"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EvalError(f"{folder} is not a `foleyflow evaluate` report folder ({e})") from None
    if not isinstance(pooled, dict):
        raise EvalError(f"{folder} is not a `foleyflow evaluate` report folder (no generated system)")
    return pooled, read_per_clip(path)


def read_named_reports(items: list[str], names: tuple[str, ...]) -> tuple[dict[str, str], dict[str, tuple]]:
    """NAME=REPORT_DIR arguments (NAME one of `names`) -> ({name: folder}, {name: read_report(folder)}), both in the
    order of `names`; EvalError (one line) for a malformed item or an unknown name."""
    folders = {}
    for item in items:
        name, _, folder = item.partition("=")
        if name not in names or not folder:
            raise EvalError(f"expected NAME=REPORT_DIR with NAME one of {', '.join(names)}, got {item!r}")
        folders[name] = folder
    ordered = {n: folders[n] for n in names if n in folders}
    return ordered, {n: read_report(f) for n, f in ordered.items()}


# -------------------------------------------------------------------------------------------------- pooling
@dataclass(frozen=True)
class PooledKey:
    """How one set-level key is pooled from per-clip records. columns(records) -> (N, F) float64 array (no NaN);
    stat((..., N, F) array) -> (...) figures (NaN where undefined)."""
    key: str
    columns: Callable[[list[dict]], np.ndarray]
    stat: Callable[[np.ndarray], np.ndarray]
    fields: tuple[str, ...]


def _col(records: list[dict], field: str) -> np.ndarray:
    return np.array([np.nan if r.get(field) is None else float(r[field]) for r in records], np.float64)


def _ratio(x: np.ndarray) -> np.ndarray:
    num, den = x[..., 0].sum(-1), x[..., 1].sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _weighted(value: str, weight: str | None) -> Callable[[list[dict]], np.ndarray]:
    """Columns (value x weight, weight) of a mean weighted by `weight` (None: 1 per clip with a value)."""
    def columns(records):
        v = _col(records, value)
        w = (~np.isnan(v)).astype(np.float64) if weight is None else np.nan_to_num(_col(records, weight))
        w = np.where(np.isnan(v), 0.0, w)
        return np.stack([np.where(w > 0, np.nan_to_num(v) * w, 0.0), w], axis=-1)
    return columns


def pooled_key(key: str) -> PooledKey | None:
    """The pooling of a set-level key (see the module docstring), or None for a key with no per-clip form.
    Onset keys may carry a suffix naming another detector (`onset_f1@50ms_librosa` pools `onset_tp@50ms_librosa`...)."""
    m = _ONSET.fullmatch(key)
    if m:
        what, ms, suffix = m.groups()
        fields = tuple(f"onset_{c}@{ms}ms{suffix}" for c in ("tp", "fp", "fn"))
        which = ("precision", "recall", "f1").index(what)

        def columns(records, fields=fields):
            return np.nan_to_num(np.stack([_col(records, f) for f in fields], axis=-1))

        def stat(x, which=which):
            s = x.sum(-2)
            return onset_prf(s[..., 0], s[..., 1], s[..., 2])[which]
        return PooledKey(key, columns, stat, fields)
    table = {"onset_mean_abs_error_ms": ("onset_mean_abs_error_ms", "onset_matched_pairs"),
             "pan_error": ("pan_error", "pan_events"), "class_p_true": ("class_p_true", "class_total"),
             **{k: (k, None) for k in MEAN_KEYS + OFFSCREEN_KEYS}}
    if key in table:
        value, weight = table[key]
        return PooledKey(key, _weighted(value, weight), _ratio, (value,) + ((weight,) if weight else ()))
    if key == "pan_error_clip_mean":
        def columns(records):
            v, n = _col(records, "pan_error"), np.nan_to_num(_col(records, "pan_events"))
            ok = ~np.isnan(v) & (n > 0)
            return np.stack([np.where(ok, np.nan_to_num(v), 0.0), ok.astype(np.float64)], axis=-1)
        return PooledKey(key, columns, _ratio, ("pan_error", "pan_events"))
    if key == "class_accuracy":
        def columns(records):
            return np.nan_to_num(np.stack([_col(records, "class_correct"), _col(records, "class_total")], axis=-1))
        return PooledKey(key, columns, _ratio, ("class_correct", "class_total"))
    return None


def pooled_keys(records: list[dict]) -> list[str]:
    """The set-level keys the records can rebuild, in table order (onset keys per tolerance and detector first)."""
    present = {k for r in records for k, v in r.items() if v is not None}
    onset = sorted({(int(m.group(1)), m.group(2)) for k in present
                    if (m := re.fullmatch(r"onset_tp@(\d+)ms(.*)", k))}, key=lambda t: (t[1], t[0]))
    keys = [f"onset_{w}@{ms}ms{sfx}" for ms, sfx in onset for w in ("f1", "precision", "recall")]
    keys += ["onset_mean_abs_error_ms", "class_accuracy", "class_p_true", "pan_error", "pan_error_clip_mean",
             *MEAN_KEYS, *OFFSCREEN_KEYS]
    out = []
    for k in keys:
        spec = pooled_key(k)
        if spec is not None and all(f in present for f in spec.fields[:1]) and k not in out:
            out.append(k)
    return out


def pool(records: list[dict], key: str) -> float | None:
    """The set-level figure `key` rebuilt from per-clip records (None when undefined, as in report.json)."""
    spec = pooled_key(key)
    if spec is None:
        raise EvalError(f"{key} has no per-clip form (set-level only)")
    v = float(spec.stat(spec.columns(records)))
    return v if math.isfinite(v) else None


# -------------------------------------------------------------------------------------------------- bootstrap
def bootstrap_indices(num_clips: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, num_clips) clip indices drawn with replacement (numpy Generator seeded by `seed`)."""
    if num_clips < 1 or resamples < 1:
        raise EvalError(f"a bootstrap needs clips and resamples (got {num_clips} clips, {resamples} resamples)")
    return np.random.default_rng(seed).integers(0, num_clips, (resamples, num_clips))


def paired_interval(stat: Callable[[np.ndarray], np.ndarray], base: np.ndarray, new: np.ndarray, *,
                    resamples: int = 2000, seed: int = 0, idx: np.ndarray | None = None
                    ) -> tuple[float, float, float]:
    """stat(new) - stat(base) of paired per-clip arrays (N, F) (row i of each is the same clip) and its 95%
    percentile bootstrap interval over clip resamples (idx (R, N), else drawn from seed): (difference, low, high).
    stat maps (..., N, F) to (...); resamples where either side is NaN are left out (all NaN: NaN interval)."""
    if base.shape[0] != new.shape[0]:
        raise EvalError(f"paired sets differ in length: {base.shape[0]} vs {new.shape[0]} clips")
    idx = bootstrap_indices(len(base), resamples, seed) if idx is None else idx
    diff = float(stat(new) - stat(base))
    d = stat(new[idx]) - stat(base[idx])
    d = d[np.isfinite(d)]
    if d.size == 0:
        return diff, float("nan"), float("nan")
    lo, hi = np.percentile(d, [2.5, 97.5])
    return diff, float(lo), float(hi)


def _mean(x: np.ndarray) -> np.ndarray:
    return x[..., 0].mean(-1)


def paired_bootstrap(a, b, *, seed: int = 0, resamples: int = 2000) -> tuple[float, float, float]:
    """Mean of the paired differences a - b (one pair per clip, (N,) each) and its 95% percentile bootstrap interval
    (clips drawn with replacement, seeded): (mean, low, high); NaN for no clips."""
    a, b = np.asarray(a, np.float64).reshape(-1, 1), np.asarray(b, np.float64).reshape(-1, 1)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    return paired_interval(_mean, b, a, resamples=resamples, seed=seed)


def _direction(key: str) -> str:
    from foleyflow.eval.report import METRICS

    if _ONSET.fullmatch(key) or key == "class_p_true":
        return "high"
    return {k: b for k, _, b in METRICS}.get(key, "")


def compare(base: dict[str, dict], new: dict[str, dict], *, resamples: int = 2000, seed: int = 0,
            keys: list[str] | None = None) -> dict:
    """Paired comparison of two sets' records ({clip: record}, `read_per_clip`) on the clips both have.
    Returns {"clips": N, "only_base": n, "only_new": n, "resamples", "seed", "rows": [{key, base, new, diff, low,
    high, excludes_zero, better ("high"/"low"/""), verdict ("better"/"worse"/"not resolved"/"")}]}; every key uses
    the same clip resamples."""
    shared = sorted(set(base) & set(new))
    if not shared:
        raise EvalError("the two sets share no clip")
    b, n = [base[c] for c in shared], [new[c] for c in shared]
    if keys is None:
        have_b, have_n = set(pooled_keys(b)), set(pooled_keys(n))
        keys = [k for k in pooled_keys(b) if k in have_n and k in have_b]
    idx = bootstrap_indices(len(shared), resamples, seed)
    rows = []
    for key in keys:
        spec = pooled_key(key)
        if spec is None:
            raise EvalError(f"{key} has no per-clip form (set-level only)")
        xb, xn = spec.columns(b), spec.columns(n)
        fb, fn = float(spec.stat(xb)), float(spec.stat(xn))
        diff, lo, hi = paired_interval(spec.stat, xb, xn, idx=idx)
        excl = bool(math.isfinite(lo) and (lo > 0 or hi < 0))
        better = _direction(key)
        verdict = ""
        if better and math.isfinite(diff):
            verdict = ("not resolved" if not excl else
                       "better" if (diff > 0) == (better == "high") else "worse")
        rows.append({"key": key, "base": fb if math.isfinite(fb) else None, "new": fn if math.isfinite(fn) else None,
                     "diff": diff if math.isfinite(diff) else None, "low": lo if math.isfinite(lo) else None,
                     "high": hi if math.isfinite(hi) else None, "excludes_zero": excl, "better": better,
                     "verdict": verdict})
    return {"clips": len(shared), "only_base": len(set(base) - set(new)), "only_new": len(set(new) - set(base)),
            "resamples": resamples, "seed": seed, "rows": rows}


def diff_cell(row: dict | None, bold: bool = False) -> str:
    """One `compare` row as a table cell: "+0.012 [-0.003, +0.027]", then " +" (better) or " -" (worse) when the
    interval excludes 0 (bold: the whole cell in ** too); "n/a" for a missing row or difference."""
    if row is None or row.get("diff") is None:
        return "n/a"
    if row.get("low") is None or row.get("high") is None:
        return f"{row['diff']:+.3f}"
    mark = {"better": " +", "worse": " -"}.get(row.get("verdict"), "")
    text = f"{row['diff']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]{mark}"
    return f"**{text}**" if bold and row.get("excludes_zero") else text


def markdown(result: dict) -> str:
    """The comparison as a markdown table."""
    def f(v):
        return "-" if v is None else f"{v:.4g}"

    lines = [f"paired comparison on {result['clips']} shared clips ({result['only_base']} only in base, "
             f"{result['only_new']} only in new); {result['resamples']} clip resamples, seed {result['seed']}", "",
             "| key | better | base | new | new - base | 95% interval | excludes 0 | verdict |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for r in result["rows"]:
        ci = "-" if r["low"] is None else f"[{r['low']:+.4g}, {r['high']:+.4g}]"
        d = "-" if r["diff"] is None else f"{r['diff']:+.4g}"
        lines.append(f"| {r['key']} | {r['better'] or '-'} | {f(r['base'])} | {f(r['new'])} | {d} | {ci} | "
                     f"{'yes' if r['excludes_zero'] else 'no'} | {r['verdict'] or '-'} |")
    return "\n".join(lines)
