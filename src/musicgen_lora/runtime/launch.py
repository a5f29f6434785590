"""Relaunching a command with process-level settings, scoped to that one process.

Commands that compute re-execute themselves once with mimalloc preloaded (`allocator`) and the
CPU's numerical path pinned (`numerics`). The relaunched process records the variables as they
were and `scrub` puts them back before the command runs, so nothing it starts (git, dvc, `dvc
queue` workers) inherits them: a child `musicgen_lora` command decides for itself.
"""

from __future__ import annotations

import json
import os
import sys

MARK = "MUSICGEN_LORA_RELAUNCHED"  # the variables relaunch changed, as they were (JSON)
LAUNCH_OPTIONS: dict[str, str] = {}  # what this process was relaunched with (for provenance)


def relaunch_env(environ, changes: dict[str, str]) -> dict[str, str]:
    """`environ` with `changes`, and the changed variables as they were (for `scrub`)."""
    return {**environ, MARK: json.dumps({k: environ.get(k) for k in changes}), **changes}


def relaunch(argv: list[str], changes: dict[str, str], module: str = "musicgen_lora") -> None:
    """Re-exec `python -m <module> argv` with `changes` in its environment; returns (and the
    command runs as is) where there is nothing to change or this process is the relaunched one.
    Called before torch is imported."""
    if not changes or MARK in os.environ:
        return
    env = relaunch_env(os.environ, changes)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def scrub(environ=os.environ) -> None:
    """In the relaunched process: let the libraries read their settings (`numerics.settle`), then
    put every variable `relaunch` changed back as it was."""
    saved = environ.pop(MARK, None)
    if saved is None:
        return
    original = json.loads(saved)
    LAUNCH_OPTIONS.update({k: environ[k] for k in original if k in environ and k != "LD_PRELOAD"})
    if any(k != "LD_PRELOAD" and not k.startswith("MIMALLOC") for k in original):
        from .numerics import settle

        settle()
    for key, value in original.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
