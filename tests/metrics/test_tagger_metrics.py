"""Style measures from musicnn on synthetic audio: identical sets are at distance 0, and a clip
like the target clips ranks above noise."""

import numpy as np
import pytest

from musicgen_lora.metrics import tagger_metrics as TM
from musicgen_lora.metrics.musicnn import Tagger

SR = 16000


def arpeggio(root: float, seconds: float = 3.0, bpm: float = 150.0) -> np.ndarray:
    """Square-wave arpeggio (root, major third, fifth, octave) with a pulse bass: chiptune-like."""
    t = np.arange(int(seconds * SR)) / SR
    step = 60 / bpm / 2
    notes = root * np.array([1, 1.26, 1.5, 2])[(t // step).astype(int) % 4]
    lead = np.sign(np.sin(2 * np.pi * np.cumsum(notes) / SR))
    bass = np.sign(np.sin(2 * np.pi * root / 2 * t)) * (t % (2 * step) < step)
    return (0.2 * lead + 0.15 * bass).astype(np.float32)


@pytest.fixture(scope="module")
def tagger():
    return Tagger.load(TM.TAGGER)


@pytest.fixture(scope="module")
def target(tagger):
    return TM.Profiles.stack([TM.clip_profile(tagger, arpeggio(r), SR) for r in (220, 262, 294, 330)])


def test_identical_sets_are_at_distance_zero(target, tagger):
    assert np.allclose(TM.kl_to_target(target.tags.mean(0), target.tags), 0, atol=1e-5)
    assert TM.set_measures(target, target, tagger.tags)["style_fd"] == pytest.approx(0, abs=1e-3)
    assert np.all(TM.kl_to_target(target.tags, target.tags) >= -1e-9)  # a KL is never negative
    m = TM.set_measures(target, target, tagger.tags)
    assert m["n_generated"] == m["n_target"] == 4 and len(m["top_tags"]) == TM.TOP_K
    assert all(isinstance(n, str) and 0 <= p <= 1 for n, p in m["top_tags"])


def test_a_target_like_clip_ranks_above_noise(tagger, target):
    rng = np.random.default_rng(0)
    clips = [arpeggio(247), (0.3 * rng.standard_normal(3 * SR)).astype(np.float32)]
    p = TM.Profiles.stack([TM.clip_profile(tagger, c, SR) for c in clips])
    rows = TM.clip_measures(p, target, tagger.tags)
    assert rows[0]["style_similarity"] > rows[1]["style_similarity"]
    assert rows[0]["tag_kl"] < rows[1]["tag_kl"]
    assert len(rows[0]["top_tags"]) == TM.CLIP_TAGS and set(rows[0]) == {"style_similarity", "tag_kl", "top_tags"}
    assert TM.set_measures(p, target, tagger.tags)["style_fd"] > 0


def test_short_and_resampled_clips_are_tagged(tagger):
    tags, emb = TM.clip_profile(tagger, arpeggio(220, seconds=1.0), SR)  # zero-padded to one patch
    assert tags.shape == (50,) and emb.shape == (200,) and np.isfinite(emb).all()
    at_32k = np.repeat(arpeggio(220), 2)
    assert TM.clip_profile(tagger, at_32k, 32000)[0].shape == (50,)
    mono = arpeggio(220)
    stereo = np.stack([mono, mono], axis=1)  # (N, 2): tagged on its mid channel
    assert np.allclose(TM.clip_profile(tagger, stereo, SR)[1], TM.clip_profile(tagger, mono, SR)[1], atol=1e-5)


def test_caption_from_tags_names_the_top_tags():
    names = ["techno", "piano", "fast", "slow", "beat"]
    assert TM.caption_from_tags(np.array([0.9, 0.02, 0.5, 0.05, 0.3]), names) == "techno, fast, beat"
    assert TM.caption_from_tags(np.array([0.05, 0.02, 0.01, 0.0, 0.0]), names) == "techno"  # the top tag always


def test_style_fd_interval_pairs_the_rows(target):
    rng = np.random.default_rng(1)
    base = target.embeddings + rng.normal(0, 2.0, target.embeddings.shape)
    iv = TM.style_fd_interval(
        base, target.embeddings + rng.normal(0, 0.1, base.shape), target.embeddings, seed=0, resamples=200
    )
    assert iv.n == 4 and iv.delta < 0 and iv.low <= iv.delta <= iv.high
    assert TM.style_fd_interval(base[:1], base[:1], target.embeddings, seed=0) is None
