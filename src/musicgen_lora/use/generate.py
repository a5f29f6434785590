"""`python -m musicgen_lora generate`: audio from a trained adapter, or from the base model.

One 16-bit WAV per prompt (`--out FILE` for one prompt, `--out-dir DIR` for several, named
`NN_<prompt>.wav` as evaluate names them), and beside each a sidecar `FILE.json` with what made
it (prompt, seed, seconds, window, stride, model, adapter) and its seams. Each prompt is sampled
on its own from `--seed`, so a prompt gives the same audio whichever prompts come with it.

Longer than one window (`--window`, default 30 s or what the decoder's positions allow), the
audio is continued window after window as audiocraft's `extend_stride` does: each new window is
prompted with the last `window - stride` seconds of codes and adds `--stride` seconds (default
0.6 x window: 18 s of a 30 s window, audiocraft's default). Every seam is measured (loudness and
spectral jump across it, `metrics/seams.py`) and printed, one line per seam.

The model is params.yaml's `model` section unless `--model` names one (then that section is not
read); the adapter is loaded from safetensors only and merged for generation. `--guidance`,
`--temperature` and `--top-k` default to params.yaml's `generation` section (how train's samples
and evaluate's clips are sampled) when ./params.yaml has one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
from pathlib import Path

from tqdm import tqdm

from ..core import params as P
from ..core.audio import write_wav
from ..core.errors import UserError
from ..core.files import folder_lock, slug, write_json
from ..core.tracked import pipeline_output_of
from ..metrics import seams as S
from ..model.continuation import generate_codes, plan
from ..model.lora import adapter_base, check_adapter_dir, load_adapters, merged
from ..model.musicgen import codec_info, decode_codes, load_config, load_model, resolve_name
from ..runtime.kernels import fast_generation

log = logging.getLogger(__name__)

MIN_SECONDS = 0.1  # a few codec frames: less decodes to nothing
MAX_SECONDS = 3600.0  # an hour: 180,000 decoder steps on musicgen-small, hours on a CPU
# the sampling defaults where ./params.yaml has no `generation` section (outside a project): MusicGen's
# published defaults, the numbers the project's params.yaml starts with
FALLBACK = P.GenerationParams(guidance_scale=3.0, temperature=1.0, top_k=250)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="musicgen_lora generate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--prompt", action="append", required=True, help="text prompt; repeat for several (one file each)")
    out = ap.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, help="output .wav (one prompt)")
    out.add_argument("--out-dir", type=Path, help="output folder (any number of prompts)")
    ap.add_argument("--adapter", type=Path, help="adapter folder written by train (default: the base model)")
    ap.add_argument("--model", help="model id or directory (default: params.yaml's model.name)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each file (default 15)")
    ap.add_argument("--window", type=float, help="seconds the model sees at once (default 30, or what the decoder holds)")
    ap.add_argument("--stride", type=float, help="new seconds per continuation window (default 0.6 x window)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (1 = off; default: params.yaml's "
        f"generation.guidance_scale, else {FALLBACK.guidance_scale:g})",
    )
    ap.add_argument(
        "--temperature", type=float, help=f"default: params.yaml's generation.temperature, else {FALLBACK.temperature:g}"
    )
    ap.add_argument("--top-k", type=int, help=f"0 = off (default: params.yaml's generation.top_k, else {FALLBACK.top_k})")
    ap.add_argument("--force", action="store_true", help="overwrite a file a pipeline stage wrote (DVC tracks it)")
    args = ap.parse_args(argv)
    if None in (args.guidance, args.temperature, args.top_k):  # params.yaml is read only for a value not given
        gp = generation_defaults()
        args.guidance = gp.guidance_scale if args.guidance is None else args.guidance
        args.temperature = gp.temperature if args.temperature is None else args.temperature
        args.top_k = gp.top_k if args.top_k is None else args.top_k
    return args


def generation_defaults() -> P.GenerationParams:
    """The `generation` section of ./params.yaml (validated) when the file has one, else FALLBACK."""
    data = P.read_params() if P.PARAMS_FILE.exists() else {}
    return P.parse_section("generation", data["generation"]) if "generation" in data else FALLBACK


def check_args(args: argparse.Namespace) -> list[Path]:
    """The output file of each prompt; one-line errors for arguments that cannot work."""
    prompts = args.prompt
    if not all(p.strip() for p in prompts):
        raise UserError("generate: --prompt must not be empty")
    finite_positive = lambda v: v is None or (math.isfinite(v) and v > 0)  # noqa: E731
    for flag, ok, rule in [
        (
            "--seconds",
            math.isfinite(args.seconds) and MIN_SECONDS <= args.seconds <= MAX_SECONDS,
            f"in [{MIN_SECONDS:g}, {MAX_SECONDS:g}] (an hour of audio; generate longer pieces in parts)",
        ),
        ("--window", finite_positive(args.window), "a number of seconds more than 0"),
        ("--stride", finite_positive(args.stride), "a number of seconds more than 0"),
        ("--seed", 0 <= args.seed < 2**32, "in [0, 2**32)"),
        ("--guidance", math.isfinite(args.guidance) and args.guidance >= 1, ">= 1 (1 = off)"),
        ("--temperature", math.isfinite(args.temperature) and args.temperature > 0, "more than 0"),
        ("--top-k", args.top_k >= 0, ">= 0 (0 = off)"),
    ]:
        if not ok:
            raise UserError(f"generate: {flag} must be {rule}")
    if args.out is not None and args.out.is_dir():
        raise UserError(f"generate: --out {args.out} is a folder; name a .wav file, or use --out-dir")
    if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
        raise UserError(f"generate: --out-dir {args.out_dir} is a file; name a folder, or use --out")
    if args.out is not None:
        if len(prompts) > 1:
            raise UserError(f"generate: --out names one file but {len(prompts)} prompts were given; use --out-dir")
        if args.out.suffix.lower() != ".wav":
            raise UserError(f"generate: {args.out}: the output is a WAV file; name it .wav")
        files = [args.out]
    else:
        files = [args.out_dir / f"{i:02d}_{slug(p)}.wav" for i, p in enumerate(prompts)]
    tracked = next((out for f in files if (out := pipeline_output_of(f))), None)
    if tracked and not args.force:
        raise UserError(
            f"generate: {files[0]} is inside {tracked}, which a pipeline stage writes and DVC tracks; "
            f"choose another --out/--out-dir (or pass --force to overwrite it)"
        )
    return files


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def model_config(mp: P.ModelParams):
    try:
        return load_config(mp)
    except (OSError, ValueError) as exc:  # a missing directory, an unknown hub id, offline without a cache
        raise UserError(f"generate: cannot load model {mp.name!r} ({str(exc).splitlines()[0][:200]})") from None


@contextlib.contextmanager
def adapted(model, adapter: Path | None):
    """The base model, or the base with `adapter` merged in."""
    if adapter is None:
        yield model
        return
    with merged(load_adapters(model, {"adapter": adapter}), "adapter") as m:
        yield m


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def seam_line(i: int, seam: S.Seam, typical: dict) -> str:
    return (
        f"  seam {i} at {seam.at_s:.2f} s {seam.verdict} (jumps more than {fmt(seam.loudness_percentile, '.0f')}% "
        f"of the clip's own moments in loudness, {fmt(seam.spectral_percentile, '.0f')}% in spectrum): "
        f"loudness {fmt(seam.loudness_before_lufs, '.1f')} -> {fmt(seam.loudness_after_lufs, '.1f')} LUFS "
        f"(jump {fmt(seam.loudness_jump_lu, '+.2f')} LU; typical |jump| {fmt(typical['loudness_jump_lu'], '.2f')}), "
        f"spectral jump {fmt(seam.spectral_jump_db, '.2f')} dB (typical {fmt(typical['spectral_jump_db'], '.2f')})"
    )


def main(argv: list[str]) -> int:
    args = parse(argv)
    files = check_args(args)
    # --model: that checkpoint's default branch on the auto device and threads, params.yaml's model section unread
    mp = P.ModelParams(name=args.model, revision=None, device="auto", cpu_threads=None) if args.model else P.load("model")[0]
    if args.adapter is not None:
        check_adapter_dir(args.adapter)
    config = model_config(mp)
    info = codec_info(config)
    hop = round(info.sample_rate / info.frame_rate)
    try:
        windows = plan(config, info.frame_rate, args.seconds, args.window, args.stride)
    except ValueError as exc:
        raise UserError(f"generate: {exc}") from None
    base = resolve_name(mp)
    if args.adapter is not None and adapter_base(args.adapter) not in (None, base, mp.name):
        log.info(f"generate: note: {args.adapter} was trained on {adapter_base(args.adapter)}; generating with {base}")
    model, tokenizer = load_model(mp)
    samples = int(round(args.seconds * info.sample_rate))
    record = {
        "model": base,
        "model_revision": mp.revision,
        "adapter": None if args.adapter is None else str(args.adapter),
        "adapter_sha256": None
        if args.adapter is None
        else hashlib.sha256((args.adapter / "adapter_model.safetensors").read_bytes()).hexdigest(),
        "seed": args.seed,
        "seconds": args.seconds,
        "sample_rate": info.sample_rate,
        "window_s": windows.window / info.frame_rate,
        "stride_s": windows.stride / info.frame_rate,
        "windows": 1 + len(windows.seams()),
        "guidance_scale": args.guidance,
        "temperature": args.temperature,
        "top_k": args.top_k,
    }
    with adapted(model, args.adapter) as m, fast_generation(m, prepack=True):
        for prompt, path in zip(args.prompt, files):
            with tqdm(total=windows.total, unit="frame", desc=path.name, leave=False) as bar:
                codes = generate_codes(
                    m,
                    tokenizer,
                    [prompt],
                    windows,
                    args.guidance,
                    args.temperature,
                    args.top_k,
                    args.seed,
                    progress=lambda done: bar.update(done - bar.n),
                )
            audio = decode_codes(m, codes)[0].float().cpu().numpy()[:samples]  # (N,), stereo (N, 2)
            seams, typical = S.measure(audio, info.sample_rate, hop, [f * hop for f in windows.seams()])
            with folder_lock(path.parent):  # another generate writing the same --out waits: wav and sidecar agree
                write_wav(path, audio, info.sample_rate)
                write_json(
                    sidecar(path),
                    {
                        **record,
                        "prompt": prompt,
                        "file": path.name,
                        "duration_s": round(len(audio) / info.sample_rate, 6),
                        "seams": S.as_dicts(seams),
                        "seam_typical": typical,
                        "seam_definitions": S.DEFINITIONS,
                    },
                )
            print(
                f"{path}: {len(audio) / info.sample_rate:.2f} s, {record['windows']} window(s) of "
                f"{record['window_s']:g} s, stride {record['stride_s']:g} s; {len(seams)} seam(s)"
            )
            for i, seam in enumerate(seams, 1):
                print(seam_line(i, seam, typical))
    return 0
