"""The pre-sized self-attention cache: the same codes as transformers' growing cache, bit for bit."""

import contextlib
import warnings

import numpy as np
import pytest
import torch
from transformers import DynamicLayer

from musicgen_lora.model import kv_cache, musicgen
from musicgen_lora.model.kv_cache import PresizedLayer, presized_cache


def _generate(model, tokenizer, frames=24):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return musicgen.generate(model, tokenizer, ["chiptune arpeggios", "slow piano"], frames, 3.0, 1.0, 50, seed=3)


def test_generation_with_the_presized_cache_gives_the_same_codes_and_audio_bit_for_bit(tiny, monkeypatch):
    model, tokenizer = tiny
    last = {}
    hook = model.decoder.register_forward_hook(lambda m, a, out: last.update(cache=out.cache))
    try:
        audio, codes = _generate(model, tokenizer)
        layers = last["cache"].self_attention_cache.layers
        monkeypatch.setattr(musicgen, "presized_cache", lambda model, steps: contextlib.nullcontext())
        audio_stock, codes_stock = _generate(model, tokenizer)
        stock_layers = last["cache"].self_attention_cache.layers
    finally:
        hook.remove()
    # every step wrote into the buffers sized at the prefill: no layer fell back to concatenation
    assert len(layers) == model.config.decoder.num_hidden_layers
    assert all(type(layer) is PresizedLayer and layer.keys.data_ptr() == layer._keys.data_ptr() for layer in layers)
    # the start token, then each of the frames + K - 1 steps' tokens but the last (never fed back)
    assert layers[0].keys.shape[-2] == 1 + (24 + 3) - 1
    assert all(type(layer) is DynamicLayer for layer in stock_layers)
    assert np.unique(codes).size > 10  # sampled codes that vary, so equality has teeth
    assert np.array_equal(codes, codes_stock) and np.array_equal(audio, audio_stock)


@pytest.mark.parametrize("capacity", [4, 10])  # 4: the 3-position step overflows it; 10: room for all
def test_a_presized_layer_returns_what_a_dynamic_layer_returns_past_its_capacity_and_after_a_crop(capacity):
    torch.manual_seed(0)
    steps = [(torch.randn(2, 3, n, 4), torch.randn(2, 3, n, 4)) for n in (2, 1, 1, 3, 1, 1)]
    stock, presized = DynamicLayer(), DynamicLayer()
    for k, v in steps[:1]:
        stock.update(k, v)
        presized.update(k, v)
    presized = PresizedLayer(presized, capacity=capacity)
    assert presized._keys is None  # no buffer until its first update (a cache never updated costs nothing)
    for i, (k, v) in enumerate(steps[1:]):
        if i == 3:  # something outside replaces the tensors (as crop or reorder_cache do)
            for layer in (stock, presized):
                layer.keys, layer.values = layer.keys[..., :5, :].clone(), layer.values[..., :5, :].clone()
        a, b = stock.update(k, v), presized.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert presized.get_seq_length() == stock.get_seq_length() == 7


def test_a_cache_laid_out_otherwise_is_left_as_it_is_with_one_warning(tiny, monkeypatch):
    model, tokenizer = tiny
    _, codes = _generate(model, tokenizer, frames=12)
    assert kv_cache.presize(object(), 10) is None  # no layers at all
    monkeypatch.setattr(kv_cache, "presize", lambda cache, new_positions: None)
    with pytest.warns(UserWarning, match="kv cache: .* not laid out as expected") as caught:
        _, again = musicgen.generate(model, tokenizer, ["chiptune arpeggios", "slow piano"], 12, 3.0, 1.0, 50, seed=3)
    assert sum("kv cache" in str(w.message) for w in caught) == 1
    assert np.array_equal(codes, again)


def test_presized_cache_counts_what_it_swapped(tiny):
    model, tokenizer = tiny
    inputs = musicgen.text_inputs(tokenizer, ["chiptune"])
    with warnings.catch_warnings(), presized_cache(model, 8) as seen:
        warnings.simplefilter("ignore")
        model.generate(**inputs, do_sample=False, max_new_tokens=8)
    assert seen["swapped"] >= model.config.decoder.num_hidden_layers
