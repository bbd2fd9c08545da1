"""A table-driven sweep over every subcommand's arguments (issue 16): bad numbers, nan, inf, huge, negative, missing
files, folders where files are expected, files where folders are expected, garbage files and non-UTF-8 names must each
give exit code 2 and one line on stderr, never an internal error (exit 1) and never a traceback. Every case fails
before any model runs, so the sweep runs in-process (`foleyflow.cli.main`) in seconds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "foleyworld"
MANIFEST = EXAMPLES / "manifest.jsonl"
VAE = ROOT / "foleyflow" / "assets" / "codec" / "vae.safetensors"
BUNDLE = ROOT / "foleyflow" / "assets" / "default"
NON_UTF8 = os.fsdecode(b"\xff\xfe-missing")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    import soundfile as sf

    from test_pipeline import make_video

    d = tmp_path_factory.mktemp("sweep")
    (d / "folder").mkdir()
    (d / "garbage.bin").write_bytes(bytes(range(256)) * 4)
    (d / "text.txt").write_text("hello\n")
    (d / "latin1.txt").write_bytes(b"Semantic: caf\xe9\n")
    (d / "bad_types.jsonl").write_text('{"id": "x", "video": 5}\n')
    (d / "escape.jsonl").write_text('{"id": "./../ESCAPE", "video": "%s"}\n' % (d / "clip.mp4"))
    (d / "empty.jsonl").write_text("")
    (d / "deep.json").write_text("[" * 100000)
    sf.write(d / "sound.wav", np.zeros((1600, 2), np.float32), 16000)
    make_video(d / "clip.mp4", 1.0, fps=10, audio=False)
    return {k: str(d / k) for k in ("folder", "garbage.bin", "text.txt", "latin1.txt", "bad_types.jsonl",
                                    "escape.jsonl", "empty.jsonl", "sound.wav", "clip.mp4", "deep.json")} | {
        "dir": str(d), "missing": str(d / "missing.mp4"), "in_file": str(d / "text.txt" / "sub"),
        "nonutf8": str(d / NON_UTF8)}


# (id, argv template); {name} is replaced with files[name]
CASES = [
    # generate
    ("gen-steps-0", "generate {clip.mp4} --steps 0"), ("gen-steps-neg", "generate {clip.mp4} --steps -3"),
    ("gen-steps-huge", "generate {clip.mp4} --steps 1000000000"), ("gen-steps-text", "generate {clip.mp4} --steps x"),
    ("gen-cfg-nan", "generate {clip.mp4} --cfg nan"), ("gen-cfg-inf", "generate {clip.mp4} --cfg inf"),
    ("gen-cfg-neg", "generate {clip.mp4} --cfg -1"), ("gen-seed-neg", "generate {clip.mp4} --seed -1"),
    ("gen-seed-65bit", "generate {clip.mp4} --seed 99999999999999999999999"),
    ("gen-dur-nan", "generate --duration nan"), ("gen-dur-inf", "generate --duration inf"),
    ("gen-dur-neg", "generate --duration -2"), ("gen-dur-huge", "generate --duration 1e9"),
    ("gen-sr-0", "generate {clip.mp4} --sample-rate 0"), ("gen-sr-odd", "generate {clip.mp4} --sample-rate 12345"),
    ("gen-lufs-nan", "generate {clip.mp4} --loudness nan"), ("gen-threads-neg", "generate {clip.mp4} --threads -1"),
    ("gen-overlap-nan", "generate {clip.mp4} --overlap nan"), ("gen-overlap-inf", "generate {clip.mp4} --overlap inf"),
    ("gen-missing", "generate {missing}"), ("gen-video-folder", "generate {folder}"),
    ("gen-video-text", "generate {text.txt}"), ("gen-video-garbage", "generate {garbage.bin}"),
    ("gen-video-nonutf8", "generate {nonutf8}"), ("gen-out-folder", "generate {clip.mp4} -o {folder}"),
    ("gen-out-in-file", "generate {clip.mp4} -o {in_file}/x.mp4"), ("gen-out-suffix", "generate {clip.mp4} -o x.txt"),
    ("gen-out-input", "generate {clip.mp4} -o {clip.mp4}"), ("gen-cot-folder", "generate --duration 1 --cot {folder}"),
    ("gen-cot-latin1", "generate --duration 1 --cot {latin1.txt}"),
    ("gen-bundle-missing", "generate {clip.mp4} --bundle {missing}"),
    ("gen-bundle-file", "generate {clip.mp4} --bundle {text.txt}"),
    ("gen-t2a-out-mp4", "generate --duration 1 -o {dir}/x.mp4"),
    # generate-set
    ("set-missing", "generate-set {missing} --out {dir}/o"), ("set-folder", "generate-set {folder} --out {dir}/o"),
    ("set-garbage", "generate-set {garbage.bin} --out {dir}/o"),
    ("set-types", "generate-set {bad_types.jsonl} --out {dir}/o"),
    ("set-empty", "generate-set {empty.jsonl} --out {dir}/o"), ("set-deep", "generate-set {deep.json} --out {dir}/o"),
    ("set-escape", "generate-set {escape.jsonl} --out {dir}/o"),
    ("set-out-file", "generate-set {escape.jsonl} --out {text.txt}"),
    ("set-limit-0", "generate-set {escape.jsonl} --out {dir}/o --limit 0"),
    ("set-seed-65bit", f"generate-set {MANIFEST} --out {{dir}}/o --seed 99999999999999999999999 --bundle {BUNDLE}"),
    # info
    ("info-missing", "info {missing}"), ("info-folder", "info {folder}"), ("info-garbage", "info {garbage.bin}"),
    ("info-nonutf8", "info {nonutf8}"),
    # mux
    ("mux-missing", "mux {missing} {sound.wav} -o {dir}/m.mp4"), ("mux-audio-missing", "mux {clip.mp4} {missing} -o m.mp4"),
    ("mux-audio-garbage", "mux {clip.mp4} {garbage.bin} -o {dir}/m.mp4"),
    ("mux-audio-folder", "mux {clip.mp4} {folder} -o {dir}/m.mp4"),
    ("mux-out-folder", "mux {clip.mp4} {sound.wav} -o {folder}"),
    ("mux-out-input", "mux {clip.mp4} {sound.wav} -o {clip.mp4}"),
    ("mux-out-in-file", "mux {clip.mp4} {sound.wav} -o {in_file}/m.mp4"),
    # world
    ("world-n-0", "world make --out {dir}/w --split test --n 0"), ("world-n-neg", "world make --out {dir}/w --split test --n -1"),
    ("world-split", "world make --out {dir}/w --split bogus --n 1"),
    ("world-shard-neg", "world make --out {dir}/w --split test --n 1 --shard-size -1"),
    ("world-workers-0", "world make --out {dir}/w --split test --n 1 --workers 0"),
    ("world-seed-neg", "world make --out {dir}/w --split test --n 1 --seed -5"),
    ("world-out-file", "world make --out {text.txt} --split test --n 1"),
    ("world-out-in-file", "world make --out {in_file} --split test --n 1"),
    ("world-config-missing", "world make --out {dir}/w --split test --n 1 --config {missing}"),
    ("world-config-garbage", "world make --out {dir}/w --split test --n 1 --config {garbage.bin}"),
    ("world-set-unknown", "world make --out {dir}/w --split test --n 1 --set bogus=1"),
    ("world-set-nan", "world make --out {dir}/w --split test --n 1 --set size=nan"),
    ("preview-missing", "world preview {missing}"), ("preview-file", "world preview {text.txt}"),
    ("preview-clips-0", f"world preview {EXAMPLES} --clips 0 -o {{dir}}/p.png"),
    ("preview-out-folder", f"world preview {EXAMPLES} -o {{folder}}"),
    ("preview-out-manifest", f"world preview {EXAMPLES} -o {MANIFEST}"),
    # extract-latents
    ("lat-missing", f"extract-latents {{missing}} --out {{dir}}/l --vae {VAE}"),
    ("lat-dur-nan", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --duration-s nan"),
    ("lat-dur-inf", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --duration-s inf"),
    ("lat-dur-huge", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --duration-s 1e6"),
    ("lat-dur-0", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --duration-s 0"),
    ("lat-out-file", f"extract-latents {MANIFEST} --out {{text.txt}} --vae {VAE}"),
    ("lat-vae-missing", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {{missing}}"),
    ("lat-vae-garbage", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {{garbage.bin}}"),
    ("lat-vae-folder", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {{folder}}"),
    ("lat-shard-0", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --shard-size 0"),
    ("lat-threads-neg", f"extract-latents {MANIFEST} --out {{dir}}/l --vae {VAE} --threads -1"),
    # extract-features
    ("feat-missing", f"extract-features {{missing}} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE}"),
    ("feat-dur-nan", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                     "--duration nan"),
    ("feat-dur-neg", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                     "--duration -1"),
    ("feat-dur-huge", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                      "--duration 1e9"),
    ("feat-budget", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                    "--text-budget abc"),
    ("feat-budget-0", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                      "--text-budget 0"),
    ("feat-workers-0", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE} "
                       "--workers 0"),
    ("feat-enc-missing", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {{missing}} "
                         f"--sync-encoder {VAE}"),
    ("feat-enc-wrong", f"extract-features {MANIFEST} --out {{dir}}/f --semantic-encoder {VAE} --sync-encoder {VAE}"),
    ("feat-out-file", f"extract-features {MANIFEST} --out {{text.txt}} --semantic-encoder {VAE} --sync-encoder {VAE}"),
    # evaluate
    ("eval-gen-missing", "evaluate --generated {missing} --reference {dir} -o {dir}/r --no-models"),
    ("eval-gen-file", "evaluate --generated {text.txt} --reference {dir} -o {dir}/r --no-models"),
    ("eval-ref-missing", "evaluate --generated {dir} --reference {missing} -o {dir}/r --no-models"),
    ("eval-video-file", "evaluate --generated {dir} --reference {dir} -o {dir}/r --video {text.txt} --no-models"),
    ("eval-models-file", "evaluate --generated {dir} --reference {dir} -o {dir}/r --models {text.txt}"),
    ("eval-seed-neg", "evaluate --generated {dir} --reference {dir} -o {dir}/r --no-models --seed -1"),
    ("eval-out-file", f"evaluate --generated {EXAMPLES} --reference {EXAMPLES} -o {{text.txt}} --no-models "
                      "--no-baselines --no-plots"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case,template", CASES, ids=[c[0] for c in CASES])
def test_bad_argument_is_one_line_exit_2(files, capsys, case, template):
    from foleyflow.cli import main

    import re

    argv = [re.sub(r"\{([^{}]+)\}", lambda m: files[m.group(1)], part) for part in template.split()]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err
