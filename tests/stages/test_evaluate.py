"""evaluate's `merged`: one loaded model, two adapters, each merged in turn into plain layers."""

import torch
from peft import get_peft_model
from peft.tuners.lora import LoraLayer

from conftest import ROOT
from musicgen_lora.core import params as P
from musicgen_lora.model.lora import merged
from musicgen_lora.model.delay import delay_pattern_labels, forward_loss, text_inputs
from musicgen_lora.model.musicgen import load_model
from musicgen_lora.model.lora import lora_config


def _loss(model, batch, dec) -> float:
    with torch.no_grad():
        return forward_loss(model, batch, dec.pad_token_id, dec.decoder_start_token_id).item()


def test_merged_adapters_match_unmerged_and_restore_the_wrappers():
    model, tok = load_model(P.ModelParams(name=str(ROOT / "assets/tiny-musicgen")))
    dec = model.config.decoder
    peft_model = get_peft_model(model, lora_config(P.TrainParams(rank=4, alpha=8.0), model), adapter_name="best")
    peft_model.add_adapter("final", lora_config(P.TrainParams(rank=4, alpha=8.0), model))
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter); give both adapters an effect
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    codes = torch.randint(0, dec.vocab_size, (1, dec.num_codebooks, 20), generator=torch.Generator().manual_seed(1))
    batch = {**text_inputs(tok, ["bright chiptune"]),
             "labels": delay_pattern_labels(codes, torch.ones(1, 20, dtype=torch.bool), True)}
    peft_model.eval()
    wrappers = sum(isinstance(m, LoraLayer) for m in peft_model.modules())
    for name in ("best", "final"):
        peft_model.set_adapter(name)
        unmerged = _loss(peft_model, batch, dec)
        with merged(peft_model, name) as plain:
            assert not any(isinstance(m, LoraLayer) for m in plain.modules())
            assert abs(_loss(plain, batch, dec) - unmerged) < 1e-4
        assert sum(isinstance(m, LoraLayer) for m in peft_model.modules()) == wrappers
        assert abs(_loss(peft_model, batch, dec) - unmerged) < 1e-4  # unmerged again, same model
    peft_model.set_adapter("best")
    best = _loss(peft_model, batch, dec)
    peft_model.set_adapter("final")
    assert abs(_loss(peft_model, batch, dec) - best) > 1e-3  # the two adapters really differ


def test_copy_twin_renames_rows_and_copies_audio(tmp_path):
    """final with best's weights: best's audio copied under final_model/, rows renamed, and the
    copied rows' metrics are their own dicts (later updates to one model's rows stay there)."""
    from musicgen_lora.stages.evaluate import ResultRow, copy_twin

    twin_dir = tmp_path / "best_model"
    twin_dir.mkdir()
    (twin_dir / "00_a.wav").write_bytes(b"RIFF-one")
    (twin_dir / "01_b.wav").write_bytes(b"RIFF-two")
    rows = [ResultRow("a", "best", 0, "best_model/00_a.wav", 15.0, 4.9, [], {"x": 1.0}),
            ResultRow("b", "best", 0, "best_model/01_b.wav", 15.0, 4.9, ["noisy"], {"x": 2.0})]
    out = copy_twin(rows, twin_dir, tmp_path / "final_model", "final")
    assert [r.model for r in out] == ["final", "final"]
    assert [r.file for r in out] == ["final_model/00_a.wav", "final_model/01_b.wav"]
    assert (tmp_path / "final_model/01_b.wav").read_bytes() == b"RIFF-two"
    out[0].metrics["style"] = 3.0
    out[1].flags.append("decaying")
    assert rows[0].metrics == {"x": 1.0} and rows[1].flags == ["noisy"]
    assert out[1].valid_loss == 4.9 and out[1].prompt == "b"
