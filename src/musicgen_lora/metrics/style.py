"""Set-level metrics: Frechet distance of features, MFCC timbre statistics, codec-token statistics.

These compare *sets* of clips (generated vs. training) rather than judging one clip:
"style transfer" / "timbre" via the Frechet distance between MFCC-statistic sets, and
"stability" / collapse via entropy, histograms and Jensen-Shannon divergence of the codec
tokens (EnCodec codes, shape (K codebooks, T frames)).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import scipy.linalg
import torch
import torchaudio.transforms as T

from .signal import checked_audio

_EPS = 1e-12


def _finite_matrix(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (n, d) feature array, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 feature rows to estimate a covariance, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: features contain NaN or infinite values")
    return arr


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID / FAD formula).

    Formula: ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)`` with
    ``S = cov + eps*I`` (the eps ridge keeps the estimate defined when n < d, i.e. a few clips
    with many features). Matrix square roots via ``scipy.linalg.sqrtm`` (real part taken; the
    symmetric form has the same trace as ``sqrtm(S_a S_b)`` but is numerically better behaved).
    Result clipped at 0. Detects a style/timbre mismatch between generated and reference clips
    (e.g. ``mfcc_stats`` of each clip): 0 for identical sets, large for unlike sets.
    Raises ValueError for fewer than 2 rows, mismatched dimensions or non-finite values.
    """
    a = _finite_matrix(feats_a, "feats_a")
    b = _finite_matrix(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    d = a.shape[1]
    ridge = eps * np.eye(d)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False)) + ridge
    cov_b = np.atleast_2d(np.cov(b, rowvar=False)) + ridge
    diff = a.mean(axis=0) - b.mean(axis=0)
    sqrt_a = np.real(scipy.linalg.sqrtm(cov_a))
    middle = sqrt_a @ cov_b @ sqrt_a
    covmean = np.real(scipy.linalg.sqrtm((middle + middle.T) / 2.0))
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    if not np.isfinite(value):
        raise ValueError("frechet_distance: computation produced a non-finite value")
    return max(0.0, value)


@lru_cache(maxsize=8)
def _mfcc_transform(sr: int, n_mfcc: int) -> T.MFCC:
    n_fft = 1 << int(np.ceil(np.log2(0.032 * sr)))  # ~32 ms window
    melkwargs = {"n_fft": n_fft, "hop_length": n_fft // 2, "n_mels": max(64, n_mfcc), "f_min": 20.0}
    return T.MFCC(sample_rate=sr, n_mfcc=n_mfcc, melkwargs=melkwargs)


def mfcc_stats(audio: np.ndarray, sr: int, n_mfcc: int = 20) -> np.ndarray:
    """Timbre summary of one clip: ``[mean_t(MFCC), std_t(MFCC)]``, a vector of 2*n_mfcc floats.

    MFCCs from ``torchaudio.transforms.MFCC`` (64 mel bands, ~32 ms Hann window, 50% hop,
    dB-scaled mels, orthonormal DCT-II). The mean captures the spectral envelope (timbre),
    the std its variability. Feed rows of these to ``frechet_distance`` to detect a clip set
    whose timbre/style differs from the reference. Raises ValueError for invalid audio.
    """
    x = checked_audio(audio, sr, 0.064, "mfcc_stats")
    if n_mfcc < 1:
        raise ValueError(f"n_mfcc must be >= 1, got {n_mfcc}")
    with torch.no_grad():
        m = _mfcc_transform(int(sr), int(n_mfcc))(torch.from_numpy(x.astype(np.float32)))
    m = m.double().numpy()
    out = np.concatenate([m.mean(axis=1), m.std(axis=1)])
    if not np.isfinite(out).all():
        raise ValueError("mfcc_stats: non-finite MFCC values")
    return out


def _codes(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"codes: expected a non-empty (K, T) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"codes: expected integer codes, got dtype {arr.dtype}")
    if codebook_size < 1 or arr.min() < 0 or arr.max() >= codebook_size:
        raise ValueError(f"codes: values must lie in [0, {codebook_size}), got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def code_histogram(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Per-codebook token distribution: ``counts[k, c] / T``, shape (K, codebook_size), rows sum to 1.

    numpy ``bincount`` per codebook. Compare generated vs. training histograms with
    ``js_divergence`` to detect token-distribution drift (e.g. a LoRA that overuses a few codes).
    """
    arr = _codes(codes, codebook_size)
    hist = np.stack([np.bincount(row, minlength=codebook_size) for row in arr]).astype(np.float64)
    return hist / arr.shape[1]


def code_entropy(codes: np.ndarray, codebook_size: int) -> list[float]:
    """Per-codebook Shannon entropy of the token histogram in bits: ``-sum_c p_c log2 p_c``.

    numpy only. 0 for a constant stream, log2(codebook_size) for uniform use of all codes.
    Detects collapse/instability: generation stuck on one or a few tokens (repetition, silence).
    """
    out = []
    for p in code_histogram(codes, codebook_size):
        nz = p[p > 0]
        out.append(float(max(0.0, -(nz * np.log2(nz)).sum())))
    return out


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (range [0, 1]): ``0.5 KL(p||m) + 0.5 KL(q||m)``, m=(p+q)/2.

    numpy only; a tiny eps (1e-12) is added to both before normalising so zero bins are safe.
    0 for identical distributions, ~1 for disjoint support. Detects distribution drift between
    generated and reference token histograms (or any other histogram). Raises ValueError for
    mismatched shapes, negative/non-finite entries or an all-zero input.
    """
    a = np.asarray(p, dtype=np.float64).ravel()
    b = np.asarray(q, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"js_divergence: shapes differ or are empty: {a.shape} vs {b.shape}")
    for name, v in (("p", a), ("q", b)):
        if not np.isfinite(v).all() or (v < 0).any() or v.sum() <= 0:
            raise ValueError(f"js_divergence: {name} must be finite, non-negative and not all zero")
    a = (a + _EPS) / (a + _EPS).sum()
    b = (b + _EPS) / (b + _EPS).sum()
    m = 0.5 * (a + b)
    js = 0.5 * np.sum(a * np.log2(a / m)) + 0.5 * np.sum(b * np.log2(b / m))
    return float(min(1.0, max(0.0, js)))


def silence_code_share(codes: np.ndarray, silence_codes: Sequence[int]) -> float:
    """Share of time steps t where ``codes[k, t] == silence_codes[k]`` for every codebook k.

    numpy only. ``silence_codes`` are the tokens the codec emits for digital silence (encode a
    block of zeros once to find them). Detects generations that are mostly codec-silence even
    when the decoded audio has a faint noise floor. Raises ValueError if K does not match.
    """
    arr = np.asarray(codes)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"codes: expected a non-empty (K, T) array, got shape {arr.shape}")
    sil = np.asarray(list(silence_codes), dtype=np.int64)
    if sil.shape != (arr.shape[0],):
        raise ValueError(f"silence_codes: need {arr.shape[0]} codes (one per codebook), got {sil.size}")
    return float(np.all(arr == sil[:, None], axis=0).mean())


class FrechetToTarget:
    """`frechet_distance(rows, target)` for many sets of rows against one fixed target, exact and fast.

    A bootstrap asks for thousands of Fréchet distances of resampled sets to the same target; in a
    200-d embedding each is a 200x200 matrix square root. With n rows per set the covariances have
    rank < n, so everything but the ridge lives in the span U of the centred rows (of the target and
    of `span`, the rows every set is drawn from): there the distance is computed in r = dim U <= n_a +
    n_b dimensions, and the d - r directions outside U, where both ridged covariances are eps * I,
    add exactly (d - r) * eps to the trace of the square root. Same formula and ridge as
    `frechet_distance`, to floating-point accuracy (tested).
    """

    def __init__(self, target: np.ndarray, span: np.ndarray, eps: float = 1e-6):
        b = _finite_matrix(target, "target")
        s = np.asarray(span, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] != b.shape[1]:
            raise ValueError(f"span: expected (n, {b.shape[1]}) rows, got shape {s.shape}")
        self.d, self.eps, self.mu_b = b.shape[1], eps, b.mean(axis=0)
        centred = np.vstack([b - self.mu_b, s - s.mean(axis=0)])
        _, sv, vt = np.linalg.svd(centred, full_matrices=False)
        self.q = vt[sv > sv.max() * 1e-9].T if sv.size and sv.max() > 0 else np.zeros((self.d, 0))
        cov_b = np.atleast_2d(np.cov(b, rowvar=False))
        w, v = np.linalg.eigh(self.q.T @ cov_b @ self.q + eps * np.eye(self.q.shape[1]))
        self.root_b = (v * np.sqrt(np.maximum(w, 0))) @ v.T
        self.trace_b = float(np.trace(cov_b)) + self.d * eps

    def __call__(self, rows: np.ndarray) -> float:
        a = np.asarray(rows, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] != self.d:
            raise ValueError(f"rows: expected (n >= 2, {self.d}), got shape {a.shape}")
        xc = a - a.mean(axis=0)
        proj = xc @ self.q
        if np.sum((xc - proj @ self.q.T) ** 2) > 1e-9 * max(1.0, np.sum(xc**2)):
            raise ValueError("rows: not drawn from the span this FrechetToTarget was built with")
        r = self.q.shape[1]
        cov_a = proj.T @ proj / (a.shape[0] - 1) + self.eps * np.eye(r)
        roots = np.sqrt(np.maximum(np.linalg.eigvalsh(self.root_b @ cov_a @ self.root_b), 0)).sum()
        diff = a.mean(axis=0) - self.mu_b
        trace_a = float(np.sum(xc**2)) / (a.shape[0] - 1) + self.d * self.eps
        value = float(diff @ diff + trace_a + self.trace_b - 2.0 * (roots + (self.d - r) * self.eps))
        return max(0.0, value)


def self_distance(feats: np.ndarray, seed: int, splits: int = 20) -> dict | None:
    """The Fréchet distance between two random halves of one set (the target clips), averaged
    over `splits` seeded splits, with the 2.5-97.5 percentile range of the splits: what a set of
    this size scores against music of its own kind (a style distance cannot be expected lower).
    None below 4 rows."""
    if len(feats) < 4:  # before the covariance's own check, which stops below 2
        return None
    x = _finite_matrix(feats, "feats")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(splits):
        order = rng.permutation(len(x))
        values.append(frechet_distance(x[order[: len(x) // 2]], x[order[len(x) // 2 :]]))
    return {
        "mean": round(float(np.mean(values)), 4),
        "range95": [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)],
        "splits": splits,
        "n": len(x),
    }
