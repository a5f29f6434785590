"""The tiny-model builder: deterministic weights, and a codec decoder that really learns to
round-trip the (frozen) codes instead of collapsing to one output for every input.

Reduced sizes keep the whole file well under a minute on 2 CPU cores; the committed model uses
the same code paths (`train_decoder` is the full build's last codec phase and `--decoder-only`)."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch

from musicgen_lora import corpus
from musicgen_lora.bootstrap import BuildConfig, build_tiny, build_tokenizer, new_model, style_audio
from musicgen_lora.codec_train import (fit_codebooks, quantized_embeddings, reconstruction_quality, reinit_decoder,
                                       train_codec, train_decoder)

SR = 16000
SMALL = dict(batch=4, seconds=0.4)  # decoder batches of the tests: 4 x 0.4 s


def _decoder_hash(codec) -> str:
    h = hashlib.sha256()
    for k, v in sorted(codec.decoder.state_dict().items()):
        h.update(k.encode() + v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_build_is_deterministic(tmp_path):
    """Same seed and sizes -> byte-identical model.safetensors; another seed -> other weights."""
    a = build_tiny(tmp_path / "a", BuildConfig.quick(seed=0))["sha256"]
    b = build_tiny(tmp_path / "b", BuildConfig.quick(seed=0))["sha256"]
    c = build_tiny(tmp_path / "c", BuildConfig.quick(seed=1))["sha256"]
    assert a == b
    assert a != c
    assert (tmp_path / "a" / "tokenizer.json").exists() and (tmp_path / "a" / "config.json").exists()


@pytest.fixture(scope="module")
def codecs():
    """Built once: a codec with trained encoder + k-means codebooks (a few autoencoder steps),
    the same codec with its decoder retrained alone for 60 steps, and a fresh random decoder."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    audio, captions = style_audio(corpus.GENERIC_STYLES, 0, range(2), 4.0, SR)
    base = new_model(build_tokenizer(captions), 0)
    fit_codebooks(base.audio_encoder, audio, 0)
    train_codec(base.audio_encoder, audio, steps=8, seed=0, batch=4, seconds=0.4, ae_share=1.0, decoder_steps=0)
    fresh = copy.deepcopy(base)
    reinit_decoder(fresh.audio_encoder, 0)
    trained = copy.deepcopy(base)
    hist = train_decoder(trained, audio, 60, 0, **SMALL)
    torch.set_num_threads(threads)
    generic = style_audio(corpus.GENERIC_STYLES, 0, range(1000, 1001), 1.0, SR)[0]
    chip = style_audio([corpus.TARGET_STYLE], 0, range(1000, 1002), 1.0, SR)[0]
    return ({"base": base, "trained": trained, "fresh": fresh}, {"generic": generic, "chiptune": chip},
            audio, hist)


def test_decoder_only_training_freezes_codes(codecs):
    """Only decoder weights change: encoder, codebooks (so the codes the LM learned) stay put."""
    models, sets, _, _ = codecs
    base, trained = models["base"].state_dict(), models["trained"].state_dict()
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed and all(k.startswith("audio_encoder.decoder.") for k in changed)
    x = sets["generic"]
    assert torch.equal(quantized_embeddings(models["base"].audio_encoder, x),
                       quantized_embeddings(models["trained"].audio_encoder, x))


def test_decoder_training_beats_fresh_decoder(codecs):
    """60 decoder steps clearly beat a fresh random decoder on held-out generic audio, follow
    the input's spectrum, and give different outputs for different clips (no collapse)."""
    models, sets, _, hist = codecs
    trained = reconstruction_quality(models["trained"], sets["generic"])
    fresh = reconstruction_quality(models["fresh"], sets["generic"])
    assert trained["spectral_distance"] < 0.8 * fresh["spectral_distance"], (trained, fresh)
    assert trained["logmel_corr"] > fresh["logmel_corr"] + 0.3, (trained, fresh)
    assert trained["output_spread"] > 0.3, trained  # dB; a collapsed decoder scores ~0.001
    assert min(hist["out_std"][-10:]) > 1e-3 and hist["loss"][-1] < hist["loss"][0]


def test_decoder_training_is_deterministic(codecs):
    """Same seed -> same decoder weights (hash); another seed -> other weights."""
    models, _, audio, _ = codecs
    hashes = []
    for seed in (0, 0, 1):
        m = copy.deepcopy(models["base"])
        train_decoder(m, audio[:, :SR], 3, seed, **SMALL)
        hashes.append(_decoder_hash(m.audio_encoder))
    assert hashes[0] == hashes[1] != hashes[2]


def test_reconstruction_quality_of_identity_is_perfect():
    """The metric itself: a codec that returned its input would score 0 distance and huge SNR."""
    from musicgen_lora.codec_train import logmel_correlation, spectral_terms

    x = style_audio(["piano"], 0, [0], 1.0, SR)[0]
    log_l1, conv = spectral_terms(x, x.clone())
    assert float(log_l1) == 0.0 and float(conv) == 0.0
    assert logmel_correlation(x, x.clone(), SR) == pytest.approx(1.0, abs=1e-4)
