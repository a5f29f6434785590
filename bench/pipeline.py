"""Pipeline-side benchmarks of `make bench`: DVC caching, and the wall time of the demo's stages
and of the trials.

A throw-away copy of the project (`tests/workspace.py`'s `make_project`: a fresh git + DVC repo
with a small corpus and small params) is reproduced with the real `dvc` CLI. Stage times come
from DVC's own output: every line is time-stamped as it streams, and a stage runs from its
`Running stage 'x'` line to the next stage's line (or the end). The demo's and trials' times are
read from the main workspace when a previous `make demo` / `make trials` left them (output
modification times checked against the DAG; trial tags' dates), else measured on the copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from ruamel.yaml import YAML

from musicgen_lora.core.params import edit_params
from tests import workspace

STAGE_LINE = re.compile(r"Running stage '([^']+)'")
SKIP_LINE = re.compile(r"Stage '([^']+)' didn't change")
CACHED_LINE = re.compile(r"Stage '([^']+)' is cached")


def make_project(root: Path, project: Path, tracks: int) -> dict:
    """The test suite's temporary project (same corpus generator and small params)."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return workspace.make_project(project, root, tracks=tracks)


def run_logged(cmd: list[str], cwd: Path, env: dict, log: Path | None = None) -> dict:
    """Run `cmd`, stamping each output line; returns wall time, stages run / skipped and each
    run stage's seconds (from its `Running stage` line to the next stage line or the end)."""
    t0 = time.monotonic()
    events, lines = [], []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
        now = time.monotonic() - t0
        lines.append(f"{now:8.2f} {line.rstrip()}")
        for kind, pattern in (("ran", STAGE_LINE), ("skipped", SKIP_LINE), ("cached", CACHED_LINE)):
            m = pattern.search(line)
            if m:
                events.append((now, kind, m.group(1)))
    rc = proc.wait()
    wall = time.monotonic() - t0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("\n".join(lines) + "\n")
    if rc:
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}) in {cwd}:\n{tail}")
    stage_s = {}
    for i, (t, kind, name) in enumerate(events):
        if kind == "ran":
            end = events[i + 1][0] if i + 1 < len(events) else wall
            stage_s[name] = round(end - t, 2)
    return {
        "wall_s": round(wall, 2),
        "ran": [n for _, k, n in events if k == "ran"],
        "skipped": [n for _, k, n in events if k != "ran"],
        "stage_s": stage_s,
    }


def cache_skip(work: Path, env: dict, logs: Path) -> dict:
    """Full `dvc repro`, then only train.lr changed and `dvc repro` again."""
    first = run_logged(["dvc", "repro"], work, env, logs / "repro_full.log")
    y = YAML(typ="safe")
    lr = y.load((work / "params.yaml").read_text())["train"]["lr"]
    edit_params(work / "params.yaml", {"train": {"lr": lr * 2}})
    second = run_logged(["dvc", "repro"], work, env, logs / "repro_train_param.log")
    upstream = ["segment", "encode"]
    skipped = [s for s in upstream if s not in second["ran"]]
    return {
        "changed": f"train.lr {lr} -> {lr * 2}",
        "first": first,
        "second": second,
        "upstream_skipped": skipped,
        "met": len(skipped) == len(upstream) and "train" in second["ran"],
        "ratio": round(first["wall_s"] / max(second["wall_s"], 1e-9), 3),
    }


# --- whole pipeline ------------------------------------------------------------------------

MAX_GAP_S = 600  # no demo stage runs 10 minutes before writing its first output


def _latest_mtime(path: Path) -> tuple[float, float] | None:
    """(earliest, latest) modification time of the files under `path`."""
    if path.is_file():
        m = path.stat().st_mtime
        return m, m
    times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
    return (min(times), max(times)) if times else None


def workspace_stage_times(project: Path) -> dict | None:
    """Stage wall times of the workspace's last `dvc repro`, from its outputs' modification times.

    DVC runs stages one after another, so a stage ran from the end of the stage before it (in
    the order their outputs were finished) to the last write of its own outputs; the first stage
    from its first output file. Returned only when that order respects the DAG (outputs restored
    later, e.g. by a checkout, break it), every stage of dvc.yaml has outputs on disk, and no
    stage wrote its first output more than `MAX_GAP_S` after the stage before it finished (the
    mark of a partial re-run: the stages it skipped kept their old outputs)."""
    lock, dvc_yaml = project / "dvc.lock", project / "dvc.yaml"
    if not lock.exists() or not dvc_yaml.exists():
        return None
    y = YAML(typ="safe")
    stages = y.load(dvc_yaml.read_text())["stages"]
    locked = (y.load(lock.read_text()) or {}).get("stages", {})
    if set(stages) - set(locked):
        return None
    span = {}
    for name, st in stages.items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in st.get("outs", []) + st.get("metrics", [])]
        times = [t for t in (_latest_mtime(project / o) for o in outs if (project / o).exists()) if t]
        if not times:
            return None
        span[name] = (min(t[0] for t in times), max(t[1] for t in times))
    order = sorted(span, key=lambda n: span[n][1])
    producers = {}
    for name, st in stages.items():
        for o in st.get("outs", []) + st.get("metrics", []):
            producers[next(iter(o)) if isinstance(o, dict) else o] = name
    for name, st in stages.items():  # every upstream stage must have finished first
        for dep in st.get("deps", []):
            up = producers.get(dep)
            if up and span[up][1] > span[name][1]:
                return None
    if any(span[b][0] - span[a][1] > MAX_GAP_S for a, b in zip(order, order[1:])):
        return None
    stage_s, prev = {}, span[order[0]][0]
    for name in order:
        stage_s[name] = round(span[name][1] - prev, 1)
        prev = span[name][1]
    total = span[order[-1]][1] - span[order[0]][0]
    return {
        "wall_s": round(total, 1),
        "stage_s": stage_s,
        "order": order,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(span[order[-1]][1])),
    }


def workspace_trial_times(project: Path) -> dict | None:
    """Wall time of `make trials` from its annotated tags. Sequential runs record each trial's
    wall time in the tag message (`wall_s: N`); tags without it (queued runs, older tags) fall
    back to dates: trial i (i > 0) ran from trial i-1's tag to its own experiment commit, and
    the first trial, where its start is recorded nowhere, is estimated as the mean of the others.
    None unless every trial of the manifest is tagged."""
    manifest = project / "experiments" / "trials.yaml"
    if not manifest.exists():
        return None
    names = [t["name"] for t in YAML(typ="safe").load(manifest.read_text())["trials"]]
    fmt = "%(refname:short)%00%(taggerdate:unix)%00%(*committerdate:unix)%00%(contents)%01"
    proc = subprocess.run(
        ["git", "for-each-ref", f"--format={fmt}", "refs/tags"], cwd=project, capture_output=True, text=True
    )
    tags, recorded = {}, {}
    for record in proc.stdout.split("\x01"):
        parts = record.strip("\n").split("\x00")
        if len(parts) == 4 and parts[0] in names and parts[1] and parts[2]:
            tags[parts[0]] = (int(parts[1]), int(parts[2]))
            wall = re.search(r"^wall_s: (\d+)$", parts[3], re.M)
            if wall:
                recorded[parts[0]] = int(wall.group(1))
    if len(tags) != len(names) or len(names) < 2:
        return None
    if len(recorded) == len(names):
        return {"wall_s": float(sum(recorded.values())), "trial_s": recorded, "first_trial_estimated": False}
    ordered = sorted(names, key=lambda n: tags[n][1])
    per = {n: recorded.get(n) for n in ordered}  # a recorded wall time wins over the dates
    for a, b in zip(ordered, ordered[1:]):
        if per[b] is None:
            per[b] = tags[b][1] - tags[a][0]
    if any(v is not None and v < 0 for v in per.values()):
        return None
    estimated = per[ordered[0]] is None
    if estimated:
        known = [v for v in per.values() if v is not None]
        per[ordered[0]] = round(sum(known) / len(known))
    return {"wall_s": float(sum(per.values())), "trial_s": per, "first_trial_estimated": estimated}


def trials_in_copy(project: Path, work: Path, env: dict, logs: Path, names: list[str] | None) -> dict:
    """`python -m musicgen_lora trials` on the throw-away project (params restored, baseline
    committed first, as trials requires)."""
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=work, env=env, check=True, capture_output=True)
    (work / "experiments").mkdir(exist_ok=True)
    shutil.copy(project / "experiments" / "trials.yaml", work / "experiments" / "trials.yaml")
    subprocess.run(["git", "add", "-A"], cwd=work, env=env, check=True, capture_output=True)
    subprocess.run(["git", "commit", "-qm", "bench baseline"], cwd=work, env=env, check=True, capture_output=True)
    cmd = ["python", "-m", "musicgen_lora", "trials", *(names or [])]
    t0 = time.monotonic()
    out = run_logged(cmd, work, env, logs / "trials.log")
    per = {}
    for line in (logs / "trials.log").read_text().splitlines():
        m = re.search(r"^\s*[\d.]+ (\S+): ok in (\d+) s", line)
        if m:
            per[m.group(1)] = float(m.group(2))
    return {"wall_s": round(time.monotonic() - t0, 1), "trial_s": per, "stages_ran": len(out["ran"])}
