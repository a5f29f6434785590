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
    model, tok = load_model(P.project_params("model", name=str(ROOT / "assets/tiny-musicgen")))
    dec = model.config.decoder
    peft_model = get_peft_model(model, lora_config(P.project_params("train", rank=4, alpha=8.0), model), adapter_name="best")
    peft_model.add_adapter("final", lora_config(P.project_params("train", rank=4, alpha=8.0), model))
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA B starts at zero (a no-op adapter); give both adapters an effect
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    codes = torch.randint(0, dec.vocab_size, (1, dec.num_codebooks, 20), generator=torch.Generator().manual_seed(1))
    batch = {
        **text_inputs(tok, ["bright chiptune"]),
        "labels": delay_pattern_labels(codes, torch.ones(1, 20, dtype=torch.bool), True),
    }
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
    (twin_dir / "padded").mkdir()
    (twin_dir / "padded/00_a.wav").write_bytes(b"RIFF-long")
    rows = [
        ResultRow("a", "best", 0, 0, "clip", "best_model/00_a.wav", 15.0, 4.9, [], {"x": 1.0}, {}),
        ResultRow("b", "best", 1, 8, "clip", "best_model/01_b.wav", 15.0, 4.9, ["noisy"], {"x": 2.0}, {}),
        ResultRow("a", "best", 0, 0, "padded", "best_model/padded/00_a.wav", 30.0, 4.9, [], {"x": 1.0}, {}),
    ]
    out = copy_twin(rows, twin_dir, tmp_path / "final_model", "final")
    assert [r.model for r in out] == ["final", "final"]  # only best is generated at the padded length
    assert [r.file for r in out] == ["final_model/00_a.wav", "final_model/01_b.wav"]
    assert [(r.sample, r.seed) for r in out] == [(0, 0), (1, 8)]
    assert (tmp_path / "final_model/01_b.wav").read_bytes() == b"RIFF-two"
    assert not (tmp_path / "final_model/padded").exists()
    out[0].metrics["style"] = 3.0
    out[1].flags.append("decaying")
    assert rows[0].metrics == {"x": 1.0} and rows[1].flags == ["noisy"]
    assert out[1].valid_loss == 4.9 and out[1].prompt == "b"


def test_generate_set_pairs_seeds_measures_style_and_the_padded_length(tiny, tmp_path):
    """Each (prompt, sample) has its own seed, the same for every model; sample 0 keeps the
    one-sample seeds; musicnn measures land in the rows, the set's over the in-style prompts only;
    the copy check's figures land in every row; the padded set is measured past the real length."""
    import numpy as np

    from musicgen_lora.metrics.musicnn import Tagger
    from musicgen_lora.model.musicgen import codec_info
    from musicgen_lora.metrics.copying import CopyCheck, TrainingIndex
    from musicgen_lora.stages.evaluate import Evaluation, in_style, measure_style

    model, tok = tiny
    info = codec_info(model.config)
    rng = np.random.default_rng(0)
    ep = P.project_params(
        "evaluate",
        prompts=["bright chiptune"],
        off_style_prompts=["calm piano"],
        samples_per_prompt=2,
        seconds=3.0,
        batch_size=2,
    )
    gp = P.project_params("generation")
    ref = {
        "train_code_hist": np.full((info.num_codebooks, info.codebook_size), 1 / info.codebook_size),
        "silence_codes": np.zeros(info.num_codebooks, dtype=np.int64),
        "valid_mfcc": rng.normal(size=(5, 40)),
        "valid_musicnn_tags": rng.uniform(0, 1, (5, 50)),
        "valid_musicnn_emb": rng.normal(size=(5, 200)),
    }
    training = [rng.integers(0, info.codebook_size, (info.num_codebooks, 150)) for _ in range(3)]
    ref["copy"] = CopyCheck(
        TrainingIndex.build(training),
        ref["silence_codes"],
        info.frame_rate,
        rng.normal(size=(3, 200)),
        nn_limit=0.5,
        run_limit_s=1.0,
    )
    th = P.project_params("evaluate").thresholds()
    tagger = Tagger.load("MTT_musicnn")
    ev = Evaluation(model, tok, ep, gp, info, tagger, ref, th)
    rows, clips = ev.generate_set(info.frames(3.0), tmp_path, "base_model", "base", 5.0, 2)
    assert [(r.prompt, r.sample, r.seed, r.length) for r in rows] == [
        ("bright chiptune", 0, 0, "clip"),
        ("calm piano", 0, 1, "clip"),
        ("bright chiptune", 1, 2, "clip"),
        ("calm piano", 1, 3, "clip"),
    ]
    assert rows[2].file == "base_model/00_1_bright-chiptune.wav" and (tmp_path / "00_1_bright-chiptune.wav").exists()
    assert not np.array_equal(clips[0], clips[2])  # another seed, another clip
    figures, emb = measure_style(rows, clips, info.sample_rate, tmp_path, ref, tagger, in_style(rows, ep))
    assert emb.shape == (4, 200) and figures["n_generated"] == 2 and figures["n_target"] == 5  # in-style only
    assert all(r.metrics["copy_longest_s"] == 0 and r.metrics["copy_share"] == 0 for r in rows)  # random codes
    assert all(0 <= r.metrics["copy_nn_distance"] <= 2 and r.metrics["copy_nn_clip"] in (0, 1, 2) for r in rows)
    assert not any("near_copy" in r.flags for r in rows)
    assert figures["style_fd"] > 0 and figures["style_fd_mfcc"] > 0 and len(figures["top_tags"]) == 5
    assert all(-1 <= r.metrics["style_similarity"] <= 1 and r.metrics["tag_kl"] >= 0 for r in rows)
    assert (tmp_path / "musicnn.safetensors").stat().st_size > 4 * 250 * 4

    padded, _ = ev.generate_set(
        info.frames(4.0), tmp_path, "base_model", "base", 5.0, 1, {"clip_seconds": 3.0, "pad_to_seconds": 4.0}
    )
    assert [r.length for r in padded] == ["padded", "padded"] and padded[0].file.startswith("base_model/padded/")
    assert padded[0].duration_s == 4.0 and 0 <= padded[0].metrics["past_silence_code_share"] <= 1
    assert np.isfinite(padded[0].metrics["past_loudness_change_lu"])


def test_padded_length_only_when_padded_and_generable(tiny, tmp_path, caplog):
    import json

    from musicgen_lora.stages.evaluate import padded_length

    config = tiny[0].config

    def with_index(clip_s, pad_s):
        (tmp_path / "index.json").write_text(json.dumps({"clip_seconds": clip_s, "pad_to_seconds": pad_s}))
        return padded_length(tmp_path, config)

    padded, frames = with_index(15.0, 30.0)
    assert padded == {"clip_seconds": 15.0, "pad_to_seconds": 30.0} and frames == 1500  # 50 frames/s
    assert with_index(15.0, 15.0) == (None, None)  # the default run: no padding, no extra cost
    assert with_index(15.0, 200.0) == (None, None)
    (warning,) = [r for r in caplog.records if r.name == "musicgen_lora.stages.evaluate"]  # stderr, not the result
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("evaluate: no evaluation at the padded length: ")
