"""Style as a tagger trained on real music hears it: musicnn (MagnaTagATune) tags and embeddings.

The older style figure, a Fréchet distance of MFCC statistics, measures timbre statistics that
no listener or published number relates to. musicnn (`musicnn.py`) was trained to tag real
recordings ("techno", "piano", "slow", 50 tags), so its tags say in words what a clip sounds
like and its 200-d penultimate embedding places clips in a space learned from music. Here:

- per clip: the tag probabilities and the embedding, each the mean over the clip's 3 s patches
  (a clip shorter than one patch is zero-padded to one);
- `tag_kl` per clip: KL(target || clip) of the tag distributions, audiocraft's KLD idea
  (`kl_div((pred + 1e-6).log(), target)` summed over labels, target first). musicnn's 50 outputs
  are independent sigmoids, so each vector is normalised to sum 1 first (a distribution over
  tags: which tags describe the clip, in what proportion); the 1e-6 goes to both sides, then
  renormalised, so identical distributions give exactly 0; the target is the *mean*
  distribution of the target clips (the generated clips are not paired with target clips). Per
  clip, so best-vs-base differences get paired intervals; 0 = the target's tag profile;
- `style_similarity` per clip: cosine of its embedding to the target clips' mean embedding, so
  single clips can be ranked and the worst found (1 = points where the target's mean does);
- per set: the top tags in words, and `style_fd`, the Fréchet distance of embeddings (FAD-style)
  with its sample sizes; the ridge of `style.frechet_distance` keeps it defined when n < 200.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from . import bootstrap as B
from .musicnn import MIN_SAMPLES, SR, Tagger, clip_tags
from .style import FrechetToTarget, frechet_distance

TAGGER = "MTT_musicnn"
KL_EPS = 1e-6  # audiocraft's epsilon in kl_divergence
TOP_K = 5  # tags named per set
CLIP_TAGS = 3  # tags named per clip row
CAPTION_TAGS = 5  # most tags in an automatic caption
CAPTION_MIN_PROB = 0.1  # a tag below this probability is not worth a caption word (the top tag always is)


@dataclass(frozen=True)
class Profiles:
    """Clip-level musicnn outputs of a set of clips, one row per clip (in the set's row order)."""

    tags: np.ndarray  # (n, 50) tag probabilities, mean over patches
    embeddings: np.ndarray  # (n, 200) penultimate embeddings, mean over patches

    def __len__(self) -> int:
        return len(self.tags)

    @classmethod
    def stack(cls, pairs: list[tuple[np.ndarray, np.ndarray]]) -> "Profiles":
        return cls(np.stack([t for t, _ in pairs]).astype(np.float64), np.stack([e for _, e in pairs]).astype(np.float64))


def clip_profile(tagger: Tagger, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """(tags (50,), embedding (200,)) of one clip at any rate: means over its 3 s patches. A stereo
    clip (N, 2) is tagged on its mid channel, (L + R) / 2, as the clip metrics measure it."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] in (1, 2):
        x = x.mean(axis=1)
    need = int(np.ceil(MIN_SAMPLES * sr / SR))  # one patch once resampled to 16 kHz
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    probs, emb = tagger(x, sr)
    return clip_tags(probs), emb.mean(axis=0)


def stream_profile(tagger: Tagger, blocks: Iterable[np.ndarray]) -> np.ndarray:
    """clip_profile's tags (50,) of 16 kHz mono audio arriving in blocks (a recording of any
    length in a block's memory): the same figures as clip_profile on the joined audio."""
    blocks = iter(blocks)
    head, size = [], 0
    for block in blocks:  # audio shorter than a patch is padded as clip_profile pads it
        head.append(block)
        size += len(block)
        if size >= MIN_SAMPLES:
            break
    if size < MIN_SAMPLES:
        return clip_profile(tagger, np.concatenate(head) if head else np.zeros(0, np.float32), SR)[0]
    return clip_tags(tagger.stream(itertools.chain(head, blocks))[0])


def tag_distribution(tags: np.ndarray) -> np.ndarray:
    """Tag probabilities normalised to sum 1 along the last axis."""
    t = np.asarray(tags, dtype=np.float64)
    return t / np.maximum(t.sum(axis=-1, keepdims=True), 1e-12)


def kl_to_target(tags: np.ndarray, target_tags: np.ndarray) -> np.ndarray:
    """Per clip KL(target mean || clip) in nats of the normalised tag distributions, shape (n,)."""
    p = tag_distribution(tag_distribution(np.asarray(target_tags).mean(axis=0)) + KL_EPS)
    q = tag_distribution(tag_distribution(np.atleast_2d(tags)) + KL_EPS)
    return np.maximum(np.sum(p * (np.log(p) - np.log(q)), axis=-1), 0.0)


def style_similarity(embeddings: np.ndarray, target_embeddings: np.ndarray) -> np.ndarray:
    """Per clip cosine similarity of its embedding to the target clips' mean embedding, shape (n,)."""
    e = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    c = np.asarray(target_embeddings, dtype=np.float64).mean(axis=0)
    return e @ c / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(c), 1e-12)


def top_tags(tags: np.ndarray, names: list[str], k: int = TOP_K) -> list[list]:
    """The k most probable tags of a set (mean over its clips) or of one clip: [[name, prob], ...]."""
    p = np.asarray(tags, dtype=np.float64)
    p = p.mean(axis=0) if p.ndim == 2 else p
    return [[names[i], round(float(p[i]), 3)] for i in np.argsort(-p, kind="stable")[:k]]


def caption_from_tags(tags: np.ndarray, names: list[str]) -> str:
    """A caption from a recording's tags ("techno, electronic, fast"): up to CAPTION_TAGS tags with
    probability >= CAPTION_MIN_PROB, most probable first; at least the top tag."""
    ranked = top_tags(tags, names, CAPTION_TAGS)
    return ", ".join(n for i, (n, p) in enumerate(ranked) if i == 0 or p >= CAPTION_MIN_PROB)


def clip_measures(p: Profiles, target: Profiles, names: list[str]) -> list[dict]:
    """Per clip: style_similarity, tag_kl and its top tags in words (rounded: rows stay small)."""
    sim = style_similarity(p.embeddings, target.embeddings)
    kl = kl_to_target(p.tags, target.tags)
    return [
        {
            "style_similarity": round(float(s), 4),
            "tag_kl": round(float(k), 4),
            "top_tags": [n for n, _ in top_tags(t, names, CLIP_TAGS)],
        }
        for s, k, t in zip(sim, kl, p.tags)
    ]


def set_measures(p: Profiles, target: Profiles, names: list[str]) -> dict:
    """Per set: style_fd (musicnn-embedding Fréchet distance to the target clips; None below 2 clips)
    with n_generated and n_target, and the top tags in words."""
    fd = frechet_distance(p.embeddings, target.embeddings) if len(p) >= 2 and len(target) >= 2 else None
    return {
        "style_fd": None if fd is None else round(fd, 4),
        "n_generated": len(p),
        "n_target": len(target),
        "top_tags": top_tags(p.tags, names),
    }


def style_fd_interval(
    base: np.ndarray, model: np.ndarray, target: np.ndarray, seed: int, resamples: int = B.RESAMPLES
) -> B.Interval | None:
    """style_fd(model) - style_fd(base) with a paired bootstrap interval: the generated clips are
    resampled in (prompt, seed) pairs, base and model with the same draws; the target set stays
    fixed, so the interval is the spread from generation alone. Rows of `base` and `model` must be
    the same prompts and seeds in the same order. None below 2 pairs."""
    if len(base) < 2 or len(target) < 2:
        return None
    fd = FrechetToTarget(target, np.vstack([base, model]))
    return B.paired_stat_diff(fd, base, model, resamples, seed)
