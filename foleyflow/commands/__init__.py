"""CLI subcommands: one module each, with `register(subparsers)`; see `foleyflow/cli.py`."""
