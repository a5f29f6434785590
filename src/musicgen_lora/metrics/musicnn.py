"""musicnn music taggers (Pons & Serra 2019) in PyTorch: tag probabilities and embeddings of audio.

musicnn (PyPI `musicnn` 0.1.0, ISC license) ships TensorFlow 1.x checkpoints trained on
MagnaTagATune (`MTT_musicnn`) and the Million Song Dataset (`MSD_musicnn`), 50 tags each.
`tools/musicnn_convert.py` turned them into `assets/musicnn/<name>.safetensors` once; this
module re-implements musicnn's front end and network with torch + numpy only, so the project
never needs TensorFlow or librosa.  The test suite checks it against the
original model's outputs recorded in `assets/musicnn/reference_outputs.safetensors`.

Front end, as `musicnn.extractor.batch_data` with librosa 0.8 computes it: 16 kHz mono float32,
STFT with a periodic Hann window of 512 points, hop 256, centred with reflect padding, power
spectrum, librosa's Slaney-style 96-band mel filterbank (0-8 kHz, area-normalised), the mel
values rounded to float16 (musicnn stored its training spectrograms that way), then
`log10(1 + 10000 * mel)` in float32.  The log-mel is cut into non-overlapping patches of 187
frames (3 s); a trailing part shorter than a patch is dropped, as musicnn does.

    tagger = Tagger.load("MTT_musicnn")
    probs, emb = tagger(audio, sr)          # (P, 50) per 3 s patch, (P, 200) 'penultimate'
    tagger.top_tags(clip_tags(probs), k=5)  # [("techno", 0.93), ...]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

SR = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
N_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn's extractor
MIN_SAMPLES = (N_FRAMES - 1) * HOP  # the fewest samples that give 187 centred frames (2.976 s)
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization's default
MODELS = ("MTT_musicnn", "MSD_musicnn")
CHUNK = 16  # patches per forward pass (bounds memory on long audio)
# The weights live in the repository, not in the package: <repo>/assets/musicnn, found from this
# file (src/musicgen_lora/metrics/musicnn.py) because the working directory is not reliable.
ASSETS = Path(__file__).resolve().parents[3] / "assets" / "musicnn"


_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0  # Slaney's mel scale (librosa's default, htk=False):
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # linear below 1 kHz, logarithmic above; constants computed
_LOGSTEP = np.log(6.4) / 27.0  # as librosa computes them (so the filterbank is bit-exact)


def _hz_to_mel(f: float) -> float:
    return _MIN_LOG_MEL + np.log(f / _MIN_LOG_HZ) / _LOGSTEP if f >= _MIN_LOG_HZ else f / _F_SP


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    log = m >= _MIN_LOG_MEL
    return np.where(log, _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.where(log, m, _MIN_LOG_MEL) - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=512, n_mels=96) (norm='slaney', float32), bit for bit:
    triangles computed in float64 and stored as float32, then scaled by the float64 area norm."""
    fft_freqs = np.linspace(0, SR / 2, 1 + N_FFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights = weights.astype(np.float32)
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights


_MEL = mel_filterbank()
# scipy.signal.get_window("hann", 512, fftbins=True) (periodic), computed the way scipy does (equal to
# the last bit where numpy's cos is; SIMD cos may differ by 1 ulp, which the float32 spectrum absorbs)
_WINDOW = (0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, N_FFT + 1)))[:-1]


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(frames, 96) float32 network input of 16 kHz mono float audio, as musicnn computes it."""
    return _log_mel_padded(np.pad(np.asarray(audio, dtype=np.float32), N_FFT // 2, mode="reflect"))


def _log_mel_padded(y: np.ndarray) -> np.ndarray:
    """log_mel of the signal whose reflect-padded form (or a stretch of it, starting on the hop
    grid) is `y`: frame i covers y[i * HOP : i * HOP + N_FFT]."""
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP]
    spec = np.fft.rfft(_WINDOW * frames, axis=-1).astype(np.complex64)  # float64 FFT, complex64 result
    power = np.abs(spec) ** 2  # float32, (frames, 257)
    mel = (_MEL @ power.T).T  # float32, (frames, 96)
    mel16 = mel.astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * mel16 + np.float32(1))


def patches(logmel: np.ndarray) -> np.ndarray:
    """(P, 187, 96): non-overlapping 187-frame patches from frame 0; the rest (< 187 frames) is dropped."""
    starts = range(0, logmel.shape[0] - N_FRAMES + 1, N_FRAMES)
    return (
        np.stack([logmel[s : s + N_FRAMES] for s in starts]) if len(starts) else np.zeros((0, N_FRAMES, N_MELS), np.float32)
    )


def _bn(x: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        w[f"{name}.running_mean"],
        w[f"{name}.running_var"],
        w[f"{name}.weight"],
        w[f"{name}.bias"],
        training=False,
        eps=BN_EPS,
    )


def forward(w: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """musicnn (musicnn.models.build_musicnn) on (P, 187, 96) log-mel patches -> (probs (P, 50), penultimate (P, 200)).

    Each conv is ReLU then batch norm, as in TF.  Front end: two 'timbral' convs (7 frames x 38 / 67
    mel bands) and three 'temporal' convs (128 / 64 / 32 frames x 1 band, TF 'same' padding), each
    max-pooled over frequency; mid end: three 7-frame convs with dense/residual connections; back end:
    max and mean over time (interleaved per feature, as TF flattens (753, 2)), BN, dense 200 + ReLU + BN
    (the 'penultimate' embedding), dense 50, sigmoid.
    """
    x = _bn(x.unsqueeze(1), w, "input_bn")  # (P, 1, T, 96)
    feats = []
    for name in ("timbral74", "timbral77"):
        y = F.relu(F.conv2d(F.pad(x, (0, 0, 3, 3)), w[f"{name}.conv.weight"], w[f"{name}.conv.bias"]))
        feats.append(_bn(y, w, f"{name}.bn").amax(dim=3))  # (P, 204, T)
    for k in (128, 64, 32):
        y = F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))
        y = F.relu(F.conv2d(y, w[f"temporal{k}.conv.weight"], w[f"temporal{k}.conv.bias"]))
        feats.append(_bn(y, w, f"temporal{k}.bn").amax(dim=3))  # (P, 51, T)
    mid = [torch.cat(feats, dim=1)]  # (P, 561, T)
    for i in (1, 2, 3):
        y = F.relu(F.conv1d(F.pad(mid[-1], (3, 3)), w[f"midend{i}.conv.weight"], w[f"midend{i}.conv.bias"]))
        y = _bn(y, w, f"midend{i}.bn")
        mid.append(y if i == 1 else y + mid[-1])  # (P, 64, T)
    h = torch.cat(mid, dim=1)  # (P, 753, T)
    pooled = torch.stack([h.amax(dim=2), h.mean(dim=2)], dim=2).flatten(1)  # (P, 1506)
    pooled = _bn(pooled, w, "backend.pool_bn")
    pen = _bn(F.relu(F.linear(pooled, w["backend.dense.weight"], w["backend.dense.bias"])), w, "backend.dense_bn")
    logits = F.linear(pen, w["backend.out.weight"], w["backend.out.bias"])
    return torch.sigmoid(logits), pen


class Tagger:
    """A pretrained musicnn: `tagger(audio, sr) -> (probs (P, 50), embeddings (P, 200))`, numpy float32."""

    def __init__(self, name: str, weights: dict, tags: list[str]):
        self.name, self.weights, self.tags = name, weights, tags

    @classmethod
    def load(cls, name: str = "MTT_musicnn", assets: Path | str | None = None) -> "Tagger":
        """Load converted weights with safetensors (never pickle) from `assets` (default: <repo>/assets/musicnn)."""
        if name not in MODELS:
            raise ValueError(f"unknown musicnn model {name!r}; available: {', '.join(MODELS)}")
        root = Path(assets) if assets is not None else ASSETS
        path = root / f"{name}.safetensors"
        if not path.is_file() or not (root / "tags.json").is_file():
            raise FileNotFoundError(
                f"musicnn weights not found: {path} (and tags.json). They are committed under assets/musicnn/ of the"
                " repository and looked up relative to this package's source file, so use a checkout (editable"
                " install) or pass assets=...; `make musicnn` regenerates them."
            )
        tags = json.loads((root / "tags.json").read_text())[name]
        return cls(name, load_file(str(path), device="cpu"), tags)

    def __call__(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Tag mono float audio (n,) in [-1, 1] at rate `sr`; any rate but 16 kHz is resampled first
        (torchaudio's sinc resampler, not librosa's, so only 16 kHz input matches musicnn exactly)."""
        audio = np.asarray(audio)
        if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
            raise ValueError(f"expected mono float audio of shape (n,), got {audio.dtype} {audio.shape}")
        if sr != SR:
            audio = _resample(audio, sr)
        if audio.shape[0] < MIN_SAMPLES:
            raise ValueError(
                f"audio too short for musicnn: {audio.shape[0] / SR:.3f} s at 16 kHz; needs at least"
                f" {MIN_SAMPLES} samples ({MIN_SAMPLES / SR:.3f} s, one 187-frame patch)"
            )
        x = torch.from_numpy(patches(log_mel(audio)))
        with torch.inference_mode():  # CHUNK patches at a time: the timbral maps take ~9 MB a patch
            outs = [forward(self.weights, x[i : i + CHUNK]) for i in range(0, x.shape[0], CHUNK)]
        return torch.cat([p for p, _ in outs]).numpy(), torch.cat([e for _, e in outs]).numpy()

    def stream(self, blocks: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """What `self(audio, 16000)` gives for 16 kHz mono audio arriving in `blocks`, holding one
        block and one forward chunk at a time: frames, patches and chunks of CHUNK patches fall
        where the whole-signal computation puts them, so the figures are the same."""
        group = CHUNK * N_FRAMES  # frames per forward chunk
        probs, embs = [], []
        buf, base, frame = np.zeros(0, np.float32), 0, 0  # buf: the padded signal from index `base`
        for piece in _reflect_padded(blocks, N_FFT // 2):
            buf = np.concatenate([buf, piece])
            while HOP * (frame + group) + HOP <= base + buf.size:  # the chunk's last frame is in
                x = patches(_log_mel_padded(buf[HOP * frame - base : HOP * (frame + group) + HOP - base]))
                self._forward(x, probs, embs)
                frame += group
                buf, base = buf[HOP * frame - base :], HOP * frame
        rest = buf[HOP * frame - base :]
        if rest.size >= N_FFT:
            self._forward(patches(_log_mel_padded(rest)), probs, embs)
        if not probs:
            raise ValueError(f"audio too short for musicnn: needs at least {MIN_SAMPLES} samples at 16 kHz")
        return np.concatenate(probs), np.concatenate(embs)

    def _forward(self, x: np.ndarray, probs: list, embs: list) -> None:
        with torch.inference_mode():
            for i in range(0, x.shape[0], CHUNK):
                p, e = forward(self.weights, torch.from_numpy(x[i : i + CHUNK]))
                probs.append(p.numpy())
                embs.append(e.numpy())

    def top_tags(self, probs: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        return top_tags(probs, self.tags, k)


def _reflect_padded(blocks: Iterable[np.ndarray], pad: int) -> Iterator[np.ndarray]:
    """The blocks joined and reflect-padded by `pad` each side (as np.pad's "reflect"), in pieces."""
    held = np.zeros(0, np.float32)
    started = False
    for block in blocks:
        held = np.concatenate([held, np.asarray(block, np.float32)])
        if not started and held.size > pad:
            yield held[pad:0:-1]
            started = True
        if started and held.size > pad + 1:  # the last pad + 1 samples wait for the right reflection
            yield held[: held.size - pad - 1]
            held = held[held.size - pad - 1 :]
    if not started:
        raise ValueError(f"audio too short for musicnn: needs at least {MIN_SAMPLES} samples at 16 kHz")
    yield held
    yield held[-2 : -pad - 2 : -1]


def _resample(audio: np.ndarray, sr: int) -> np.ndarray:
    import torchaudio.functional as AF  # only needed off 16 kHz

    return AF.resample(torch.from_numpy(audio.astype(np.float32)), int(sr), SR).numpy()


def clip_tags(probs: np.ndarray) -> np.ndarray:
    """Clip-level tag probabilities: the mean over patches (what musicnn's top_tags does)."""
    return np.asarray(probs).mean(axis=0)


def top_tags(probs: np.ndarray, tags: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The k most probable tags of (50,) probabilities, or of (P, 50) after averaging over patches."""
    p = np.asarray(probs)
    p = clip_tags(p) if p.ndim == 2 else p
    return [(tags[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:k]]
