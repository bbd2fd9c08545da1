def test_help_and_version(run_cli):
    r = run_cli("--help")
    assert r.code == 0 and "foleyflow" in r.out
    r = run_cli("--version")
    assert r.code == 0 and r.out.startswith("foleyflow ")


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys, foleyflow, foleyflow.cli, foleyflow.config, foleyflow.checkpoint;"
            "heavy = {'av', 'soundfile', 'scipy', 'yaml', 'safetensors', 'sentence_transformers', 'pymunk', "
            "'matplotlib', 'librosa', 'PIL', 'tensorboard'};"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
