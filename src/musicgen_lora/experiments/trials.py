"""`python -m musicgen_lora trials`: run the reference trainings as named, git-tagged DVC experiments.

Each trial is `dvc exp run --temp --name <trial> --set-param ...`: it runs in a temporary copy
of the committed workspace, so it starts from a clean params.yaml, one trial's overrides never
leak into the next and the workspace is left as it was (ready for `git checkout <tag>`); then an
annotated tag of the trial's name on the experiment's commit, whose message holds the
description and the overrides. `--queue -j N` sends the trials through DVC's own queue.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML

from ..core.errors import UserError

log = logging.getLogger(__name__)

MANIFEST = Path("experiments/trials.yaml")
RESTORED = ["params.yaml"]


@dataclass(frozen=True)
class Trial:
    name: str
    description: str
    params: dict

    def set_params(self) -> list[str]:
        """`-S key=value` arguments; values as YAML so types survive (null, floats, bools)."""
        out = []
        for key, value in self.params.items():
            out += ["-S", f"{key}={yaml_scalar(value)}"]
        return out

    def tag_message(self, wall_s: float | None = None) -> str:
        lines = "\n".join(f"  {k}: {v}" for k, v in self.params.items())
        wall = "" if wall_s is None else f"wall_s: {wall_s:.0f}\n"
        return f"{self.name}: {self.description}\n\noverrides:\n{lines}\n{wall}"


def yaml_scalar(value) -> str:
    """A scalar written so any YAML reader gives back its type: floats keep a dot (5e-05 would
    read back as a string under YAML 1.1), null and booleans in YAML spelling."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return np.format_float_positional(value, trim="0")
    return str(value)


def load_trials(path: Path = MANIFEST) -> list[Trial]:
    if not path.is_file():
        raise UserError(f"{path}: no trials manifest here; run this in the project's clone (or pass --manifest)")
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    try:
        trials = [Trial(str(t["name"]), str(t["description"]), dict(t.get("params") or {})) for t in data["trials"]]
    except (TypeError, KeyError, AttributeError, ValueError):
        raise UserError(
            f"{path}: expected `trials:` with a name, a description and params per trial "
            f"(see experiments/trials.yaml in the project)"
        ) from None
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate trial names in {names}")
    return trials


def require_git(command: str, why: str = "") -> None:
    """One line, not git's own error, where the working directory is not in a git repository."""
    if subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True).returncode:
        raise UserError(f"{command}: not inside a git repository{why}; run it in the project's clone")


def git(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def restore_params() -> None:
    git("checkout", "HEAD", "--", *RESTORED)


def exp_commit(name: str, baseline: str) -> str | None:
    """The commit of experiment `name` run on `baseline` (refs/exps/<base[:2]>/<base[2:]>/<name>).
    The baseline is taken when the trial starts: HEAD may move while a long trial runs."""
    sha = git("rev-parse", "--verify", "-q", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", check=False)
    return sha or None


def tag(trial: Trial, sha: str, force: bool, wall_s: float | None = None) -> None:
    git("tag", "-a", *(["-f"] if force else []), trial.name, sha, "-m", trial.tag_message(wall_s))


def run_sequential(trials: list[Trial], force: bool) -> dict[str, str]:
    status = {}
    for trial in trials:  # --temp: the workspace (params.yaml included) is never touched
        log.info(f"== {trial.name}: {trial.description}")
        cmd = ["dvc", "exp", "run", "--temp", "--name", trial.name, *trial.set_params(), *(["-f"] if force else [])]
        start, baseline = time.time(), git("rev-parse", "HEAD")
        proc = subprocess.run(cmd)
        sha = exp_commit(trial.name, baseline)
        if proc.returncode or sha is None:
            status[trial.name] = f"FAILED (dvc exp run exit {proc.returncode})"
            continue
        wall_s = time.time() - start
        tag(trial, sha, force, wall_s)
        status[trial.name] = f"ok in {wall_s:.0f} s, tagged {sha[:7]}"
    return status


def run_queued(trials: list[Trial], force: bool, jobs: int, timeout_s: float = 6 * 3600) -> dict[str, str]:
    """Queue every trial, start `jobs` DVC workers, wait until the queue drains, then tag."""
    baselines = {}
    for trial in trials:
        restore_params()
        cmd = ["dvc", "exp", "run", "--queue", "--name", trial.name, *trial.set_params(), *(["-f"] if force else [])]
        baselines[trial.name] = git("rev-parse", "HEAD")
        subprocess.run(cmd, check=True)
    restore_params()
    subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], check=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True).stdout
        if not any(word in out for word in ("Running", "Queued")):
            break
        time.sleep(5)
    status = {}
    for trial in trials:
        sha = exp_commit(trial.name, baselines[trial.name])
        if sha is None:
            status[trial.name] = "FAILED (see `dvc queue logs`)"
            continue
        tag(trial, sha, force)
        status[trial.name] = f"ok, tagged {sha[:7]}"
    return status


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora trials", description=__doc__)
    ap.add_argument("names", nargs="*", help="trials to run (default: all in the manifest)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--force", action="store_true", help="re-run trials that already have a tag")
    ap.add_argument("--queue", action="store_true", help="run through `dvc queue` workers")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    args = ap.parse_args(argv)
    require_git("trials", " (trials are git-tagged experiments)")
    trials = load_trials(args.manifest)
    unknown = set(args.names) - {t.name for t in trials}
    if unknown:
        raise UserError(f"trials: unknown trial(s) {sorted(unknown)} (manifest {args.manifest})")
    chosen = [t for t in trials if not args.names or t.name in args.names]
    status, todo = {}, []
    for t in chosen:
        if git("tag", "-l", t.name) and not args.force:
            status[t.name] = "skipped: tag exists (use --force to re-run)"
        else:
            todo.append(t)
    if git("status", "--porcelain", "--", *RESTORED):
        raise UserError("trials: params.yaml has uncommitted changes; commit or restore it first")
    if todo:
        status.update(run_queued(todo, args.force, args.jobs) if args.queue else run_sequential(todo, args.force))
    for name in (t.name for t in chosen):
        print(f"{name}: {status[name]}")
    return 1 if any(s.startswith("FAILED") for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
