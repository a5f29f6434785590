"""Sampling with one random stream per prompt, so a clip's seed regenerates that clip alone.

`model.generate(do_sample=True)` draws every row of a batch from torch's one global stream: a
clip then depends on which prompts shared its batch, and the seed written beside it cannot
regenerate it. `RowSampling` instead draws each prompt's randomness from its own generator,
seeded with that prompt's seed, and samples by the Gumbel-max trick: argmax(logits / T + G),
with G standard Gumbel noise, is a draw from softmax(logits / T) (top-k applied first). Passed to
`generate(do_sample=False, logits_processor=...)`, greedy decoding over these scores samples, and
a batch of eight prompts gives each the clip it would get alone with its seed (up to the floating
point differences a batched forward pass may bring on some hardware).
"""

from __future__ import annotations

import torch
from transformers import ClassifierFreeGuidanceLogitsProcessor, LogitsProcessor, LogitsProcessorList


class RowSampling(LogitsProcessor):
    """Classifier-free guidance, temperature, top-k and per-prompt Gumbel noise. Rows are
    (prompt, codebook), prompt-major, as MusicGen's decoder lays them out."""

    def __init__(self, seeds: list[int], guidance_scale: float, temperature: float, top_k: int):
        self.seeds, self.guidance_scale, self.temperature, self.top_k = list(seeds), guidance_scale, temperature, top_k
        self.guidance = ClassifierFreeGuidanceLogitsProcessor(guidance_scale) if guidance_scale > 1 else None
        self.generators: list[torch.Generator] | None = None

    def generate_kwargs(self) -> dict:
        """`model.generate` keyword arguments that sample prompt i from seeds[i] alone: greedy
        decoding over these Gumbel-perturbed scores samples, and transformers' warpers stay out.
        A new processor list on every call: MusicGen appends its guidance processor to it."""
        return {
            "do_sample": False,
            "temperature": None,
            "top_k": None,
            "guidance_scale": self.guidance_scale,
            "logits_processor": LogitsProcessorList([self]),
        }

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        # MusicGen appends its guidance processor after the caller's, so the scores may still hold
        # the conditional and unconditional halves: guide them here, and hand the processor that
        # follows two equal halves, which it maps to themselves (u + (c - u) * g = u when c = u).
        pending = scores.shape[0] == 2 * input_ids.shape[0]
        if pending:
            assert self.guidance is not None  # MusicGen doubles the rows only when guidance_scale > 1
            scores = self.guidance(input_ids, scores)
        rows = scores.float().reshape(len(self.seeds), -1, scores.shape[-1]) / self.temperature
        if self.top_k:
            kth = rows.topk(min(self.top_k, rows.shape[-1]), dim=-1).values[..., -1:]
            # finite, not -inf: the guidance step after this one subtracts equal halves (-inf - -inf is nan)
            rows = rows.masked_fill(rows < kth, torch.finfo(rows.dtype).min)
        if self.generators is None:  # on the scores' device, created once: later windows continue the streams
            self.generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        u = torch.stack([torch.rand(rows.shape[1:], generator=g, device=scores.device) for g in self.generators])
        sampled = (rows + -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))).reshape(scores.shape)
        return torch.cat([sampled, sampled]) if pending else sampled
