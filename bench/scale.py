"""The scale arm of `make bench`: how the pipeline's cost grows with the corpus.

The demo corpus (`data/raw`, ~1 h of audio) at 1x, 4x and 16x (hard-linked copies in each style
folder, so the split and captions work as on the original) goes through the real `segment` and
`encode` commands, and one training epoch's data loading (the train stage's own dataset and
collator, batched as params.yaml says, shuffled; no model step) reads the tokens. Each runs in its
own process: its CPU time per hour of audio (the child's own, from `os.wait4`; for the loading,
the epoch's own, without the process's start-up) and its peak resident memory (`ru_maxrss`).
What should hold: time grows linearly (an added hour between 4x and 16x costs within 15% of the
CPU time of one between 1x and 4x) and memory stays flat (peak at 16x within 15% of 1x): audio
is streamed, tokens read a clip at a time. CPU time, not wall: on this shared 2-core machine
wall time moved 20% between runs; run it on an otherwise idle machine all the same (two busy
threads on 2 cores also spin, which CPU time counts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from musicgen_lora.core.artifacts import read_manifest
from musicgen_lora.core.files import atomic_dir

TOLERANCE = 0.15  # linear time and flat memory, both within 15% of the 1x run


def corpus(raw: Path, out: Path, copies: int) -> Path:
    """`raw` `copies` times over: each style folder keeps its name and holds copy-NN/ subfolders
    (recordings hard-linked where the file system allows, captions beside them)."""
    made = out.parent / f"{out.name}.json"  # beside it: segment would skip a stray file inside
    if out.is_dir() and made.is_file() and json.loads(made.read_text()) == copies:
        return out  # made by an earlier bench run
    with atomic_dir(out) as tmp:
        for src in sorted(p for p in raw.rglob("*") if p.is_file()):
            rel = src.relative_to(raw)
            for c in range(copies):
                dst = (
                    tmp / rel.parts[0] / f"copy-{c:02d}" / Path(*rel.parts[1:])
                    if len(rel.parts) > 1
                    else tmp / f"copy-{c:02d}" / rel
                )
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:  # raw files may be links into DVC's cache: link the file itself
                    os.link(src.resolve(), dst)
                except OSError:
                    shutil.copyfile(src, dst)
    made.write_text(json.dumps(copies))
    return out


# The measured command is started by a small Python process of its own: a child forked from the
# bench (or from pytest) reports the parent's resident size as its peak, since Linux counts the
# forked copy of the parent's memory before exec in the child's `ru_maxrss`.
SPAWN = """
import json, os, subprocess, sys
proc = subprocess.Popen(json.loads(sys.argv[1]), stdout=sys.stderr)  # its output to the log
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss]))
"""


def measured(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> dict:
    """Run `cmd` as its own process: wall seconds, CPU seconds (user + system, its own: what the
    work costs, whatever else the machine runs) and its peak resident memory (GB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", SPAWN, json.dumps(cmd)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True
        )
    wall = time.monotonic() - t0
    rc, cpu, maxrss = json.loads(proc.stdout.strip().splitlines()[-1])
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); see {log}")
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_gb": round(maxrss * 1024 / 1e9, 3)}


def load_epoch(tokens_dir: Path) -> tuple[int, float]:
    """One epoch of the train stage's data loading over `tokens_dir` (train split): the stage's own
    dataset and collator, its batch size and seed; returns the clips read and the epoch's CPU
    seconds (the process's start-up, imports and tokenizer, left out: they are most of its time)."""
    import torch
    from transformers import AutoTokenizer

    from musicgen_lora.core import params as P
    from musicgen_lora.model.musicgen import resolve_name
    from musicgen_lora.model.tokens import TokenSplit
    from musicgen_lora.stages.train import ClipDataset, Collator

    model, tp = P.load("model", "train")
    clips = TokenSplit(tokens_dir, "train")
    tokenizer = AutoTokenizer.from_pretrained(resolve_name(model), revision=model.revision)
    collate = Collator(tokenizer, tp.mask_padding, tp.text_dropout, tp.seed)
    loader = torch.utils.data.DataLoader(
        ClipDataset(clips),
        batch_size=tp.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(tp.seed),
    )
    times = []
    for _ in range(3):  # the fastest of three epochs: one takes ~0.5 ms a clip, where noise is 10%
        t0 = time.process_time()
        clips_read = sum(len(batch["labels"]) for batch in loader)
        times.append(time.process_time() - t0)
    return clips_read, min(times)


def scale(root: Path, work: Path, sizes: list[int]) -> dict:
    """Each size (two or more, smallest first) through segment, encode and one epoch's loading:
    per-size figures, and per step the ratio of the marginal CPU seconds per audio hour at the top
    to that at the bottom, and of the largest size's peak memory to the smallest's."""
    py = [sys.executable, "-m", "musicgen_lora"]
    rows = []
    for n in sizes:
        raw = corpus(root / "data" / "raw", work / f"raw-{n}x", n)
        seg, tok, logs = work / f"segments-{n}x", work / f"tokens-{n}x", work / "logs"
        print(f"[bench] scale {n}x: segment, encode, one epoch's loading", flush=True)
        steps = {
            "segment": measured(py + ["segment", "--raw", str(raw), "--out", str(seg)], root, logs / f"segment-{n}x.log"),
            "encode": measured(py + ["encode", "--segments", str(seg), "--out", str(tok)], root, logs / f"encode-{n}x.log"),
            "load_epoch": measured([sys.executable, "-m", "bench.scale", str(tok)], root, logs / f"load-{n}x.log"),
        }
        # the epoch's own CPU seconds, as it printed them (the process's are mostly its start-up)
        steps["load_epoch"]["cpu_s"] = float((logs / f"load-{n}x.log").read_text().split()[-3])
        clips = read_manifest(seg)
        hours = sum(c.duration_s for c in clips) / 3600
        for s in steps.values():
            s["cpu_s_per_audio_hour"] = round(s["cpu_s"] / hours, 2)
        rows.append({"copies": n, "audio_hours": round(hours, 3), "clips": len(clips), **steps})
        print(f"[bench] scale {n}x ({hours:.2f} h): {steps}", flush=True)

    # linear: each added hour costs what the earlier ones did (the marginal CPU seconds per audio
    # hour between the two largest sizes against the two smallest; a fixed start-up cost cancels
    # out; CPU time, not wall: on a shared 2-core machine wall time moved 20% between two runs)
    def marginal(step: str, a: dict, b: dict) -> float:
        return (b[step]["cpu_s"] - a[step]["cpu_s"]) / (b["audio_hours"] - a["audio_hours"])

    ratios = {}
    for step in ("segment", "encode", "load_epoch"):
        first, last = marginal(step, rows[0], rows[1]), marginal(step, rows[-2], rows[-1])
        ratios[step] = {
            "marginal_cpu_s_per_hour": [round(first, 2), round(last, 2)],
            "time_per_hour": round(last / first, 3),
            "peak_rss": round(rows[-1][step]["peak_rss_gb"] / rows[0][step]["peak_rss_gb"], 3),
        }
    return {"sizes": rows, "ratios": ratios, "tolerance": TOLERANCE}


if __name__ == "__main__":  # one epoch's loading, in its own process so its memory is its own
    clips_read, seconds = load_epoch(Path(sys.argv[1]))
    print(f"read {clips_read} training clips in {seconds:.3f} CPU s")
