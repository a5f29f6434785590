"""A self-attention KV cache sized once for the whole generation.

transformers' `DynamicLayer` grows each layer's keys and values by `torch.cat` at every step, so
step t copies the t positions already cached: the copying grows with the square of the length.
On the musicgen-small shape (8 prompts with guidance: 16 rows) that is 3 MB per position across
the 24 layers: for 15 s clips, a fifth of the generation's time on a CPU. Here each layer's
cache is a view into one buffer sized for every position of the call, written in place: the
same values in the same order, so generation gives the same codes bit for bit
(tests/model/test_kv_cache.py), 1.19-1.24x faster at 15 s, 16-19% of the generation's time (bench/README.md, `cpu_devices`).

MusicGen's `generate` builds its cache inside the decoder's first forward (and, in transformers
5.24, runs that prefill twice, keeps the first one's output and uses the second one's cache: a
cache passed in would take the start token twice), so no cache is passed in: a hook on the
decoder swaps the cache's layers for pre-sized ones after each forward that returns plain
`DynamicLayer`s. Where a transformers version lays its cache out otherwise, the
hook leaves the cache as it is (the same codes, the old cost) and says so once.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from transformers import DynamicLayer


class PresizedLayer(DynamicLayer):
    """A `DynamicLayer` that takes over `layer`'s cached positions and, at its first update,
    moves them into buffers sized for `capacity` positions, returning views of them from then
    on. (Allocated at the first update, not here: the cache of the prefill that transformers
    5.24 runs twice is kept alive, never updated, for the whole call.) Should anything replace
    its tensors (crop, reorder, offload), a new buffer takes them; past `capacity` it grows by
    concatenation as its parent does."""

    def __init__(self, layer: DynamicLayer, capacity: int):
        super().__init__()
        self.keys, self.values = layer.keys, layer.values
        self.device, self.is_initialized = layer.device, True
        self.capacity = capacity
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys is None:
            return super().update(key_states, value_states, *args, **kwargs)
        assert self.values is not None  # DynamicLayer sets (and resets) keys and values together
        n = self.keys.shape[-2]
        m = n + key_states.shape[-2]
        if m > self.capacity:
            return super().update(key_states, value_states, *args, **kwargs)
        if self._keys is None or self.keys.data_ptr() != self._keys.data_ptr():
            self._keys = self.keys.new_empty(*self.keys.shape[:-2], self.capacity, self.keys.shape[-1])
            self._values = self.values.new_empty(*self.values.shape[:-2], self.capacity, self.values.shape[-1])
            self._keys[..., :n, :] = self.keys
            self._values[..., :n, :] = self.values
        assert self._values is not None  # allocated together with _keys
        self._keys[..., n:m, :] = key_states
        self._values[..., n:m, :] = value_states
        self.keys, self.values = self._keys[..., :m, :], self._values[..., :m, :]
        return self.keys, self.values


def presize(cache, new_positions: int) -> int | None:
    """Swap the plain `DynamicLayer`s of `cache`'s self-attention part for `PresizedLayer`s with
    room for `new_positions` more positions; returns how many were swapped, or None where the
    cache is not laid out as this module expects."""
    self_attention = getattr(cache, "self_attention_cache", cache)
    layers = getattr(self_attention, "layers", None)
    if not isinstance(layers, list):
        return None
    swapped = 0
    for i, layer in enumerate(layers):
        if isinstance(layer, PresizedLayer):
            continue
        if type(layer) is not DynamicLayer:
            return None
        if layer.is_initialized and layer.keys is not None and layer.keys.dim() == 4:
            layers[i] = PresizedLayer(layer, layer.keys.shape[-2] + new_positions)
            swapped += 1
    return swapped


@contextlib.contextmanager
def presized_cache(model, new_positions: int):
    """While the block runs, `model.generate` (MusicGen, plain or peft-wrapped) keeps its
    self-attention cache in buffers with room for `new_positions` generated positions
    (`max_new_tokens`). Yields a dict counting the layers swapped (`swapped`)."""
    seen = {"swapped": 0, "warned": False}

    def after_forward(module, args, output):
        cache = getattr(output, "cache", None)
        if cache is None:
            cache = getattr(output, "past_key_values", None)
        if cache is None:
            return
        done = presize(cache, new_positions)
        if done is None and not seen["warned"]:
            seen["warned"] = True
            warnings.warn(
                f"kv cache: this transformers' cache ({type(cache).__name__}) is not laid out as "
                "expected; generating with its own growing cache",
                stacklevel=2,
            )
        seen["swapped"] += done or 0

    handle = model.decoder.register_forward_hook(after_forward)
    try:
        yield seen
    finally:
        handle.remove()
