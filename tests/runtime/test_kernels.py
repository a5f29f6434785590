"""runtime.kernels: prepacked linears give the stock layers' results, only layers large enough to
gain are packed, and `fast_generation` puts every swapped module back."""

import torch
from peft import get_peft_model
from torch import nn

from conftest import ROOT
from musicgen_lora.core import params as P
from musicgen_lora.runtime.kernels import PACK_MIN_WEIGHTS, PackedLinear, can_prepack, fast_generation
from musicgen_lora.model.delay import delay_pattern_labels, forward_loss, text_inputs
from musicgen_lora.model.musicgen import decode_codes, load_model
from musicgen_lora.model.lora import lora_config


def test_packed_linear_matches_linear_for_any_row_count_and_gives_its_weight_back():
    torch.manual_seed(0)
    linear = nn.Linear(96, 200)
    weight = linear.weight.detach().clone()
    xs = [torch.randn(*shape) for shape in [(1, 96), (16, 96), (300, 96), (2, 7, 96)]]
    with torch.no_grad():
        expected = [linear(x) for x in xs]
        packed = PackedLinear(linear, rows_hint=16)
        assert packed.weight is linear.weight and linear.weight.numel() == 0  # moved, not copied
        for x, y in zip(xs, expected):
            assert torch.allclose(packed(x), y, atol=1e-5), x.shape
        packed.unpack()
    assert torch.equal(linear.weight, weight)


def test_fast_generation_matches_stock_and_restores_the_model():
    model, tok = load_model(P.project_params("model", name=str(ROOT / "assets/tiny-musicgen")))
    dec = model.config.decoder
    peft_model = get_peft_model(model, lora_config(P.project_params("train", rank=4, alpha=8.0), model)).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    codes = torch.randint(0, dec.vocab_size, (2, dec.num_codebooks, 30), generator=torch.Generator().manual_seed(1))
    batch = {
        **text_inputs(tok, ["bright chiptune", "calm piano"]),
        "labels": delay_pattern_labels(codes, torch.ones(2, 30, dtype=torch.bool), True),
    }

    def measure(m):
        with torch.no_grad():
            return forward_loss(m, batch, dec.pad_token_id, dec.decoder_start_token_id).item(), decode_codes(m, codes)

    before = list(peft_model.modules())
    loss, audio = measure(peft_model)
    linears = sum(type(m) is nn.Linear for m in peft_model.decoder.modules())
    assert can_prepack(peft_model.decoder) and linears > 0
    weights = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    with fast_generation(peft_model, prepack=True) as fast:  # the tiny model's 128-wide layers lose by packing
        assert not any(isinstance(m, PackedLinear) for m in fast.decoder.modules())
    with fast_generation(peft_model, prepack=True, min_weights=0) as fast:
        assert sum(isinstance(m, PackedLinear) for m in fast.decoder.modules()) == linears  # LoRA's too
        fast_loss, fast_audio = measure(fast)
    assert abs(fast_loss - loss) < 1e-4
    assert (fast_audio - audio).abs().max() < 1e-5
    assert list(peft_model.modules()) == before  # the very same modules, in the same places
    assert all(torch.equal(p, weights[n]) for n, p in peft_model.named_parameters())  # unpacked bit for bit
    assert measure(peft_model)[0] == loss
    with fast_generation(peft_model, prepack=False, min_weights=0) as fast:
        assert not any(isinstance(m, PackedLinear) for m in fast.decoder.modules())


def test_only_layers_from_the_size_where_packing_pays_are_packed():
    model = nn.Module()
    side = int(PACK_MIN_WEIGHTS**0.5)
    model.decoder = nn.Sequential(nn.Linear(side, side), nn.Linear(side, side - 1), nn.Linear(128, 512))
    with fast_generation(model, prepack=True) as fast:
        assert [isinstance(m, PackedLinear) for m in fast.decoder] == [True, False, False]


def test_a_tied_weight_is_not_packed():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight
            self.proj = nn.Linear(8, 8)

    class Model(nn.Module):  # the part `fast_generation` reaches into
        def __init__(self):
            super().__init__()
            self.decoder = Tied()

    model = Model()
    with fast_generation(model, prepack=True, min_weights=0) as fast:
        assert type(fast.decoder.head) is nn.Linear and fast.decoder.embed.weight.shape == (10, 8)
        assert isinstance(fast.decoder.proj, PackedLinear)


def test_only_fp32_cpu_weights_are_prepacked():
    assert can_prepack(nn.Linear(4, 4))
    assert not can_prepack(nn.Linear(4, 4).to(torch.bfloat16))
    assert not can_prepack(nn.ReLU())


def test_without_the_private_ops_generation_falls_back_to_stock_layers_with_one_warning(monkeypatch):
    from musicgen_lora.runtime import kernels

    def missing(*args, **kwargs):
        raise RuntimeError("no such op")

    kernels.prepack_supported.cache_clear()
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", missing, raising=False)
    try:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not kernels.prepack_supported()
            assert not kernels.prepack_supported()  # checked once
        assert len([w for w in caught if "prepacked linears unavailable" in str(w.message)]) == 1
        model = nn.Module()
        model.decoder = nn.Sequential(nn.Linear(8, 8))
        with fast_generation(model, prepack=True, min_weights=0):
            assert type(model.decoder[0]) is nn.Linear  # stock layer kept
    finally:
        kernels.prepack_supported.cache_clear()
