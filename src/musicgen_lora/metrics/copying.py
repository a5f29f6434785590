"""Does a generated clip copy its training audio? Verbatim runs of codec frames, found by hashing.

Every window of `WINDOW` frames (all codebooks together) of the training codes is hashed once
into a sorted array; a generated clip's windows are looked up with a binary search, so 10 hours
of training audio (1.8 M windows at 50 Hz, 16 bytes each: ~30 MB) are searched in milliseconds
per clip, never pairwise. Two figures per clip:
- `copy_longest_s`: the longest run of consecutive frames that continues one training clip
  verbatim (window after window, each found at the next position of the same clip), in seconds;
- `copy_share`: the share of the clip's windows found anywhere in the training codes.
Windows made only of the codec's silence codes are left out: silence is the same everywhere.
The same figures for base's clips (it never heard this data) and for held-out valid clips (the
same music, not trained on) say what chance and shared style give; a copy is far above both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COPY_FLAG = "near_copy"  # a clip's flag where both figures say it copies a training clip
LOCATIONS = ("copy_clip", "copy_frame", "copy_nn_clip")  # where a copy is (indices), not measures: never averaged
WINDOW = 10  # frames per hashed window: 0.2 s at 50 Hz; a run of them is a verbatim stretch
_MIX = np.uint64(0x9E3779B97F4A7C15)


def window_hashes(codes: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """A 64-bit hash of every `window`-frame window of codes (K, T): (T - window + 1,) uint64.
    Polynomial hashing over the frames' K codes; equal windows always hash equal."""
    codes = np.asarray(codes, dtype=np.uint64)
    k, t = codes.shape
    if t < window:
        return np.zeros(0, dtype=np.uint64)
    frame = np.zeros(t, dtype=np.uint64)
    for q in range(k):  # one 64-bit value per frame from its K codes
        frame = frame * np.uint64(1_000_003) + codes[q] + np.uint64(1)
    out = np.zeros(t - window + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(window):
            out = out * _MIX + frame[i : t - window + 1 + i]
    return out


def silent_window(silence: np.ndarray, window: int = WINDOW) -> np.uint64:
    """The hash of a window made only of the codec's silence codes (K,)."""
    return window_hashes(np.repeat(np.asarray(silence)[:, None], window, 1), window)[0]


@dataclass
class TrainingIndex:
    """Every training window's hash, sorted, with the (clip, frame) it came from."""

    hashes: np.ndarray  # (N,) uint64, sorted
    clip: np.ndarray  # (N,) int32
    frame: np.ndarray  # (N,) int32

    @classmethod
    def build(cls, clips: list[np.ndarray], silence: np.ndarray | None = None, window: int = WINDOW) -> "TrainingIndex":
        """From each training clip's codes (K, T), real frames only."""
        silent = None if silence is None else silent_window(silence, window)
        parts = []
        for i, codes in enumerate(clips):
            h = window_hashes(codes, window)
            keep = np.ones(len(h), dtype=bool) if silent is None else h != silent
            parts.append((h[keep], np.full(keep.sum(), i, np.int32), np.nonzero(keep)[0].astype(np.int32)))
        hashes = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.uint64)
        clip = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
        frame = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int32)
        order = np.argsort(hashes, kind="stable")
        return cls(hashes[order], clip[order], frame[order])

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, clip, frame) of each hash: the first training window with it (-1 where none)."""
        if not len(self.hashes):
            none = np.full(len(hashes), -1)
            return np.zeros(len(hashes), bool), none, none
        pos = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = self.hashes[pos] == hashes
        clip = np.where(found, self.clip[pos], -1)
        frame = np.where(found, self.frame[pos], -1)
        return found, clip, frame


def copy_figures(
    codes: np.ndarray, index: TrainingIndex, frame_rate: float, silence: np.ndarray | None = None, window: int = WINDOW
) -> dict:
    """copy_longest_s, copy_share and where the longest run is in the training set (clip index,
    start frame; -1 where nothing was found) for one generated clip's codes (K, T)."""
    h = window_hashes(codes, window)
    counted = np.ones(len(h), dtype=bool)  # silent windows keep their place (runs need it) but never count
    if silence is not None and len(h):
        counted = h != silent_window(silence, window)
    found, clip, frame = index.lookup(h)
    found &= counted
    best, best_at, run, start = 0, (-1, -1), 0, 0
    for i in range(len(h)):
        continues = found[i] and run and clip[i] == clip[i - 1] and frame[i] == frame[i - 1] + 1
        if found[i] and not continues:
            run, start = 1, i
        elif continues:
            run += 1
        else:
            run = 0
        if run > best:
            best, best_at = run, (int(clip[start]), int(frame[start]))
    frames = best + window - 1 if best else 0
    share = float(found.sum() / counted.sum()) if counted.any() else 0.0
    return {
        "copy_longest_s": round(frames / frame_rate, 3),
        "copy_share": round(share, 4),
        "copy_clip": best_at[0],
        "copy_frame": best_at[1],
    }


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - a @ b.T


def neighbour_limit(train_emb: np.ndarray, sources: list[str], pct: float = 5.0) -> float | None:
    """How near training clips sit to each other in musicnn's embedding: the `pct` percentile of
    each clip's distance to its nearest clip of another recording. A generated clip nearer a
    training clip than that sounds like that clip. None below 3 recordings."""
    if len(set(sources)) < 3:
        return None
    d = cosine_distances(train_emb, train_emb)
    same = np.array(sources)[:, None] == np.array(sources)[None, :]
    d[same] = np.inf
    return float(np.percentile(d.min(axis=1), pct))


@dataclass
class CopyCheck:
    """Everything the copy check needs about the training set, and its two limits: a verbatim run
    longer than `run_limit_s` and a nearest training clip nearer than `nn_limit` flag `near_copy`."""

    index: TrainingIndex
    silence: np.ndarray
    frame_rate: float
    train_emb: np.ndarray | None = None  # musicnn embeddings of the training clips, in index order
    nn_limit: float | None = None
    run_limit_s: float | None = None

    def measure(self, codes: np.ndarray) -> dict:
        return copy_figures(codes, self.index, self.frame_rate, self.silence)

    def nearest(self, emb: np.ndarray) -> dict:
        """The nearest training clip of a clip's musicnn embedding, and its cosine distance."""
        if self.train_emb is None or not len(self.train_emb):
            return {}
        d = cosine_distances(emb[None], self.train_emb)[0]
        return {"copy_nn_clip": int(d.argmin()), "copy_nn_distance": round(float(d.min()), 4)}

    def is_copy(self, m: dict) -> bool:
        """Both say so: a long verbatim run, and heard nearer a training clip than they are to each other."""
        return (
            self.run_limit_s is not None
            and self.nn_limit is not None
            and m.get("copy_longest_s", 0) > self.run_limit_s
            and m.get("copy_nn_distance", 1) < self.nn_limit
        )


def run_limit(reference_runs: list[float], floor_s: float = 1.0) -> float:
    """A verbatim run counts as copying past twice the longest run of clips that cannot have
    copied (base's, never trained on this data; the held-out clips, the same music unseen), and
    never below `floor_s`."""
    return round(max([floor_s] + [2 * r for r in reference_runs]), 3)


def copies_of(rows: list[dict], copy_ref: dict) -> list[dict]:
    """Every clip flagged `near_copy` (comparison_results rows) with the training clip it copies:
    its recording, the segment clip to play and where in it the verbatim run starts."""
    train, rate = copy_ref.get("train_clips", []), copy_ref.get("frame_rate")
    out = []
    for r in rows:
        if COPY_FLAG not in r.get("flags", []):
            continue
        m = r["metrics"]
        i = m.get("copy_clip", -1)
        t = train[i] if 0 <= i < len(train) else {}
        start = round(m["copy_frame"] / rate, 2) if rate and m.get("copy_frame", -1) >= 0 else None
        out.append(
            {
                "model": r["model"],
                "prompt": r["prompt"],
                "sample": r.get("sample", 0),
                "file": r["file"],
                "longest_s": m.get("copy_longest_s"),
                "share": m.get("copy_share"),
                "nn_distance": m.get("copy_nn_distance"),
                "training": {**t, "run_starts_s": start},
            }
        )
    return out
