import torch
from peft import PeftModel, get_peft_model

from musicgen_lora.model.delay import (
    IGNORE,
    codebook_loss,
    decoder_input_ids,
    delay_pattern_labels,
    forward_loss,
    text_inputs,
)
from musicgen_lora.core.params import ParamsError, project_params
from musicgen_lora.model.lora import lora_config

import pytest


def test_delay_pattern_shifts_codebook_k_by_k():
    codes = torch.arange(2 * 4 * 5).reshape(2, 4, 5)
    labels = delay_pattern_labels(codes, torch.ones(2, 5, dtype=torch.bool), mask_padding=True)
    assert labels.shape == (2, 5 + 4 - 1, 4)
    for k in range(4):
        assert torch.equal(labels[:, k : k + 5, k], codes[:, k])
        assert (labels[:, :k, k] == IGNORE).all() and (labels[:, k + 5 :, k] == IGNORE).all()


def test_inputs_match_transformers_generation_pattern(tiny):
    """Teacher-forcing inputs equal what `generate` feeds back: transformers' own delay mask."""
    model, _ = tiny
    pad = model.config.decoder.pad_token_id
    codes = torch.randint(0, 200, (1, 4, 6))
    labels = delay_pattern_labels(codes, torch.ones(1, 6, dtype=torch.bool), True)
    ours = decoder_input_ids(labels, pad, pad)
    full = torch.full((4, 1), pad)  # BOS column
    _, pattern = model.decoder.build_delay_pattern_mask(full, pad, max_length=1 + 6 + 3)
    expected = pattern.clone()
    for k in range(4):
        expected[k, 1 + k : 1 + k + 6] = codes[0, k]
    assert torch.equal(ours, expected[:, :-1])


def test_padded_frames_never_contribute_to_loss():
    codes = torch.randint(0, 8, (1, 4, 10))
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[:, :6] = True
    labels = delay_pattern_labels(codes, mask, mask_padding=True)
    logits = torch.randn(4, labels.shape[1], 8, requires_grad=True)
    codebook_loss(logits, labels).backward()
    for k in range(4):
        assert (logits.grad[k, k + 6 :] == 0).all()  # frames 6.. of codebook k sit at steps k+6..
        assert (logits.grad[k, k : k + 6].abs().sum(-1) > 0).all()
    unmasked = delay_pattern_labels(codes, mask, mask_padding=False)
    assert (unmasked != IGNORE).sum() == 4 * 10  # trial-1: padding left in the loss


def test_fully_masked_codebook_gives_no_nan():
    labels = torch.full((1, 5, 4), IGNORE)
    labels[0, :, 0] = 3  # only codebook 0 has targets
    logits = torch.randn(4, 5, 8, requires_grad=True)
    loss = codebook_loss(logits, labels)
    assert torch.isfinite(loss)
    nothing = codebook_loss(logits, torch.full((1, 5, 4), IGNORE))
    nothing.backward()
    assert nothing.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_adapter_save_load_round_trip(tiny, tmp_path):
    model, tok = tiny
    batch = text_inputs(tok, ["upbeat chiptune"])
    batch["labels"] = delay_pattern_labels(torch.randint(0, 200, (1, 4, 20)), torch.ones(1, 20, dtype=torch.bool), True)
    peft = get_peft_model(model, lora_config(project_params("train", rank=4, alpha=8.0), model))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # a non-trivial adapter
        pad = model.config.decoder.pad_token_id
        before = forward_loss(peft, batch, pad, pad)
        peft.save_pretrained(tmp_path / "adapter")
        assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
        base = peft.unload()
        plain = forward_loss(base, batch, pad, pad)
        loaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
        after = forward_loss(loaded, batch, pad, pad)
        loaded.unload()
    assert torch.allclose(before, after) and not torch.allclose(before, plain)


def test_lora_targets_only_decoder(tiny):
    model, _ = tiny
    cfg = lora_config(project_params("train"), model)
    names = [n for n, _ in model.named_modules() if __import__("re").fullmatch(cfg.target_modules, n)]
    assert names and all(n.startswith("decoder.") for n in names)
    with pytest.raises(ParamsError, match="train.target_modules"):
        lora_config(project_params("train", target_modules=["q_proj", "nonexistent"]), model)


def test_generate_falls_back_to_re_encoded_codes_when_the_capture_sees_none(tiny, monkeypatch):
    import contextlib
    import warnings

    from musicgen_lora.model import musicgen

    model, tokenizer = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, captured = musicgen.generate(model, tokenizer, ["chiptune"], 10, 3.0, 1.0, 50, seed=0)
    monkeypatch.setattr(musicgen, "_capture_codes", lambda model, sink: contextlib.nullcontext())
    with pytest.warns(UserWarning, match="sampled codes not captured"):
        audio, codes = musicgen.generate(model, tokenizer, ["chiptune"], 10, 3.0, 1.0, 50, seed=0)
    assert codes.shape == captured.shape and audio.shape[0] == 1
    assert (codes >= 0).all() and (codes < model.config.audio_encoder.codebook_size).all()


def test_checkpointing_every_nth_decoder_layer_gives_the_same_gradients_bit_for_bit():
    """`checkpoint_decoder` recomputes only every n-th decoder layer, and the recomputation
    changes no bit of the loss or of any LoRA gradient (train.gradient_checkpointing_every)."""
    from conftest import ROOT
    from musicgen_lora.model.musicgen import checkpoint_decoder, load_model

    def grads(every):
        model, tok = load_model(project_params("model", name=str(ROOT / "assets/tiny-musicgen")))
        if every:
            checkpoint_decoder(model, every)
        torch.manual_seed(2)  # lora_A's initialisation, then the text encoder's dropout draws
        peft_model = get_peft_model(model, lora_config(project_params("train", rank=4, alpha=8.0), model)).train()
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
        dec = model.config.decoder
        codes = torch.randint(0, dec.vocab_size, (2, dec.num_codebooks, 40), generator=torch.Generator().manual_seed(1))
        batch = {
            **text_inputs(tok, ["bright chiptune", "calm piano"]),
            "labels": delay_pattern_labels(codes, torch.ones(2, 40, dtype=torch.bool), True),
        }
        loss = forward_loss(peft_model, batch, dec.pad_token_id, dec.decoder_start_token_id)
        loss.backward()
        layers = [layer.gradient_checkpointing for layer in model.decoder.model.decoder.layers]
        return loss.item(), {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}, layers

    loss, plain, layers = grads(0)
    assert not any(layers)
    for every, expected in ((1, [True, True, True]), (2, [True, False, True])):
        ck_loss, ck, ck_layers = grads(every)
        assert ck_layers == expected
        assert ck_loss == loss
        assert ck.keys() == plain.keys() and all(torch.equal(ck[n], plain[n]) for n in plain)


@pytest.mark.parametrize("cores", [1, 2, 16])
def test_a_small_model_runs_on_the_same_thread_count_on_every_machine(tiny, monkeypatch, cores):
    """Thread count changes float results, so the tiny model's must not follow the machine's
    cores; a real checkpoint's does, unless `model.cpu_threads` fixes it."""
    import os

    from musicgen_lora.model.musicgen import SMALL_MODEL_THREADS, set_threads

    model, _ = tiny
    threads = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    try:
        assert set_threads(model.config) == SMALL_MODEL_THREADS == torch.get_num_threads()
        wide = model.config.__class__.from_dict(model.config.to_dict())
        wide.decoder.hidden_size = 1024
        assert set_threads(wide) == cores
        assert set_threads(wide, 3) == set_threads(model.config, 3) == 3 == torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)


def test_the_codec_gives_the_same_codes_and_audio_on_any_core_count(tiny, monkeypatch):
    """The thread count a process sets (`set_threads`, as `load_model` does) covers the codec:
    decoding on 1, 2 and 3 threads rounds differently (elementwise kernels change path at each
    thread's chunk edge), so a codec following the machine's cores would give other audio on
    another machine. Emulated machines of 1, 3 and 8 cores give the same codes and audio."""
    import os

    from musicgen_lora.model.musicgen import decode_codes, encode_audio, set_threads

    model, _ = tiny
    sr = model.config.audio_encoder.sampling_rate
    t = torch.arange(2 * sr) / sr
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 523.25)])
    audio += 0.05 * torch.randn(audio.shape, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    try:
        codes = encode_audio(model, audio)
        by_threads = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            by_threads.append(decode_codes(model, codes))
        seen = []
        for cores in (1, 3, 8):
            monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
            set_threads(model.config)
            seen.append((encode_audio(model, audio), decode_codes(model, codes)))
    finally:
        torch.set_num_threads(threads)
    assert not torch.equal(by_threads[0], by_threads[1]) or not torch.equal(by_threads[1], by_threads[2])
    assert codes.unique().numel() > 20  # codes that vary, so equality has teeth
    assert all(torch.equal(c, seen[0][0]) and torch.equal(a, seen[0][1]) for c, a in seen[1:])


def test_the_frozen_text_encoder_conditions_training_as_it_conditions_generation():
    """In train mode (Trainer sets it on the whole model) T5's dropout would noise the text
    states; without it they equal the eval-mode states that generation conditions on."""
    from conftest import ROOT
    from musicgen_lora.model.musicgen import load_model, text_encoder_without_dropout

    # not the shared one: a hook stays
    model, tok = load_model(project_params("model", name=str(ROOT / "assets/tiny-musicgen")))
    inputs = text_inputs(tok, ["bright chiptune with square wave arpeggios"])
    with torch.no_grad():
        model.eval()
        states = model.text_encoder(**inputs).last_hidden_state
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model.text_encoder(**inputs).last_hidden_state, states)  # dropout on
        text_encoder_without_dropout(model)
        model.train()
        assert torch.equal(model.text_encoder(**inputs).last_hidden_state, states)
        assert not model.text_encoder.training and model.decoder.training  # the decoder's dropout stays
