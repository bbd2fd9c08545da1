"""Typed errors with one-line messages. The CLI prints `error: <message>` and exits non-zero for any of them."""


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
