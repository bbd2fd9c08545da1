"""Typed errors with one-line messages. The CLI prints `error: <message>` and exits non-zero for any of them;
scripts (benchmarks, small recipes) do the same through `run_main`."""


class FoleyError(Exception):
    """Base class of every error foleyflow raises on purpose. `str(err)` is a one-line, user-facing message."""

    exit_code = 2


class MediaError(FoleyError):
    """A media file is missing, unreadable, corrupt, unsupported or lacks a required stream."""


class ConfigError(FoleyError):
    """A configuration file or override is invalid (unknown key, wrong type, absurd value)."""


class CheckpointError(FoleyError):
    """A checkpoint is missing, corrupt, of the wrong kind, or does not fit the model."""


class CacheError(FoleyError):
    """A feature or latent cache is missing, stale or was made by other models than the ones in use."""


class MissingResourceError(FoleyError):
    """A system resource (soundfont, HRTF file, optional package) is not installed; the message says how."""


class EvalError(FoleyError):
    """Evaluation inputs are unusable: empty or mismatched sets, wrong shapes, non-finite values, missing pairs."""


def run_main(main, *args, **kwargs) -> None:
    """A script's entry point (`if __name__ == "__main__": run_main(main)`): ends the process with main's return
    value as its exit code (None is 0); a FoleyError becomes one line `error: <message>` on stderr and exit code 2
    (its `exit_code`) instead of a traceback. Other exceptions propagate. Never returns. Recipes launched with
    torchrun use foleyflow.train.dist.run_recipe instead (it also leaves cleanly after the process group)."""
    import sys

    try:
        code = main(*args, **kwargs)
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(code)
