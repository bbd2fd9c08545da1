"""The library's layers (docs/contributing.md, "Layers"): every import points down or sideways, never up.

Every module of foleyflow/ is parsed (ast), including imports inside functions, which run as surely as top-level ones
when the function is called. A module may import modules of its own layer or of a lower one. Also checked:
foleyflow/rewards never imports foleyflow/eval and foleyflow/eval never imports foleyflow/rewards (rewards are trained
and judged apart from the evaluation models);
the library never imports recipes or the CLI; no private name (`_x`) is imported from another package; and importing
every module loads none of the heavy optional dependencies (they load inside the functions that use them).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "foleyflow"

# The layers, lowest first: module or package names (a package covers everything below it). The same order is drawn
# in docs/contributing.md; change both together. Names of modules that do not exist yet are fine here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("foleyflow", "foleyflow.errors", "foleyflow.config", "foleyflow.options", "foleyflow.hashing",
              "foleyflow.fileio", "foleyflow.audio", "foleyflow.media", "foleyflow.events", "foleyflow.manifest")),
    ("parts", ("foleyflow.nn", "foleyflow.flow", "foleyflow.checkpoint")),
    ("models", ("foleyflow.models",)),
    ("world", ("foleyflow.world", "foleyflow.cot")),
    ("conditioning", ("foleyflow.conditioning",)),
    ("data", ("foleyflow.data",)),
    ("training", ("foleyflow.train", "foleyflow.rewards")),
    ("bundle", ("foleyflow.bundle", "foleyflow.planning")),
    ("pipeline", ("foleyflow.pipeline",)),
    ("evaluation", ("foleyflow.eval",)),
    ("interface", ("foleyflow.commands", "foleyflow.serve", "foleyflow.cli", "foleyflow.__main__", "foleyflow.ui")),
]
# Known upward imports still to remove, with the reason; each must still exist (delete the entry once it is fixed).
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
FORBIDDEN = [  # (importer prefix, imported prefix, why)
    ("foleyflow.rewards", "foleyflow.eval", "reward models never use the evaluation models' code or data"),
    ("foleyflow.eval", "foleyflow.rewards", "the evaluation suite (its quality predictor included) never uses the "
                                            "reward models' code or data"),
    ("foleyflow.models.eval_quality", "foleyflow.rewards", "the evaluation quality network never uses the reward "
                                                           "models' code"),
    ("foleyflow", "recipes", "recipes are scripts; the library never imports them"),
]
HEAVY = ("av", "soundfile", "scipy", "yaml", "safetensors", "sentence_transformers", "pymunk", "matplotlib", "librosa",
         "PIL", "tensorboard", "h5py", "transformers", "fastapi", "uvicorn", "starlette", "multipart", "python_multipart",
         "gradio", "playwright")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LIBRARY.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """[(imported module, imported names, line)] of every import statement in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names], node.lineno))
    return out


def _layer(module: str) -> int | None:
    """Index of the most specific LAYERS entry that covers `module`."""
    best, best_len = None, -1
    for i, (_, names) in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best_len:
                best, best_len = i, len(n)
    return best


def _target(module: str, names: list[str], known: dict[str, Path]) -> list[str]:
    """The library modules an import statement loads: `from foleyflow.models import vae` loads foleyflow.models.vae."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
    return subs or [module]


def _prefix(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_layer_and_imports_point_down():
    known = _modules()
    unplaced = [m for m in known if _layer(m) is None]
    assert not unplaced, f"modules without a layer (add them to LAYERS and docs/contributing.md): {unplaced}"
    upward, seen_known = [], set()
    for name, path in known.items():
        for mod, names, line in _imports(name, path):
            if not _prefix(mod, "foleyflow"):
                continue
            for target in _target(mod, names, known):
                dst = _layer(target)
                if dst is not None and dst > _layer(name):
                    key = (name, target)
                    if key in KNOWN_UPWARD:
                        seen_known.add(key)
                        continue
                    upward.append(f"{path.relative_to(ROOT)}:{line}: {name} ({LAYERS[_layer(name)][0]}) imports "
                                  f"{target} ({LAYERS[dst][0]})")
    assert not upward, "upward imports (move the shared piece down instead):\n" + "\n".join(upward)
    stale = set(KNOWN_UPWARD) - seen_known
    assert not stale, f"these known upward imports are gone; delete them from KNOWN_UPWARD: {sorted(stale)}"


def test_forbidden_imports_and_private_names_across_packages():
    known = _modules()
    bad = []
    for name, path in known.items():
        for mod, names, line in _imports(name, path):
            where = f"{path.relative_to(ROOT)}:{line}"
            for src, dst, why in FORBIDDEN:
                if _prefix(name, src) and _prefix(mod, dst):
                    bad.append(f"{where}: {name} imports {mod}: {why}")
            if _prefix(mod, "foleyflow.cli") and name != "foleyflow.__main__":
                bad.append(f"{where}: {name} imports the CLI; only foleyflow/__main__.py may")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _prefix(mod, "foleyflow") and _package(mod) != _package(name):
                bad.append(f"{where}: {name} imports private {private} from {mod}; make them public or move them")
    assert not bad, "\n".join(bad)


def test_the_layer_checker_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from foleyflow.pipeline import FoleyPipeline\n    return FoleyPipeline\n")
    assert ("foleyflow.pipeline", ["FoleyPipeline"], 4) in _imports("foleyflow.models.m", src)
    assert _layer("foleyflow.models.m") < _layer("foleyflow.pipeline")
    assert _layer("foleyflow.rewards.clap") == _layer("foleyflow.train")
    assert _target("foleyflow.world", ["text"], {"foleyflow.world.text": src}) == ["foleyflow.world.text"]


def test_importing_every_module_stays_light():
    """Each library module imports only the standard library, numpy, torch and foleyflow at import time."""
    names = [n for n in _modules() if n != "foleyflow.__main__"]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(sorted({set(HEAVY)!r} & {{m.split('.')[0] for m in sys.modules}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"heavy packages loaded at import time: {out.stdout.strip()}"
