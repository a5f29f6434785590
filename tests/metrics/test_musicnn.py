"""The PyTorch musicnn port against the original TensorFlow model (no TensorFlow needed here).

assets/musicnn/reference_outputs.safetensors holds what musicnn 0.1.0's own extractor (librosa
front end + TF graph + checkpoint) gave on the committed clips; tools/musicnn_convert.py made it.
"""

import hashlib
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from musicgen_lora.metrics import musicnn
from musicgen_lora.metrics.musicnn import MIN_SAMPLES, SR, Tagger, clip_tags, log_mel, top_tags

ASSETS = musicnn.ASSETS
CLIPS = ("piano", "rock", "strings", "techno")
# Tolerances, absolute.  The log-mel input is reproduced bit for bit (checked below), so what is
# left is float32 rounding: TF (oneDNN) and PyTorch sum the convolutions and dense layers in other
# orders, ~1e-7 relative per op, compounded over 8 layers and 753x187 pooled features.  Measured
# on the committed clips: probabilities 6e-6, embeddings 1.6e-5 (values up to ~4); 1e-4 leaves
# room for other CPUs' kernels while any real error (a transposed kernel, a wrong padding or BN
# epsilon, a frame off) moves them by 1e-2 or more.
PROB_ATOL = 1e-4
EMB_ATOL = 1e-4


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768  # as librosa.load


@pytest.fixture(scope="module")
def reference():
    with safe_open(str(ASSETS / "reference_outputs.safetensors"), framework="np") as f:
        meta = json.loads(f.metadata()["musicnn"])
        return meta, {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def clips(reference):
    meta, _ = reference
    out = {}
    for name in CLIPS:
        path = ASSETS / "reference_clips" / f"{name}.wav"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["clips_sha256"][name], f"{path} changed"
        out[name] = read_wav(path)
    return out


@pytest.fixture(scope="module")
def taggers():
    return {name: Tagger.load(name) for name in musicnn.MODELS}


def test_front_end_is_musicnns(clips, reference):
    """The log-mel of a clip equals librosa's + musicnn's float16 rounding; a flipped float16
    rounding (another BLAS summing the mel product differently) would move a bin by <= 2.2e-4."""
    ours, theirs = log_mel(clips["strings"]), reference[1]["strings/logmel"]
    assert ours.shape == theirs.shape == (1 + len(clips["strings"]) // 256, 96)
    assert np.abs(ours - theirs).max() <= 5e-4
    assert np.mean(ours == theirs) >= 0.999


@pytest.mark.parametrize("model", musicnn.MODELS)
def test_port_reproduces_tensorflow(model, clips, reference, taggers):
    tagger, ref = taggers[model], reference[1]
    for name, audio in clips.items():
        probs, emb = tagger(audio, SR)
        ref_probs, ref_emb = ref[f"{name}/{model}/probs"], ref[f"{name}/{model}/penultimate"]
        assert probs.shape == ref_probs.shape == ((1 + len(audio) // 256 - 187) // 187 + 1, 50)
        assert emb.shape == ref_emb.shape
        assert np.abs(probs - ref_probs).max() < PROB_ATOL, (name, np.abs(probs - ref_probs).max())
        assert np.abs(emb - ref_emb).max() < EMB_ATOL, (name, np.abs(emb - ref_emb).max())
        assert np.abs(np.diff(emb, axis=0)).max() > 0.1  # patches differ: no patch's features reused


def test_patches_are_independent_of_chunking(clips, taggers, monkeypatch):
    probs, emb = taggers["MSD_musicnn"](clips["piano"], SR)
    monkeypatch.setattr(musicnn, "CHUNK", 2)  # 3 patches: chunks of 2 and 1
    probs_2, emb_2 = taggers["MSD_musicnn"](clips["piano"], SR)
    assert probs.shape == probs_2.shape == (3, 50)
    np.testing.assert_allclose(probs_2, probs, atol=1e-6)
    np.testing.assert_allclose(emb_2, emb, atol=1e-5)


def test_tags_and_top_tags(clips, taggers):
    mtt = taggers["MTT_musicnn"]
    assert mtt.tags == json.loads((ASSETS / "tags.json").read_text())["MTT_musicnn"] and len(mtt.tags) == 50
    probs, _ = mtt(clips["techno"], SR)
    top = mtt.top_tags(probs, k=3)
    assert [t for t, _ in top] == ["techno", "electronic", "synth"]
    assert top == top_tags(clip_tags(probs), mtt.tags, 3)
    assert top[0][1] == pytest.approx(float(probs[:, mtt.tags.index("techno")].mean()))


def test_other_sample_rate_is_resampled(clips, taggers):
    """A 22.05 kHz copy of a clip, declared as such, is resampled to 16 kHz and tags like the original.
    Not to 1e-4: the resampler round trip alters the 7.9-8 kHz band edge and the quiet bins that
    log10(1 + 10000 * mel) magnifies (measured: clip-mean tags move by <= 0.04 on this clip, 0.07 on
    the piano).  The same samples declared as 16 kHz are a slower, lower signal: more patches, other tags."""
    import torchaudio.functional as AF

    tagger, audio = taggers["MTT_musicnn"], clips["techno"]
    audio_22k = AF.resample(torch.from_numpy(audio), SR, 22050).numpy()
    probs, _ = tagger(audio, SR)
    probs_22k, emb_22k = tagger(audio_22k, 22050)
    assert probs_22k.shape == probs.shape and emb_22k.shape == (probs.shape[0], 200)
    assert np.abs(clip_tags(probs_22k) - clip_tags(probs)).max() < 0.06
    assert [t for t, _ in tagger.top_tags(probs_22k, 3)] == [t for t, _ in tagger.top_tags(probs, 3)]
    wrong, _ = tagger(audio_22k, SR)
    assert wrong.shape[0] > probs.shape[0]
    assert np.abs(clip_tags(wrong) - clip_tags(probs)).max() > 0.15


def test_short_audio_is_one_clear_error(taggers):
    tagger = taggers["MTT_musicnn"]
    rng = np.random.default_rng(0)
    probs, _ = tagger(0.1 * rng.standard_normal(MIN_SAMPLES).astype(np.float32), SR)  # exactly one patch
    assert probs.shape == (1, 50)
    for audio, sr in [(rng.standard_normal(MIN_SAMPLES - 1), SR), (rng.standard_normal(int(2.5 * 44100)), 44100)]:
        with pytest.raises(ValueError, match=r"too short for musicnn: .* at least 47616 samples \(2\.976 s"):
            tagger(0.1 * audio.astype(np.float32), sr)


def test_bad_inputs_and_missing_weights(taggers, tmp_path):
    with pytest.raises(ValueError, match="mono float audio"):
        taggers["MTT_musicnn"](np.zeros((2, 48000), np.float32), SR)
    with pytest.raises(ValueError, match="mono float audio"):
        taggers["MTT_musicnn"](np.zeros(48000, np.int16), SR)
    with pytest.raises(ValueError, match="unknown musicnn model"):
        Tagger.load("MTT_vgg")
    with pytest.raises(FileNotFoundError, match="musicnn weights not found"):
        Tagger.load("MTT_musicnn", assets=tmp_path)
