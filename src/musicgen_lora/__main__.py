"""`python -m musicgen_lora <command>`: one subcommand per pipeline stage, plus tools."""

from __future__ import annotations

import importlib
import sys

from .allocator import relaunch
from .params import ParamsError

# command -> (module, function): each stage lives in the module of the same name.
COMMANDS = {
    "segment": ("segment", "main"),
    "encode": ("encode", "main"),
    "train": ("train", "main"),
    "evaluate": ("evaluate", "main"),
    "summarize": ("summarize", "main"),
    "metrics": ("evaluate", "metrics_main"),
    "corpus": ("corpus", "corpus_main"),
    "bootstrap": ("bootstrap", "bootstrap_main"),
    "validate": ("params", "validate_main"),
    "trials": ("trials", "main"),
    "compare": ("compare", "main"),
    "bench": ("bench", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m musicgen_lora {{{','.join(COMMANDS)}}} [args]", file=sys.stderr)
        return 2
    module, func = COMMANDS[argv[0]]
    try:
        return getattr(importlib.import_module(f"musicgen_lora.{module}"), func)(argv[1:]) or 0
    except ParamsError as exc:
        print(exc, file=sys.stderr)
        return 2


def cli() -> None:
    """The command line: under mimalloc (see allocator.py), then `main`."""
    relaunch(sys.argv[1:])
    sys.exit(main())


if __name__ == "__main__":
    cli()
