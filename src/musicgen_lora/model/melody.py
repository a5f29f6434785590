"""MusicGen melody (`model_type: musicgen_melody`): conditioning on the chroma of a melody.

The melody model has no cross-attention: the text encoder's states and a chroma (per frame, a
one-hot of the dominant of 12 pitch classes, from `MusicgenMelodyFeatureExtractor`) projected to
the decoder's width are put in front of the decoder's audio steps, so its logits cover that prefix
too (`delay.forward_loss` keeps the last steps). Without a chroma, transformers conditions on a
"null" chroma.

- Training conditions every clip on its own chroma, as the HF dreambooth script passes the
  feature extractor's `input_features` for a clip: `encode` computes it once per clip (stored as
  `chroma` in the token shards) and train and the valid loss pass it as `input_features`.
- Evaluation generates every prompt twice, without and with a melody reference (the first valid
  clip), and measures each result's chroma similarity to the reference: the cosine of the mean
  chroma vectors (each the share of frames whose dominant pitch class is that class), 1 for the
  same pitch-class distribution, lower the further apart.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import MusicgenMelodyFeatureExtractor

log = logging.getLogger(__name__)


def chroma_extractor(name: str, revision: str | None, sample_rate: int) -> MusicgenMelodyFeatureExtractor:
    """The checkpoint's own feature extractor (preprocessor_config.json); a directory without one
    gets transformers' defaults at the codec's sample rate, said in one line."""
    try:
        # revision None is the default branch (transformers annotates it as str)
        return MusicgenMelodyFeatureExtractor.from_pretrained(name, revision=revision)
    except OSError:
        log.info(
            f"melody: {name} has no preprocessor_config.json; chroma from MusicgenMelodyFeatureExtractor's "
            f"defaults at {sample_rate} Hz"
        )
        return MusicgenMelodyFeatureExtractor(sampling_rate=sample_rate)


def chroma(extractor: MusicgenMelodyFeatureExtractor, audio, sample_rate: int) -> torch.Tensor:
    """Chroma (B, frames, 12) of clips (B, N) or (B, N, 2) (stereo: of the mid channel)."""
    clips = [np.asarray(a, dtype=np.float32) for a in audio]
    clips = [a.mean(axis=1) if a.ndim == 2 else a for a in clips]
    return extractor(clips, sampling_rate=sample_rate, return_tensors="pt")["input_features"].float()


def chroma_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the mean chroma vectors of two chroma sequences (frames, 12)."""
    return float(torch.nn.functional.cosine_similarity(a.float().mean(0), b.float().mean(0), dim=0))


def reference_chroma(model, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The melody reference's chroma (frames, 12)."""
    return chroma(model.chroma_extractor, [audio], sample_rate)[0].numpy()


def similarity(model, free: np.ndarray, guided: np.ndarray, sample_rate: int, reference: np.ndarray) -> dict:
    """Chroma similarity to the reference of a clip generated without (`free`) and with
    (`guided`) the melody reference."""
    ref = torch.from_numpy(np.asarray(reference))
    free_c, guided_c = chroma(model.chroma_extractor, [free, guided], sample_rate)
    return {
        "melody_chroma_cosine": chroma_cosine(guided_c, ref),
        "melody_chroma_cosine_unconditioned": chroma_cosine(free_c, ref),
    }
