"""The memory a training process needs, planned before it runs (`python -m musicgen_lora plan`).

Counted, not guessed: the weights from the checkpoint's config (the model built on the meta
device: no memory, no download of weights), the LoRA's parameters with their gradients and
AdamW's two moments (fp32: 16 bytes each), and the activations autograd keeps for the backward
pass, counted by `torch.autograd.graph.saved_tensors_hooks` on one forward of this decoder's own
layers (random weights, its width, one and two layers, plain and checkpointed) on the CPU, in the
run's precision, at three lengths: the fixed part (embeddings, heads, loss) and a layer's part,
each a quadratic in the decoder positions, scaled to the run's layers, batch and clip; the peak
is the larger of the end of the forward and the backward's layer-by-layer recomputation. On a
GPU a CUDA context and workspace come on top (`CUDA_OVERHEAD_GB`, an estimate: no GPU here).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from peft import get_peft_model

from ..core import params as P
from . import families
from .configs import encodec_32khz
from .delay import decoder_input_ids, codebook_loss, delay_pattern_labels
from .lora import lora_config

GPU_SIZES_GB = (8, 12, 16, 24, 40, 80)
CUDA_OVERHEAD_GB = 0.75  # CUDA context, cuBLAS workspace and the caching allocator's slack
PROBE_POSITIONS = (32, 64, 128)
DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
GB = 2**30
# bf16 with gradient checkpointing keeps more than the count sees (measured 0.78-0.82 of a step's
# memory on a 1024-wide decoder; not yet explained): such settings are planned with this margin
HALF_CHECKPOINTED_MARGIN = 1.25


@dataclasses.dataclass(frozen=True)
class Costs:
    """Bytes a step keeps for the backward pass, each part a quadratic (a, b, c) in the decoder
    positions p of one clip: a is the step's own (half-precision copies of frozen weights, made
    once a step whatever the batch), b p + c p^2 each clip's."""

    fixed: tuple[float, float, float]  # embeddings, heads, logits and loss
    layer: tuple[float, float, float]  # a decoder layer that keeps its activations
    checkpointed: tuple[float, float, float]  # a checkpointed layer (its input)
    largest: tuple[float, float, float]  # the largest single kept tensor (its gradient is live beside it)

    @staticmethod
    def step(poly: tuple[float, float, float]) -> float:
        return poly[0]

    @staticmethod
    def clip(poly: tuple[float, float, float], positions: int) -> float:
        return poly[1] * positions + poly[2] * positions**2

    @staticmethod
    def at(poly: tuple[float, float, float], positions: int, batch: int = 1) -> float:
        return Costs.step(poly) + batch * Costs.clip(poly, positions)


def param_counts(config, tp: P.TrainParams) -> tuple[int, int]:
    """(all weights of the model, the LoRA's), from the config alone (meta device)."""
    with torch.device("meta"):
        model = families.model_class(config)(copy.deepcopy(config))
        total = sum(p.numel() for p in model.parameters())
        peft_model = get_peft_model(model, lora_config(tp, model))
        lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    return total, lora


def probe_model(config, tp: P.TrainParams, layers: int = 2):
    """This decoder's layers (`layers` of them) with a one-layer text encoder and a narrow codec:
    the parts a training forward runs, at their real widths; random weights, LoRA attached."""
    cfg = copy.deepcopy(config)
    cfg.decoder.num_hidden_layers = layers
    cfg.text_encoder.num_layers = 1
    cfg.audio_encoder = encodec_32khz(tiny=True)  # tokens are cached: training never runs the codec
    torch.manual_seed(0)
    model = families.model_class(cfg)(cfg)
    return get_peft_model(model, lora_config(tp, model))


def _saved(model, run) -> tuple[int, int]:
    """(bytes autograd keeps for the backward pass of `run()`, the largest single tensor of them),
    each storage once, the model's own weights (saved as themselves or as views) not counted."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = max(kept.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(kept.values()), max(kept.values(), default=0)


def training_forward(model, positions: int, dtype: torch.dtype | None, batch: int = 1) -> torch.Tensor:
    """The loss of a training forward of `batch` clips of `positions` decoder positions (frames +
    K - 1) with a 16-token caption, under autocast in `dtype` (None: float32)."""
    cfg = model.base_model.model.config
    k, vocab = cfg.decoder.num_codebooks, cfg.decoder.vocab_size
    frames = positions - families.channel_codebooks(cfg) + 1
    codes = torch.randint(0, vocab, (batch, k, frames))
    labels = delay_pattern_labels(codes, torch.ones(batch, frames, dtype=torch.bool), True, families.audio_channels(cfg))
    inputs = {"input_ids": torch.randint(2, 100, (batch, 16)), "attention_mask": torch.ones(batch, 16, dtype=torch.long)}
    if families.is_melody(cfg):
        inputs["input_features"] = torch.rand(batch, frames, cfg.num_chroma)
    start, pad = cfg.decoder.decoder_start_token_id, cfg.decoder.pad_token_id
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = model(**inputs, decoder_input_ids=decoder_input_ids(labels, start, pad), use_cache=False)
        return codebook_loss(out.logits[:, -labels.shape[1] :], labels)


def _fit(values: Sequence[float]) -> tuple[float, float, float]:
    c, b, a = np.polyfit(PROBE_POSITIONS, values, 2)
    return float(a), float(b), float(max(c, 0.0))


def probe(config, tp: P.TrainParams, precision: str) -> Costs:
    """Count what one clip keeps for the backward pass in `precision` at `PROBE_POSITIONS`, with
    one and two layers (plain, then checkpointed), and fit each part as a quadratic."""
    model = probe_model(config, tp)
    model.train()
    decoder = model.base_model.model.decoder
    layers, dtype = decoder.model.decoder.layers, DTYPES[precision]
    # (checkpointed, layers) -> bytes at each probe length; "largest": the largest kept tensor of the
    # first run (one plain layer: the loss's logits, the same at any depth)
    counts: dict[tuple[bool, int] | str, list[int]] = {}
    for ckpt in (False, True):
        if ckpt:
            decoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        for n in (1, 2):
            decoder.model.decoder.layers = torch.nn.ModuleList(list(layers)[:n])
            kept = [_saved(model, lambda: training_forward(model, p, dtype)) for p in PROBE_POSITIONS]
            counts[ckpt, n] = [k[0] for k in kept]
            counts["largest"] = counts.get("largest") or [k[1] for k in kept]
    decoder.model.decoder.layers = layers
    layer = _fit([t - o for t, o in zip(counts[False, 2], counts[False, 1])])
    return Costs(
        fixed=_fit([o - Costs.at(layer, p) for o, p in zip(counts[False, 1], PROBE_POSITIONS)]),
        layer=layer,
        checkpointed=_fit([t - o for t, o in zip(counts[True, 2], counts[True, 1])]),
        largest=_fit(counts["largest"]),
    )


def training_bytes(config, tp: P.TrainParams, positions: int, costs: Costs, counts: tuple[int, int]) -> dict:
    """The peak of one training step, part by part (bytes). After the forward every layer holds
    what it keeps (a checkpointed one, transformers' layer i where i % every_n_layers == 0: only
    its input) beside the heads and loss, and the loss's gradient comes on top; the backward then
    frees layer by layer from the last, recomputing a checkpointed layer whole while the layers
    below it still hold theirs. The peak is the larger of the two moments."""
    total, lora = counts
    b, every = tp.batch_size, tp.gradient_checkpointing_every if tp.gradient_checkpointing else 0
    full, checkpointed = Costs.at(costs.layer, positions, b), Costs.at(costs.checkpointed, positions, b)
    kept = [checkpointed if every and i % every == 0 else full for i in range(config.decoder.num_hidden_layers)]
    after_forward = Costs.at(costs.fixed, positions, b) + sum(kept)
    in_backward = max(
        after_forward + b * Costs.clip(costs.largest, positions), max(sum(kept[:j]) + full for j in range(len(kept)))
    )
    parts = {
        "weights": 4 * total,
        "lora_and_optimizer": 16 * lora,
        "activations": after_forward,
        "backward_transient": in_backward - after_forward,
    }
    return {k: int(v) for k, v in parts.items()}


def _total(parts: dict) -> int:
    return sum(parts.values())


def planned_peak(config, tp: P.TrainParams, positions: int, costs: Costs, counts: tuple[int, int]) -> float:
    """The GPU peak of a training process (bytes): the step's parts, CUDA's context, and the
    margin where the count is known to fall short."""
    margin = HALF_CHECKPOINTED_MARGIN if tp.mixed_precision != "no" and tp.gradient_checkpointing else 1.0
    return margin * _total(training_bytes(config, tp, positions, costs, counts)) + CUDA_OVERHEAD_GB * GB


def options(config, tp: P.TrainParams, positions: int, counts: tuple[int, int], costs: dict[str, Costs]):
    """Every (batch, grad_accum, precision, checkpointing every N or 0) at the run's effective
    batch, fastest first: larger batches before smaller, then the run's own precision before
    bf16, then lighter checkpointing before heavier; each with its planned peak (bytes, GPU)."""
    effective = tp.batch_size * tp.grad_accum
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, tp.batch_size) if b <= effective}, reverse=True)
    for batch in batches:
        for precision in dict.fromkeys([tp.mixed_precision, "bf16"]):
            for every in (0, 4, 2, 1):
                trial = dataclasses.replace(
                    tp,
                    mixed_precision=precision,
                    batch_size=batch,
                    grad_accum=math.ceil(effective / batch),
                    gradient_checkpointing=every > 0,
                    gradient_checkpointing_every=every or 1,
                )
                yield trial, planned_peak(config, trial, positions, costs[precision], counts)


def describe(tp: P.TrainParams) -> str:
    ckpt = f"every {tp.gradient_checkpointing_every}" if tp.gradient_checkpointing else "off"
    return (
        f"batch_size {tp.batch_size}, grad_accum {tp.grad_accum}, mixed_precision {tp.mixed_precision}, "
        f"gradient_checkpointing {ckpt}"
    )


def main(argv: list[str]) -> int:
    import argparse

    from .musicgen import codec_info, load_config, resolve_name

    ap = argparse.ArgumentParser(prog="musicgen_lora plan", description=__doc__.splitlines()[0])
    ap.add_argument("--gpu-gb", type=float, nargs="*", default=list(GPU_SIZES_GB), help="GPU sizes to fit (GB)")
    args = ap.parse_args(argv)
    mp, seg, enc, tp = P.load("model", "segment", "encode", "train")
    config = load_config(mp)
    seconds = enc.pad_to_seconds or seg.clip_seconds
    positions = codec_info(config).frames(seconds) + families.channel_codebooks(config) - 1
    counts = param_counts(config, tp)
    costs = {p: probe(config, tp, p) for p in dict.fromkeys([tp.mixed_precision, "bf16"])}
    parts = training_bytes(config, tp, positions, costs[tp.mixed_precision], counts)
    dec = config.decoder
    print(
        f"plan: {resolve_name(mp)} (decoder {dec.num_hidden_layers} x {dec.hidden_size}, "
        f"{dec.num_codebooks} codebooks), {seconds:g} s clips ({positions} decoder positions), rank {tp.rank}"
    )
    print(f"  params.yaml ({describe(tp)}):")
    peak = planned_peak(config, tp, positions, costs[tp.mixed_precision], counts)
    print(
        "  "
        + ", ".join(f"{k.replace('_', ' ')} {v / GB:.2f}" for k, v in parts.items())
        + f", CUDA context {CUDA_OVERHEAD_GB:.2f} -> peak {peak / GB:.1f} GB"
    )
    print("  fits (the run's effective batch kept; change these in params.yaml's train section):")
    for size in args.gpu_gb:
        fit = next(
            ((t, peak) for t, peak in options(config, tp, positions, counts, costs) if peak <= 0.95 * size * GB), None
        )
        print(
            f"  {size:>5g} GB: "
            + (
                f"{describe(fit[0])} -> {fit[1] / GB:.1f} GB"
                if fit
                else "does not fit, even at batch 1 in bf16 with every layer checkpointed"
            )
        )
    print(
        "  (counted on the CPU from this model's layers, not yet checked on a GPU; 5% of each size is left for "
        "the caching allocator's fragmentation)"
    )
    return 0
