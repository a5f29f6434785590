"""The CPU-speed devices, each measured at the stage a user waits on (`make bench --only devices`).

A device keeps its place in the package only with a figure here that a user would feel:
- `runtime/kernels.py` (prepacked linears): evaluate's generation of its prompt set on the
  musicgen-small shape, on the prepacked kernels vs stock ones (`generation_arms`);
- `model/kv_cache.py` (the pre-sized KV cache): the same generation at evaluate's clip length
  (`evaluate.seconds`), pre-sized vs grown by concatenation (`cache_arms`);
- `runtime/allocator.py` (mimalloc): train's step and encode's batches on the small shape, each
  in a bench process of its own, on mimalloc (as every computing command runs) and on the system
  allocator (`MUSICGEN_LORA_MALLOC=system`): step time and the process's peak memory.
Each figure is stated as the share of that work's time (or memory) the device saves.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from musicgen_lora.runtime.allocator import SWITCH

from .scale import measured


def saved(without: float, with_: float) -> float:
    """The share of `without` that the device saves (negative: it costs)."""
    return round(1 - with_ / without, 3)


def allocator_arms(root: Path, work: Path, steps: int, warmup: int) -> dict:
    """The small-shape training step (as the musicgen-small preset trains on a CPU: no gradient
    checkpointing) and encode (a batch of 8 clips, and one clip at a time as that preset encodes)
    in two bench processes: mimalloc and the system allocator (a process-level choice: it cannot be
    switched inside one process). Each starts from a small trampoline (`scale.measured`), so its
    peak memory is its own."""
    runs = {}
    for name, env in (("mimalloc", {}), ("system", {SWITCH: "system"})):
        out = work / f"allocator-{name}"
        cmd = [sys.executable, "-m", "bench", "--only", "train", "encode", "--no-gpu", "--out", str(out), "--work",
               str(out), "--steps", str(steps), "--warmup", str(warmup), "--checkpointing-every", "0"]  # fmt: skip
        process = measured(cmd, root, work / "logs" / f"allocator-{name}.log", env={**os.environ, **env})
        result = json.loads((out / "results.json").read_text())
        rows = {r["name"]: r for r in result["benchmarks"]}
        runs[name] = {
            "allocator": result["machine"]["allocator"],
            "step_s": rows["train_mfu"]["step_s"],
            "steps_s": rows["train_mfu"]["steps_s"],
            "peak_rss_gb": process["peak_rss_gb"],
            "encode_batched_s": rows["batched_vs_single_encode"]["batched_s"],
            "encode_single_s": rows["batched_vs_single_encode"]["single_s"],
        }
    if runs["mimalloc"]["allocator"] != "mimalloc":
        return {"runs": runs, "note": "mimalloc is not installed here (cmeel-mimalloc): nothing to compare"}
    m, s = runs["mimalloc"], runs["system"]
    return {
        "runs": runs,
        "train_step_saved": saved(s["step_s"], m["step_s"]),
        "encode_batch_saved": saved(s["encode_batched_s"], m["encode_batched_s"]),
        "encode_single_saved": saved(s["encode_single_s"], m["encode_single_s"]),
        "peak_rss_saved": saved(s["peak_rss_gb"], m["peak_rss_gb"]),
    }


FELT = 0.05  # a device earns its place by making some stage's work at least this share faster or smaller


def summary(generate: dict | None, cache: dict | None, alloc: dict | None) -> dict:
    """Per device, the share of its stage's work it saves, and whether that is felt (>= FELT of
    some stage's time or memory)."""
    out = {}
    if generate:
        out["prepacked_kernels"] = {
            "stage": f"evaluate's generation, small shape, {generate['prompts']} prompts x {generate['seconds']:g} s",
            "time_saved": saved(generate["merged_stock_kernels_s"], generate["merged_s"]),
            "stock_s": generate["merged_stock_kernels_s"],
            "prepacked_s": generate["merged_s"],
        }
    if cache:
        growing, presized = (sum(cache[k]) / len(cache[k]) for k in ("growing_s", "presized_s"))
        out["presized_kv_cache"] = {
            "stage": f"evaluate's generation, small shape, {cache['prompts']} prompts x {cache['seconds']:g} s",
            "time_saved": saved(growing, presized),
            "growing_s": round(growing, 2),
            "presized_s": round(presized, 2),
        }
    if alloc and "train_step_saved" in alloc:
        out["mimalloc"] = {
            "stage": "train's step (no checkpointing) and encode (batches of 8, and one clip at a time), small shape",
            "time_saved": alloc["train_step_saved"],
            "encode_time_saved": alloc["encode_batch_saved"],
            "encode_single_time_saved": alloc["encode_single_saved"],
            "peak_rss_saved": alloc["peak_rss_saved"],
            "runs": alloc["runs"],
        }
    for device in out.values():
        device["felt"] = max(v for k, v in device.items() if k.endswith("_saved")) >= FELT
    return out
