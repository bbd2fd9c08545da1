"""foleyflow.errors.run_main, the scripts' entry point: a FoleyError ends the process with one `error: ...` line on
stderr and exit code 2, a normal return ends it with main's return value; and a script using it does so for real."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from foleyflow.errors import CheckpointError, FoleyError, run_main

ROOT = Path(__file__).resolve().parents[1]


def test_foley_error_is_one_line_on_stderr_and_exit_2(capsys):
    def main():
        print("partial output")
        raise CheckpointError("checkpoint not found: x.safetensors")

    with pytest.raises(SystemExit) as exc:
        run_main(main)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == "partial output\n"
    assert err == "error: checkpoint not found: x.safetensors\n"


@pytest.mark.parametrize("code, expected", [(0, 0), (None, None), (3, 3)])
def test_success_exits_with_mains_return_value(capsys, code, expected):
    seen = []

    def main(argv=None, *, flag=False):
        seen.append((argv, flag))
        return code

    with pytest.raises(SystemExit) as exc:
        run_main(main, ["--x"], flag=True)
    assert exc.value.code == expected                 # SystemExit(None) is exit status 0
    assert seen == [(["--x"], True)]
    assert capsys.readouterr().err == ""


def test_other_errors_are_not_swallowed():
    def main():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_main(main)


def test_a_custom_exit_code_is_kept(capsys):
    class Special(FoleyError):
        exit_code = 5

    def main():
        raise Special("special")

    with pytest.raises(SystemExit) as exc:
        run_main(main)
    assert exc.value.code == 5
    assert capsys.readouterr().err == "error: special\n"


def test_a_script_reports_a_missing_checkpoint_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "fit_mel_pca.py"), "--cache", str(tmp_path / "c"),
                           "--codec", str(tmp_path / "none.safetensors"), "--components", "4",
                           "--out", str(tmp_path / "o.safetensors")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'none.safetensors'}"]
    assert not (tmp_path / "o.safetensors").exists()
