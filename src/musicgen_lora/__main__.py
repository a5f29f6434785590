"""`python -m musicgen_lora <command>`: one command per pipeline stage, plus tools.

`--help` lists every command; `<command> --help` shows its arguments. Errors a user can fix
(params, data, adapters) end as one line on stderr with a non-zero exit; `--debug` before the
command (or MUSICGEN_LORA_DEBUG=1) shows the traceback instead.
Notes and warnings go through `logging` to stderr (configured once, in `main`); stdout carries
each command's result.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import sys
from dataclasses import dataclass

from .core.errors import UserError
from .core.params import ParamsError, load
from .runtime import allocator, numerics
from .runtime.launch import relaunch, scrub


@dataclass(frozen=True)
class Command:
    module: str  # under musicgen_lora
    func: str
    purpose: str
    computes: bool = False  # relaunched on mimalloc with the pinned numerics (runtime/launch.py)


COMMANDS = {
    "segment": Command(
        "stages.segment", "main", "stage: cut data/raw into clips with captions and a manifest", computes=True
    ),
    "encode": Command("stages.encode", "main", "stage: encode clips into EnCodec token shards", computes=True),
    "train": Command("stages.train", "main", "stage: fit a LoRA adapter (best and final)", computes=True),
    "evaluate": Command(
        "stages.evaluate", "main", "stage: generate the prompt set with base/best/final, measure it", computes=True
    ),
    "summarize": Command("stages.summarize", "main", "stage: the run's metrics, report and plots", computes=True),
    "generate": Command("use.generate", "main", "audio from a trained adapter or the base model, any length", computes=True),
    "validate": Command("validate", "main", "check params.yaml and print every problem"),
    "plan": Command("model.plan", "main", "the GPU memory a training run needs, and the settings that fit 8-80 GB"),
    "preset": Command("experiments.presets", "main", "apply a ready override set for a real checkpoint to params.yaml"),
    "metrics": Command(
        "metrics.cli", "main", "score any audio files with the evaluation's metrics and flags", computes=True
    ),
    "env": Command(
        "core.provenance", "env_main", "what this machine's results depend on (CPU, ISA, threads, allocator)", True
    ),
    "trials": Command("experiments.trials", "main", "run the reference trials as tagged DVC experiments"),
    "compare": Command("experiments.compare", "main", "the cross-trial report (reports/trials.md)"),
    "show": Command("experiments.show", "main", "this commit's experiments side by side, one terminal line each"),
    "corpus": Command("tiny.corpus", "corpus_main", "write the synthetic demo corpus"),
    "bootstrap": Command("tiny.bootstrap", "bootstrap_main", "rebuild the embedded tiny MusicGen", computes=True),
    "mini-report": Command("tiny.acceptance", "main", "measure a mini codec checkpoint (musicnn round trip)"),
    "mini": Command(
        "tiny.mini", "mini_main", "build the embedded mini MusicGen (real compositions, resumable)", computes=True
    ),
    "deps": Command("deps", "main", "dvc.yaml code deps from the import graph (--write, --check)"),
}


# OS errors a user fixes where the output goes, not in the code: one line, not a traceback
WRITE_ERRORS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some quota or write elsewhere",
    errno.EROFS: "the folder is read-only: write elsewhere",
    errno.EACCES: "no permission: write elsewhere or fix the folder's permissions",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {c.purpose}" for name, c in COMMANDS.items()]
    return (
        "usage: python -m musicgen_lora [--debug] <command> [args]\n\n"
        "LoRA fine-tuning of MusicGen as a DVC pipeline (see dvc.yaml).\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\n`python -m musicgen_lora <command> --help` shows a command's arguments."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MUSICGEN_LORA_DEBUG") == "1"
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"musicgen_lora: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[argv[0]]
    # notes and warnings (logging in the modules) on stderr, one plain line each; stdout keeps the command's result
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return getattr(importlib.import_module(f"musicgen_lora.{command.module}"), command.func)(argv[1:]) or 0
    except ParamsError as exc:
        if debug:
            raise
        print(exc, file=sys.stderr)
        return 2
    except UserError as exc:
        if debug:
            raise
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        if debug or exc.errno not in WRITE_ERRORS:
            raise
        where = exc.filename or "an output file"
        print(
            f"{argv[0]}: cannot write {where}: {exc.strerror} ({WRITE_ERRORS[exc.errno]}); nothing half-written was kept",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{argv[0]}: interrupted; nothing half-written was kept (run it again to resume)", file=sys.stderr)
        return 130


def launch_vars(environ) -> dict[str, str]:
    """What a computing command is relaunched with: mimalloc, and the CPU path of
    `numerics.cpu_isa` (none where params.yaml cannot be read: the command then reports why)."""
    try:
        (np_,) = load("numerics")
        pins = numerics.pinned_vars(np_.cpu_isa)
    except ParamsError:
        pins = {}
    return {**allocator.preload_vars(environ), **pins}


def cli() -> None:
    """The command line: computing commands relaunched (runtime/launch.py), then `main`."""
    args = sys.argv[1:]
    name = next((a for a in args if not a.startswith("-")), None)
    if name in COMMANDS and COMMANDS[name].computes:
        relaunch(args, launch_vars(os.environ))
    scrub()
    sys.exit(main())


if __name__ == "__main__":
    cli()
