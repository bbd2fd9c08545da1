"""The `foleyflow` command line: a thin layer over the library.

Each subcommand lives in `foleyflow/commands/<name>.py` and provides `register(subparsers)`, which adds its parser and
sets `func` to a function taking the parsed arguments. Subcommand modules import heavy dependencies inside `func`, so
`foleyflow --help` stays fast. Any `FoleyError` becomes a one-line `error: ...` on stderr and a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from foleyflow import __version__
from foleyflow.errors import FoleyError

# Subcommand modules, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "generate",
    "generate_set",
    "batch",
    "serve",
    "info",
    "mux",
    "world",
    "extract_latents",
    "extract_features",
    "evaluate",
    "plan",
    "convert",
    "ui",
)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments print one line, `error: <prog>: <message> (see --help)`, and exit 2 (no usage block).
    Subparsers inherit the class, so every subcommand behaves the same."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="foleyflow", description="foleyflow: sound for pictures (video-to-audio and text-to-audio generation)."
    )
    parser.add_argument("--version", action="version", version=f"foleyflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"foleyflow.commands.{name}").register(sub)
    return parser


class Terminated(BaseException):
    """Raised by the SIGTERM handler: unwinds the stack like Ctrl-C, so `atomic_write` removes its temporaries and
    the previous result stays."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \xNN, not a crash
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass
    # SIGTERM (kill, a scheduler's timeout) becomes an exception that runs clean-up, like SIGINT's KeyboardInterrupt
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print("error: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: one line unless asked for the traceback
        if os.environ.get("FOLEYFLOW_DEBUG"):
            raise
        print(f"error: internal error ({type(e).__name__}: {e}); set FOLEYFLOW_DEBUG=1 for the traceback",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
