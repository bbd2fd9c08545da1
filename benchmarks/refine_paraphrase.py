"""Retrieval refinement on held-out paraphrases (issue 19's target): do `class_accuracy` and `clap_score` hold up when
a user names the sounds in words the model never saw, with and without `--refine`?

    python benchmarks/refine_paraphrase.py --data /work/data/foleyworld --split val --list a \\
        --thresholds 0.6 0.65 0.7 0.75 0.8 0.85 --json eval/refine/val_a.json
    python benchmarks/refine_paraphrase.py --data /work/data/foleyworld --split test --list b --threshold T \\
        --generate --bundle foleyflow/assets/default --work eval/refine/test_b --limit 100 --json ...

Paraphrases. Each caption's class words (`foleyflow.world.text.class_word_spans`; "piano keyboard" is one) are put in
words of no class: per class two held-out phrasings, drawn per clip by the seed (crc32 of the clip id and --seed).
List `a` is for choosing (`val`), list `b` for the final figures (`test`); the two share no phrase, and no phrase
holds a class word (checked). A caption whose class words have no paraphrase stays as it is for those words.

Phrase level (always, no models but MiniLM): for each threshold, over the split's first --limit captions,
  recovered    of the paraphrased class mentions, the fraction whose class the refined caption names again;
  wrong        refined captions that name a class the clip's caption did not (a replacement onto a wrong class), per
               caption;
  untouched    original captions that refinement leaves exactly as they are (it should not rewrite in-vocabulary
               text).
--generate (one threshold): writes WORK/manifest.jsonl (the split's first --limit rows, absolute paths, `caption` =
the paraphrase, `caption_original` kept), then `foleyflow generate-set --text caption+auto` into WORK/plain/gen and,
with `--refine T`, into WORK/refined/gen (same seeds), `foleyflow evaluate` of each against the ground truth with the
ORIGINAL captions as the CLAP text, and benchmarks/paired_eval.py (refined against plain). Printed: class_accuracy
and clap_score of both and their paired difference with its 95% interval; --original REPORT adds the same bundle
with the original captions (e.g. scripts/eval_val.sh's report of the split) as a reference row.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

PARAPHRASES = {
    "a": {
        "marimba": ["bass mallet bars", "resonator bars"], "xylophone": ["orchestral bar percussion", "xylo"],
        "glockenspiel": ["orchestra bells", "bell lyre"], "tubular_bells": ["chimes", "hanging bell tubes"],
        "steel_drum": ["caribbean drum", "pan drum"], "piano_key": ["grand keys", "keyed instrument"],
        "wood_block": ["slit drum", "hollow knocker"], "cowbell": ["agogo bell", "cattle bell"],
        "claves": ["rhythm sticks", "tapping sticks"], "hand_clap": ["applauding hands", "hands applauding"],
        "snare": ["side drum", "marching drum"], "tom": ["low drum", "rack drum"],
        "impact_wood": ["timber", "oak"], "impact_metal": ["steel", "aluminium"],
        "impact_glass": ["crystal", "translucent crystal"], "impact_plastic": ["polymer", "vinyl"],
        "engine": ["automobile", "lorry"], "rain": ["drizzle", "downpour"], "wind": ["breeze", "gale"]},
    "b": {
        "marimba": ["rosewood bar instrument", "marimbaphone"], "xylophone": ["bar percussion", "orchestral xylo"],
        "glockenspiel": ["toy bells", "bell kit"], "tubular_bells": ["tubular chimes", "church-like chimes"],
        "steel_drum": ["calypso drum", "oil drum instrument"], "piano_key": ["upright", "ivory keys"],
        "wood_block": ["temple knocker", "tick-tock block"], "cowbell": ["cattle chime", "latin bell"],
        "claves": ["rhythm stick pair", "clapsticks"], "hand_clap": ["palms slapping together", "applauding palms"],
        "snare": ["military drum", "rattle drum"], "tom": ["deep drum", "bass drum"],
        "impact_wood": ["walnut", "pine"], "impact_metal": ["brass", "tin"],
        "impact_glass": ["pyrex", "windowpane"], "impact_plastic": ["acrylic", "resin"],
        "engine": ["pickup", "motorcar"], "rain": ["showers", "rainstorm"], "wind": ["gusty air", "windstorm"]},
}


def check_lists() -> None:
    """No paraphrase names a class; the two lists share no phrase."""
    from foleyflow.world.text import classes_named

    for name, table in PARAPHRASES.items():
        for cls, phrases in table.items():
            for ph in phrases:
                if classes_named(ph):
                    raise SystemExit(f"list {name}: '{ph}' ({cls}) holds a class word")
    a = {p for ps in PARAPHRASES["a"].values() for p in ps}
    b = {p for ps in PARAPHRASES["b"].values() for p in ps}
    if a & b:
        raise SystemExit(f"lists a and b share {sorted(a & b)}")


def mention_spans(text: str) -> list[tuple[int, int, str]]:
    """Class words of `text`, neighbours of one class separated only by spaces merged ("piano keyboard")."""
    from foleyflow.world.text import class_word_spans

    out: list[tuple[int, int, str]] = []
    for a, b, cls in sorted(class_word_spans(text)):
        if out and out[-1][2] == cls and not text[out[-1][1]:a].strip():
            out[-1] = (out[-1][0], b, cls)
        else:
            out.append((a, b, cls))
    return out


def paraphrase(caption: str, table: dict[str, list[str]], seed: int) -> tuple[str, list[str]]:
    """(the caption with each class mention put in a held-out phrase drawn by `seed`, the classes paraphrased)."""
    rng = random.Random(seed)
    out, at, done = [], 0, []
    for a, b, cls in mention_spans(caption):
        if cls not in table:
            continue
        out += [caption[at:a], rng.choice(table[cls])]
        at = b
        done.append(cls)
    return "".join(out + [caption[at:]]), done


def clip_seed(seed: int, clip_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(clip_id.encode())) % (2 ** 31)


def read_rows(data: Path, split: str, limit: int) -> list[dict]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == split and r.get("caption")][:limit]
    if not rows:
        raise SystemExit(f"{data}/manifest.jsonl: no rows with a caption in split '{split}'")
    for r in rows:
        for k in ("video", "audio", "truth"):
            if r.get(k) and not str(r[k]).startswith("/"):
                r[k] = str(data / r[k])
    return rows


def phrase_level(rows: list[dict], table: dict, seed: int, thresholds: list[float]) -> list[dict]:
    from foleyflow.cot.refine import Refiner, minilm_embedder
    from foleyflow.world.text import classes_named

    para = [paraphrase(r["caption"], table, clip_seed(seed, r["id"])) for r in rows]
    embed = minilm_embedder()
    out = []
    for th in thresholds:
        ref = Refiner(embed, threshold=th)
        recovered = classes = wrong = untouched = 0
        for row, (text, done) in zip(rows, para):
            named = classes_named(ref.refine_text(text))
            classes += len(set(done))
            recovered += len(set(done) & named)
            wrong += bool(named - classes_named(row["caption"]))
            untouched += ref.refine_text(row["caption"]) == row["caption"]
        out.append({"threshold": th, "recovered": recovered / max(classes, 1), "classes": classes,
                    "wrong_class_captions": wrong / len(rows), "untouched_originals": untouched / len(rows)})
    return out


def run_cmd(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def generate(args, rows: list[dict], table: dict) -> dict:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "manifest.jsonl"
    lines = []
    for r in rows:
        text, _ = paraphrase(r["caption"], table, clip_seed(args.seed, r["id"]))
        lines.append(json.dumps({**r, "caption": text, "caption_original": r["caption"]}))
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(manifest, "\n".join(lines) + "\n")
    truth = Path(args.data) / args.split
    ff = str(Path(sys.executable).with_name("foleyflow"))
    reports = {}
    for arm, extra in (("plain", []), ("refined", ["--refine", str(args.threshold)])):
        gen, rep = work / arm / "gen", work / arm / "report"
        run_cmd([ff, "generate-set", str(manifest), "--text", "caption+auto", "--bundle", args.bundle,
                 "--out", str(gen), "--threads", str(args.threads), "--seed", str(args.seed)]
                + (["--steps", str(args.steps)] if args.steps else []) + extra)
        run_cmd([ff, "evaluate", "--generated", str(gen), "--reference", str(truth), "--truth", str(truth),
                 "--video", str(truth), "--text", str(Path(args.data) / "manifest.jsonl"), "-o", str(rep),
                 "--no-plots", "--no-baselines"])
        reports[arm] = rep
    import paired_eval

    paired = paired_eval.run(["--base", str(reports["plain"]), "--new", str(reports["refined"]),
                              "--json", str(work / "paired_refined_vs_plain.json")])
    return {"paired": {r["key"]: r for r in paired["rows"] if r["key"] in ("class_accuracy", "clap_score")},
            "work": str(work)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the FoleyWorld folder (manifest.jsonl and the split folders)")
    p.add_argument("--split", default="val")
    p.add_argument("--list", default="a", choices=sorted(PARAPHRASES), help="a: for choosing (val); b: for test")
    p.add_argument("--limit", type=int, default=200, help="the split's first N captioned rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.65, 0.7, 0.75, 0.8, 0.85])
    p.add_argument("--generate", action="store_true", help="also generate and evaluate with and without --refine")
    p.add_argument("--threshold", type=float, default=0.85, help="--generate: the similarity of --refine")
    p.add_argument("--bundle", default=str(ROOT / "foleyflow" / "assets" / "default"))
    p.add_argument("--work", help="--generate: folder for the manifest, audio and reports")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="OUT", help="write every figure as JSON")
    args = p.parse_args(argv)
    check_lists()
    from machine import cpu_summary

    print(cpu_summary())
    rows = read_rows(Path(args.data), args.split, args.limit)
    table = PARAPHRASES[args.list]
    levels = phrase_level(rows, table, args.seed, sorted(set(args.thresholds + [args.threshold])))
    print(f"\nphrase level: {len(rows)} {args.split} captions, list {args.list}")
    print("| threshold | classes recovered | captions gaining a wrong class | originals untouched |")
    print("|---:|---:|---:|---:|")
    for lv in levels:
        print(f"| {lv['threshold']:.2f} | {lv['recovered']:.3f} | {lv['wrong_class_captions']:.3f} | "
              f"{lv['untouched_originals']:.3f} |")
    result = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "phrase_level": levels}
    if args.generate:
        if not args.work:
            raise SystemExit("--generate needs --work DIR")
        result["generation"] = gen = generate(args, rows, table)
        print(f"\n{len(rows)} {args.split} clips, paraphrases of list {args.list}, --refine {args.threshold:g} "
              "against none (paired):")
        for key, r in gen["paired"].items():
            print(f"  {key:15s} {r['base']:.4f} -> {r['new']:.4f}  {r['diff']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]")
    if args.json:
        from foleyflow.fileio import atomic_write_text

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
