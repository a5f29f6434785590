"""`make bench`: the pipeline's cost as its users feel it, as side-by-side ratios from one run.

Absolute times on a shared 2-core machine are noise; every figure that has a target is a ratio
of two arms measured in the same process, minutes apart (the training step's utilisation is
taken against the machine's own fp32 matmul FLOP/s, measured beside every step). Writes
`bench/results.json` ({"machine": ..., "benchmarks": [{"name", "value", "unit", "target",
"met", ...}]}) and `bench/results.md`, and prints each figure against its target.

Benchmarks (names as in results.json):
  cache_skip                      full `dvc repro` of a throw-away project copy, then only a
                                  train param changed: segment and encode must be skipped
  cached_vs_onthefly_epoch        one epoch over cached tokens vs encoding every clip on the fly
                                  (tiny default: target >= 3x; musicgen-small shape reported)
  train_mfu                       LoRA step on the musicgen-small shape, 1 x 15 s, rank 32
  train_peak_rss_gb               peak resident memory of this whole process
  merged_vs_unmerged_generate     8 prompts, merged adapter vs unmerged (tiny and small shape)
  batched_vs_sequential_generate  8 prompts in one batch vs one at a time (guidance on vs off too)
  presized_vs_growing_kv_cache    with --cache-seconds S (or `devices`: evaluate.seconds): small shape,
                                  8 prompts x S s, the cache sized once vs grown by concatenation
                                  every step (no target)
  batched_vs_single_encode        EnCodec 32 kHz (random weights), batched vs one clip at a time
  cpu_devices                     each CPU-speed device at its stage (bench/devices.py): prepacked
                                  kernels and the pre-sized KV cache in evaluate's generation (small
                                  shape, evaluate.seconds), mimalloc in train's step and encode; a
                                  device that makes no stage >= 5% faster or smaller goes
  demo_wall_s, trials_wall_s      wall time of `make demo`'s stages and of `make trials`
  scale_time_per_hour,            the demo corpus at 1x, 4x and 16x (~1, 4, 16 h of audio) through
  scale_peak_rss                  segment, encode and one epoch's data loading: seconds per audio
                                  hour (linear) and peak memory (flat), 16x against 1x (bench/scale.py)
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from musicgen_lora.core import params as P
from musicgen_lora.core import provenance
from musicgen_lora.core.files import atomic_path, write_json
from musicgen_lora.runtime.allocator import release
from . import models as BM
from . import pipeline as BP
from . import devices as BD
from . import scale as BS

ROOT = Path.cwd()
BENCHES = ["gpu", "cache", "epoch", "train", "generate", "encode", "pipeline", "scale", "devices"]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is KiB on Linux


def machine() -> dict:
    """The run's provenance (core.provenance) plus the load average, which bench timings depend on."""
    return {**provenance.machine(), "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def entry(name: str, value, unit: str, target, better: str, **details) -> dict:
    """One benchmark row; `met` compares value to target in the `better` direction."""
    extra = details.pop("met", None)  # a condition besides value vs target (None: none)
    if value is None or target is None or isinstance(target, str):
        met = extra
    else:
        met = value >= target if better == "higher" else value <= target
        met = bool(met and extra is not False)
    row = {"name": name, "value": value, "unit": unit, "target": target, "better": better, "met": met, **details}
    show = f"{value:.3g}" if isinstance(value, float) else str(value)
    if isinstance(target, (int, float)) and isinstance(value, (int, float)) and target:
        frac = value / target if better == "higher" else target / max(value, 1e-12)
        against = f"target {'>=' if better == 'higher' else '<='} {target:g}: {frac:.2f}x of target"
    else:
        against = f"target: {target}"
    print(f"[bench] {name}: {show} {unit} ({against}) {'MET' if met else 'NOT MET' if met is False else ''}", flush=True)
    return row


def tiny_model(rank: int, alpha: float):
    from musicgen_lora.model.musicgen import load_model

    model, tokenizer = load_model(P.project_params("model", name=str(ROOT / "assets" / "tiny-musicgen")))
    return BM.lora_model(model, rank, alpha), tokenizer


def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ROOT / "assets" / "tiny-musicgen"))


def run(args) -> dict:
    t_start = time.monotonic()
    work = args.work / "project"
    logs = args.work / "logs"
    ep, tp, gp = P.project_params("evaluate"), P.project_params("train"), P.project_params("generation")
    prompts = (list(ep.all_prompts) * args.prompts)[: args.prompts]
    only = set(args.only or BENCHES)
    info = machine()
    rows, details = [], {}
    peaks = {}  # peak RSS (GB) after each model phase: where the whole-process peak comes from

    if "gpu" in only and not args.no_gpu:  # first: a GPU box's figures should not wait on the CPU arms
        if torch.cuda.is_available():
            details["gpu"] = gpu_benchmarks()
        else:
            print("[bench] gpu: no CUDA device on this machine: skipped", flush=True)

    # 1. caching, and the project copy the pipeline timings may use
    copy_env = None
    if only & {"cache", "pipeline"}:
        print(f"[bench] project copy in {work} ({args.tracks} tracks)", flush=True)
        copy_env = BP.make_project(work, ROOT, args.tracks)
    if "cache" in only:
        c = BP.cache_skip(work, copy_env, logs)
        details["cache"] = c
        print(f"[bench] dvc repro (full): {c['first']['wall_s']} s, ran {c['first']['ran']}", flush=True)
        print(
            f"[bench] dvc repro ({c['changed']}): {c['second']['wall_s']} s, ran {c['second']['ran']}, "
            f"skipped {c['second']['skipped']}",
            flush=True,
        )
        rows.append(
            entry(
                "cache_skip",
                c["ratio"],
                "x (full repro wall / repro after a train param change)",
                "segment and encode skipped",
                "higher",
                met=c["met"],
                changed=c["changed"],
                first_run=c["first"],
                second_run=c["second"],
                measured=f"project copy, {args.tracks} tracks",
            )
        )

    # 5. whole pipeline (wall times; read from the workspace when a previous run left them)
    if "pipeline" in only:
        demo = BP.workspace_stage_times(ROOT)
        if demo:
            demo["measured"] = "this workspace's last `dvc repro` (output modification times, DAG order checked)"
        elif "cache" in details:
            demo = dict(details["cache"]["first"], measured=f"project copy, {args.tracks} tracks, first `dvc repro`")
        if demo:
            print(f"[bench] demo stages (s): {demo['stage_s']}", flush=True)
            rows.append(entry("demo_wall_s", demo["wall_s"], "s", 600.0, "lower", **demo))
        trials = BP.workspace_trial_times(ROOT) if args.trials == "auto" else None
        if trials:
            trials["measured"] = "this workspace's trial tags (annotated tag and experiment commit dates)"
        elif args.trials == "run" and copy_env is not None:
            trials = BP.trials_in_copy(ROOT, work, copy_env, logs, args.trial_names)
            trials["measured"] = f"`musicgen_lora trials` on the project copy ({args.tracks} tracks)"
        if trials:
            rows.append(entry("trials_wall_s", trials["wall_s"], "s", 1800.0, "lower", **trials))
        else:
            rows.append(
                entry(
                    "trials_wall_s",
                    None,
                    "s",
                    1800.0,
                    "lower",
                    measured="not measured: no trial tags in this workspace (run `make trials` first), "
                    "or pass --trials run to time them on the project copy (~8 min)",
                )
            )

    # tiny default: epoch cached vs on the fly, generation arms
    if only & {"epoch", "generate"}:
        peft_tiny, tok = tiny_model(tp.rank, tp.alpha)
        sr = peft_tiny.base_model.model.config.audio_encoder.sampling_rate
        if "epoch" in only:
            with tempfile.TemporaryDirectory() as tmp:
                clips = BM.write_clips(Path(tmp), args.epoch_clips, args.clip_seconds, sr)
                details["epoch_tiny"] = BM.epoch_cached_vs_onthefly(peft_tiny, tok, clips, repeats=args.epoch_repeats)
            print(f"[bench] tiny epoch: {details['epoch_tiny']}", flush=True)
            peaks["tiny_epoch"] = round(peak_rss_gb(), 2)
        if "generate" in only:
            details["generate_tiny"] = BM.generation_arms(
                peft_tiny, tok, prompts, args.tiny_gen_seconds, gp.guidance_scale, gp.top_k, repeats=args.tiny_gen_repeats
            )
            print(f"[bench] tiny generate: {details['generate_tiny']}", flush=True)
            peaks["tiny_generate"] = round(peak_rss_gb(), 2)
        del peft_tiny
        release()  # phases are separate stage processes in the pipeline: hand back what this one freed

    # musicgen-small shape, in the pipeline's stage order: encoding, training step (and one
    # step encoding its clip on the fly), generation
    if only & {"train", "generate", "encode", "devices"}:
        t = time.monotonic()
        small = BM.build_small()
        from musicgen_lora.model.musicgen import set_threads

        threads = set_threads(small.config)
        info["torch_threads_small"] = threads
        info["small_shape_params"] = {
            "decoder": BM.count_params(small.decoder),
            "text_encoder": BM.count_params(small.text_encoder),
            "audio_encoder": BM.count_params(small.audio_encoder),
        }
        peaks["small_build"] = round(peak_rss_gb(), 2)
        release()  # the build's temporaries (weight initialisation)
        print(f"[bench] small shape built in {time.monotonic() - t:.1f} s, peak RSS {peaks['small_build']} GB", flush=True)
        if "encode" in only:
            details["encode"] = BM.encode_throughput(small, args.encode_clips, args.encode_seconds, args.encode_batch)
            print(f"[bench] encode: {details['encode']}", flush=True)
            peaks["small_encode"] = round(peak_rss_gb(), 2)
            release()
        tok = tiny_tokenizer()  # any T5-vocabulary ids will do for random weights
        peft_small = BM.lora_model(small, args.rank, 2.0 * args.rank, args.checkpointing_every)
        if "train" in only:
            with tempfile.TemporaryDirectory() as tmp:
                clip = BM.write_clips(Path(tmp), 1, args.small_frames / 50.0, small.config.audio_encoder.sampling_rate)[0]
                tr = BM.train_small(
                    peft_small,
                    tok,
                    clip,
                    args.small_frames,
                    args.warmup,
                    args.steps,
                    args.onthefly_steps if "epoch" in only else 0,
                )
            tr.update(rank=args.rank, gradient_checkpointing_every=args.checkpointing_every)
            details["train_small"] = tr
            print(f"[bench] small train: {tr}", flush=True)
            peaks["small_train"] = round(peak_rss_gb(), 2)
            release()
        if only & {"generate", "devices"}:
            details["generate_small"] = BM.generation_arms(
                peft_small, tok, prompts, args.small_gen_seconds, gp.guidance_scale, gp.top_k, repeats=args.small_gen_repeats
            )
            print(f"[bench] small generate: {details['generate_small']}", flush=True)
            peaks["small_generate"] = round(peak_rss_gb(), 2)
        train_peak = peak_rss_gb()  # before the KV cache arms: their long clips' cache is no training cost
        cache_seconds = args.cache_seconds or (ep.seconds if "devices" in only else 0)
        if cache_seconds > 0:
            details["kv_cache"] = BM.cache_arms(peft_small, tok, prompts, cache_seconds, gp.guidance_scale, gp.top_k)
            print(f"[bench] small generate, kv cache: {details['kv_cache']}", flush=True)
        release()
        del peft_small, small
    if "devices" in only:
        details["allocator"] = BD.allocator_arms(ROOT, args.work / "devices", steps=2, warmup=1)
        print(f"[bench] allocator: {details['allocator']}", flush=True)

    if "epoch_tiny" in details:
        tr = details.get("train_small", {})
        small_part = {
            k: tr[k]
            for k in ("onthefly_vs_cached_ratio", "encoder_share_of_step", "onthefly_steps_s", "steps_s", "encode_s")
            if k in tr
        }
        rows.append(
            entry(
                "cached_vs_onthefly_epoch",
                details["epoch_tiny"]["ratio"],
                "x (on-the-fly epoch / cached-token epoch, tiny default)",
                3.0,
                "higher",
                tiny=details["epoch_tiny"],
                small_shape=small_part or None,
                small_shape_note="no target: there the decoder dominates",
            )
        )
    if "train_small" in details:
        tr = details["train_small"]
        rows.append(
            entry(
                "train_mfu",
                tr["mfu"],
                "model FLOPs / (step s x measured fp32 matmul FLOP/s)",
                0.6,
                "higher",
                **{k: v for k, v in tr.items() if k not in ("mfu",)},
            )
        )
    gt, gs = details.get("generate_tiny"), details.get("generate_small")
    if gt or gs:
        for name, key, target in (
            ("merged_vs_unmerged_generate", "merged_vs_unmerged", 1.2),
            ("batched_vs_sequential_generate", "batched_vs_sequential", 2.0),
        ):
            main_arm = gt or gs
            met_small = gs is None or gs[key] >= target
            rows.append(
                entry(
                    name,
                    main_arm[key],
                    f"x ({'tiny default' if gt else 'small shape'})",
                    target,
                    "higher",
                    met=met_small,
                    tiny=gt,
                    small_shape=gs,
                    guided_vs_unguided_cost={
                        "tiny": gt and gt["guided_vs_unguided_cost"],
                        "small_shape": gs and gs["guided_vs_unguided_cost"],
                    },
                    note="met requires both shapes",
                )
            )
    if "encode" in details:
        e = details["encode"]
        rows.append(
            entry(
                "batched_vs_single_encode",
                e["ratio"],
                "x (audio s per wall s, batched / one at a time)",
                1.0,
                "higher",
                note="no target in the issue; >= 1 means batching does not slow encoding",
                **e,
            )
        )
    if "kv_cache" in details:
        rows.append(
            entry(
                "presized_vs_growing_kv_cache",
                details["kv_cache"]["ratio"],
                f"x (small shape, {details['kv_cache']['seconds']:g} s: growing cache / pre-sized)",
                "none",
                "higher",
                note="no target in the issue; the gain grows with the clip length",
                **details["kv_cache"],
            )
        )
    if "devices" in only:
        dev = BD.summary(details.get("generate_small"), details.get("kv_cache"), details.get("allocator"))
        rows.append(
            entry(
                "cpu_devices",
                sum(d["felt"] for d in dev.values()),
                f"devices that make a stage >= {BD.FELT:.0%} faster or smaller (each device's figures in `devices`)",
                len(dev),
                "higher",
                note="a device below the line goes (bench/devices.py)",
                devices=dev,
            )
        )
    if "train" in only:
        rows.append(
            entry(
                "train_peak_rss_gb",
                round(train_peak, 2),
                "GB (peak RSS of the whole bench process)",
                6.0,
                "lower",
                gradient_checkpointing_every=args.checkpointing_every,
                peak_after_phase=peaks,
            )
        )

    if "scale" in only:
        sc = BS.scale(ROOT, args.work / "scale", args.scale_sizes)
        worst = {k: max(r[k] for r in sc["ratios"].values()) for k in ("time_per_hour", "peak_rss")}
        sizes = f"{args.scale_sizes[-1]}x against {args.scale_sizes[0]}x of the demo corpus"
        rows.append(
            entry(
                "scale_time_per_hour",
                worst["time_per_hour"],
                f"x (marginal CPU s per audio hour, top / bottom of {sizes}; worst of segment, encode, epoch loading)",
                1 + BS.TOLERANCE,
                "lower",
                **sc,
            )
        )
        rows.append(
            entry(
                "scale_peak_rss",
                worst["peak_rss"],
                f"x (peak RSS, {sizes}; worst of the three)",
                1 + BS.TOLERANCE,
                "lower",
                ratios=sc["ratios"],
            )
        )

    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    info["bench_wall_s"] = round(time.monotonic() - t_start, 1)
    result = {"machine": info, "benchmarks": rows, "args": {k: str(v) for k, v in vars(args).items()}}
    if "gpu" in details:
        result["gpu"] = details["gpu"]
    return result


def gpu_benchmarks() -> dict:
    """On a CUDA device: `make gpu-check`'s measurements (the pipeline's own training step at batch 1
    and 4 and its own `generate`, fp32 and bf16) on the musicgen-small shape."""
    from .gpu_check import measure, save_small

    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "device": torch.cuda.get_device_name(0),
            **measure(str(save_small(Path(tmp) / "musicgen-small-shaped")), "cuda", quick=False),
        }
    print(f"[bench] gpu: {out}", flush=True)
    return out


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# make bench\n",
        f"{m['cores']} cores ({m['cpu_capability']} in force), torch {m['packages']['torch']} "
        f"({m.get('torch_threads_small', m['torch_threads'])} threads), "
        f"load average {m['load_average_start'][0]} -> {m['load_average_end'][0]}, "
        f"bench wall {m['bench_wall_s']} s\n",
        "| benchmark | value | unit | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in result["benchmarks"]:
        v = r["value"]
        show = "n/a" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)
        target = (
            r["target"] if isinstance(r["target"], str) else f"{'>=' if r['better'] == 'higher' else '<='} {r['target']:g}"
        )
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        lines.append(f"| {r['name']} | {show} | {r['unit']} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("bench"), help="results.json and results.md")
    ap.add_argument(
        "--work", type=Path, default=Path("bench/work"), help="throw-away project copy and dvc logs (git-ignored)"
    )
    ap.add_argument("--only", nargs="*", choices=BENCHES, help=f"subset of {BENCHES}")
    ap.add_argument("--tracks", type=int, default=4, help="corpus of the project copy")
    ap.add_argument(
        "--trials",
        choices=["auto", "run"],
        default="auto",
        help="auto: read the workspace's trial tags (every trial tagged); run: time `musicgen_lora trials` "
        "on the project copy (~8 min on 2 cores)",
    )
    ap.add_argument("--trial-names", nargs="*", help="with --trials run: only these trials")
    ap.add_argument("--epoch-clips", type=int, default=8, help="clips in the tiny cached/on-the-fly epoch")
    ap.add_argument("--epoch-repeats", type=int, default=3, help="ABBA repeats of the tiny epoch arms")
    ap.add_argument("--clip-seconds", type=float, default=15.0)
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank on the small shape (alpha = 2 x rank)")
    ap.add_argument("--small-frames", type=int, default=750, help="frames per training clip (750 = 15 s)")
    ap.add_argument("--warmup", type=int, default=2, help="small-shape warm-up steps")
    ap.add_argument("--steps", type=int, default=3, help="measured small-shape cached steps")
    ap.add_argument("--onthefly-steps", type=int, default=1, help="small-shape steps encoding their clip first")
    ap.add_argument(
        "--checkpointing-every",
        type=int,
        default=4,
        metavar="N",
        help="the small-shape training step checkpoints every N-th decoder layer, as "
        "train.gradient_checkpointing_every does (0: off, 1: all; 4 keeps the step within 6 GB)",
    )
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tiny-gen-seconds", type=float, default=15.0)
    ap.add_argument("--tiny-gen-repeats", type=int, default=3, help="ABBA repeats of the tiny generation arms")
    ap.add_argument("--small-gen-seconds", type=float, default=2.0, help="same for every arm")
    ap.add_argument("--small-gen-repeats", type=int, default=2, help="ABBA repeats of the small-shape arms")
    ap.add_argument(
        "--cache-seconds",
        type=float,
        default=0.0,
        help="small shape: pre-sized vs growing KV cache at this length (0: skip; 15 s takes 9 min "
        "and its 2.4 GB cache lifts the process above the peak-memory target)",
    )
    ap.add_argument("--encode-clips", type=int, default=8)
    ap.add_argument("--encode-seconds", type=float, default=5.0)
    ap.add_argument("--encode-batch", type=int, default=8)
    ap.add_argument(
        "--scale-sizes",
        type=int,
        nargs="+",
        default=[1, 4, 16],
        help="scale arm: copies of the demo corpus (data/raw) per size, smallest first",
    )
    ap.add_argument("--no-gpu", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if len(args.scale_sizes) < 2 or args.scale_sizes != sorted(set(args.scale_sizes)):
        print("bench: --scale-sizes needs two or more sizes, smallest first (e.g. 1 4 16)", file=sys.stderr)
        return 2
    result = run(args)
    write_json(args.out / "results.json", result)
    with atomic_path(args.out / "results.md") as tmp:
        tmp.write_text(markdown(result), encoding="utf-8")
    missed = [r["name"] for r in result["benchmarks"] if r["met"] is False]
    print(
        f"[bench] wrote {args.out / 'results.json'} and results.md in {result['machine']['bench_wall_s']} s; "
        f"targets not met: {missed or 'none'}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
