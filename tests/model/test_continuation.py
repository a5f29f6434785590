"""Windowed continuation: the window plan, and a continuation that picks up exactly where one long
window would have gone."""

import copy

import pytest
import torch

from musicgen_lora.model.continuation import Windows, generate_codes, plan, sample_codes
from musicgen_lora.model.delay import text_inputs
from musicgen_lora.model.musicgen import codec_info
from musicgen_lora.model.sampling import RowSampling


def test_windows_as_audiocraft_extends():
    # audiocraft's defaults: 30 s windows, 18 s stride, 12 s of context; 40 s needs one seam
    w = Windows(total=2000, window=1500, stride=900)
    assert w.context == 600 and w.seams() == [1500]
    assert Windows(total=500, window=200, stride=120).seams() == [200, 320, 440]
    assert Windows(total=200, window=200, stride=120).seams() == []


def test_plan_defaults_and_limits(tiny):
    config = tiny[0].config
    rate = codec_info(config).frame_rate
    w = plan(config, rate, 40.0, None, None)
    assert (w.total, w.window, w.stride) == (2000, 1500, 900)  # 30 s window (4096 positions allow 81 s)
    assert plan(config, rate, 10.0, 4.0, None).seams() == [200, 320, 440]  # stride 0.6 x 4 s
    assert plan(config, rate, 1.01, None, None).total == 51  # ceil: never shorter than asked
    with pytest.raises(ValueError, match="4096 positions"):
        plan(config, rate, 100.0, 90.0, None)
    with pytest.raises(ValueError, match="--stride"):
        plan(config, rate, 10.0, 4.0, 4.0)


def test_greedy_continuation_reproduces_the_single_window(tiny):
    """Prompted with the first 20 frames of a 30-frame greedy generation, a greedy continuation
    must give its frames 20-29: the prompt enters the delay pattern exactly where one long
    generation had it. (Weights perturbed so the greedy codes change over time; handing over
    the prompt already delayed gives other codes, so the test has teeth.)"""
    model = copy.deepcopy(tiny[0])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.decoder.parameters():
            if p.ndim == 2:
                p.add_(0.3 * torch.randn_like(p))
    inputs = text_inputs(tiny[1], ["bright chiptune", "calm solo piano with soft chords"])

    def greedy():  # top-k 1: the continuation must match the one long window exactly
        return RowSampling([0, 1], 3.0, 1.0, top_k=1)

    full = sample_codes(model, inputs, None, 30, greedy())
    assert len(full.unique()) > 8
    assert torch.equal(sample_codes(model, inputs, full[..., :20], 10, greedy()), full[..., 20:])
    delayed = full[..., :20].clone()
    for k in range(1, 4):
        delayed[:, k, k:] = full[:, k, : 20 - k]
    assert not torch.equal(sample_codes(model, inputs, delayed, 10, greedy()), full[..., 20:])


def test_codes_reproducible_and_first_window_unchanged(tiny):
    model, tok = tiny
    short = generate_codes(model, tok, ["chiptune"], Windows(60, 100, 60), 3.0, 1.0, 250, seed=3)
    long = generate_codes(model, tok, ["chiptune"], Windows(130, 60, 30), 3.0, 1.0, 250, seed=3)
    assert long.shape == (1, 4, 130)
    assert torch.equal(long[..., :60], short)  # the first window is one plain generation
    assert torch.equal(generate_codes(model, tok, ["chiptune"], Windows(130, 60, 30), 3.0, 1.0, 250, seed=3), long)
