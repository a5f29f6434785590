"""Audio longer than the model's window: windowed continuation on MusicGen codes.

As audiocraft's `extend_stride` does (`BaseGenModel._generate_tokens`): the first window is
sampled from the text alone; each later window is prompted with the last `window - stride`
frames of the codes so far and adds `stride` new frames (fewer at the end), until the requested
length. The decoder never sees more than `window` frames at once.

transformers' `MusicgenForConditionalGeneration.generate` takes such a code prompt as
`decoder_input_ids` (B*K, P) (raw codes, no delay): it prepends the start token, lays the prompt
into the delay pattern (`build_delay_pattern_mask`, which also forces codebook k's last k prompt
frames into the steps after the prompt) and samples from there; its output is prompt +
continuation. The same thing through `input_values` (an audio prompt) would re-encode decoded
audio, which does not give back the codes that were sampled.

The codes are concatenated and decoded once at the end, as audiocraft's `generate_audio` does:
the codec decodes one continuous sequence, so no codec-side edge or crossfade is added at a seam
and the seam left is the language model's own, the one `metrics.seams` measures.
"""

from __future__ import annotations

import contextlib
import math
import types
from dataclasses import dataclass

import torch

from . import families, stereo
from .delay import text_inputs
from .kv_cache import presized_cache
from .sampling import RowSampling

TRAINED_WINDOW_S = 30.0  # MusicGen's checkpoints were trained on 30 s windows (audiocraft's max_duration)
STRIDE_SHARE = 0.6  # audiocraft's default extend_stride, 18 s of a 30 s window


@dataclass(frozen=True)
class Windows:
    """Frames to produce in all, frames the decoder sees at once, new frames per continuation."""

    total: int
    window: int
    stride: int

    def __post_init__(self):
        if not (self.total >= 1 and 0 < self.stride < self.window):
            raise ValueError(f"windows: need total >= 1 and 0 < stride < window (got {self})")

    @property
    def context(self) -> int:
        """Frames of the codes so far that prompt each continuation."""
        return self.window - self.stride

    def seams(self) -> list[int]:
        """Frames at which each continuation's new codes begin (none when one window suffices)."""
        return list(range(self.window, self.total, self.stride))


def max_window_frames(config) -> int:
    """The most frames one window may hold: the decoder's positions (`max_position_embeddings`)
    less the start token and the K - 1 steps of the delay pattern (K codebooks per channel)."""
    return config.decoder.max_position_embeddings - families.channel_codebooks(config)


def default_window_s(config, frame_rate: float) -> float:
    """30 s (what MusicGen was trained on), or less where the decoder's positions end sooner."""
    return min(TRAINED_WINDOW_S, max_window_frames(config) / frame_rate)


@contextlib.contextmanager
def _codes_only(model, sink: list):
    """`generate` samples codes, then decodes them through `audio_encoder.decode`: keep the codes
    and skip the decode (the whole sequence is decoded once, later). A stereo model decodes its
    left, then its right channel's codes: both are kept."""
    original = model.audio_encoder.decode

    def decode(audio_codes, *args, **kwargs):
        sink.append(audio_codes[0].detach().clone())
        return types.SimpleNamespace(audio_values=torch.zeros(audio_codes.shape[1], 1, 0))

    model.audio_encoder.decode = decode
    try:
        yield
    finally:
        model.audio_encoder.decode = original


def sample_codes(model, inputs: dict, prompt: torch.Tensor | None, frames: int, sampling: RowSampling) -> torch.Tensor:
    """`frames` new codes (B, K, frames) after the code prompt (B, K, P) (or from the text alone),
    on the model's device (stereo codes interleaved as `stereo.py` describes)."""
    device = next(model.parameters()).device
    inputs = {key: v.to(device) for key, v in inputs.items()}
    extra = {} if prompt is None else {"decoder_input_ids": prompt.long().reshape(-1, prompt.shape[-1]).to(device)}
    sink: list[torch.Tensor] = []
    steps = families.delay_steps(model.config, frames)
    with _codes_only(model, sink), presized_cache(model, steps):
        model.generate(**inputs, **extra, max_new_tokens=steps, **sampling.generate_kwargs())
    if not sink:
        raise RuntimeError(
            "continuation: this transformers no longer decodes through audio_encoder.decode; "
            "the sampled codes cannot be taken"
        )
    codes = sink[0] if len(sink) == 1 else stereo.interleave(sink[0], sink[1])
    expected = frames + (0 if prompt is None else prompt.shape[-1])
    if codes.shape[-1] != expected or (
        prompt is not None and not torch.equal(codes[..., : prompt.shape[-1]], prompt.to(codes))
    ):
        raise RuntimeError(
            f"continuation: generate returned {codes.shape[-1]} frames, expected the prompt's "
            f"{expected - frames} followed by {frames} new ones"
        )
    return codes[..., codes.shape[-1] - frames :]


@torch.no_grad()
def generate_codes(
    model,
    tokenizer,
    prompts: list[str],
    windows: Windows,
    guidance_scale: float,
    temperature: float,
    top_k: int,
    seed: int,
    progress=None,
) -> torch.Tensor:
    """Codes (B, K, windows.total) for `prompts`, window after window; prompt i from seed + i
    (`sampling.py`: its random stream runs on across the windows). `progress(frames_done)` is
    called after each window."""
    sampling = RowSampling([seed + i for i in range(len(prompts))], guidance_scale, temperature, top_k)
    inputs = text_inputs(tokenizer, prompts)
    codes = sample_codes(model, inputs, None, min(windows.total, windows.window), sampling)
    if progress:
        progress(codes.shape[-1])
    for start in windows.seams():
        new = min(windows.stride, windows.total - start)
        more = sample_codes(model, inputs, codes[..., -windows.context :], new, sampling)
        codes = torch.cat([codes, more], dim=-1)
        if progress:
            progress(codes.shape[-1])
    return codes


def plan(config, frame_rate: float, seconds: float, window_s: float | None, stride_s: float | None) -> Windows:
    """Windows for `seconds` of audio; ValueError naming the argument when one cannot work."""
    limit = max_window_frames(config)
    window_s = default_window_s(config, frame_rate) if window_s is None else window_s
    window = int(round(window_s * frame_rate))
    if window > limit:
        raise ValueError(
            f"--window {window_s:g} s is more than this decoder's {config.decoder.max_position_embeddings} "
            f"positions hold ({limit / frame_rate:.1f} s at {frame_rate:g} frames/s)"
        )
    stride = int(round((STRIDE_SHARE * window_s if stride_s is None else stride_s) * frame_rate))
    if window < 2 or not 0 < stride < window:
        raise ValueError(
            f"--stride must be more than 0 and less than --window ({window_s:g} s), "
            f"each at least one frame (1/{frame_rate:g} s)"
        )
    return Windows(total=max(1, math.ceil(seconds * frame_rate - 1e-9)), window=window, stride=stride)
