"""Training the tiny EnCodec so its codes mean something (used by `bootstrap`).

A randomly initialised EnCodec cannot round-trip audio: its decoder turns any code sequence
into noise, so a MusicGen on top of it could only ever generate noise. The codec is trained in
three cheap phases, all on generic-style audio:

1. encoder + decoder as a plain (continuous) autoencoder with a multi-scale spectral loss plus
   a small L1 waveform loss: this is where the representation is learned;
2. residual k-means refits the codebooks on the trained encoder's latents, so the RVQ codes
   cover where the latents actually are (EMA codebooks would need far more steps on CPU);
3. with encoder and codebooks frozen, the decoder alone learns to undo the quantisation error
   (quantised path, exactly what `encode`/`decode` run at inference).

Freezing the encoder in phase 3 keeps the codes fixed, so nothing needs a straight-through
estimator and the codebooks stay consistent with the latents they were fitted on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .musicgen import decode_codes, encode_audio

SCALES = (128, 256, 512, 1024)  # STFT sizes (Hann window, hop n_fft / 4) of the spectral loss
EPS = 1e-3  # magnitude floor: spectral detail more than 60 dB below full scale does not count


def _stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| scaled so a full-scale sine peaks at 1 whatever n_fft is (one EPS for all scales)."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    return spec.abs() * (2.0 / window.sum())


def spectral_terms(ref: torch.Tensor, est: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-magnitude L1, spectral convergence), each averaged over SCALES, for (B, N) audio.

    Log magnitudes weigh quiet partials and high bands like the ear does; spectral convergence
    (relative Frobenius error of linear magnitudes) keeps the loud parts exact."""
    log_l1, conv = ref.new_zeros(()), ref.new_zeros(())
    for n_fft in SCALES:
        a, b = _stft_mag(ref, n_fft), _stft_mag(est, n_fft)
        log_l1 = log_l1 + (torch.log(a + EPS) - torch.log(b + EPS)).abs().mean()
        conv = conv + torch.linalg.norm(a - b) / torch.linalg.norm(a).clamp(min=EPS)
    return log_l1 / len(SCALES), conv / len(SCALES)


def codec_loss(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Multi-scale spectral loss + 0.1 x L1 on the waveform (EnCodec's recipe, minus the GAN),
    + 0.5 x normalised waveform MSE (= 1 / linear SNR): with only a few hundred CPU steps the
    spectral terms alone leave the phase, and so the SNR, untrained."""
    log_l1, conv = spectral_terms(ref, est)
    nmse = (ref - est).pow(2).sum(-1) / ref.pow(2).sum(-1).clamp(min=1e-8)
    return log_l1 + conv + 0.1 * (ref - est).abs().mean() + 0.5 * nmse.mean()


@torch.no_grad()
def reconstruction_quality(model, audio_batch: torch.Tensor) -> dict[str, float]:
    """Round-trip `audio_batch` (B, N) through the model's codec (encode -> codes -> decode).

    spectral_distance: mean absolute difference of natural-log STFT magnitudes, averaged over
    SCALES (0 = identical spectra; lower is better). snr_db: 10 log10(signal / error energy) of
    the waveform, averaged over clips (higher is better; phase errors count, so it is modest even
    for a good codec).
    """
    audio_batch = audio_batch.float()
    est = decode_codes(model, encode_audio(model, audio_batch))[:, : audio_batch.shape[-1]]
    log_l1, _ = spectral_terms(audio_batch, est)
    err = (audio_batch - est).pow(2).sum(-1)
    snr = 10 * torch.log10(audio_batch.pow(2).sum(-1).clamp(min=1e-12) / err.clamp(min=1e-12))
    return {"spectral_distance": float(log_l1), "snr_db": float(snr.mean())}


def _kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means on rows of x; empty clusters are re-seeded from random points."""
    centers = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        empty = counts == 0
        centers = sums / counts.clamp(min=1)[:, None]
        centers[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=gen)]
    return centers


@torch.no_grad()
def fit_codebooks(codec, audio: torch.Tensor, seed: int, iters: int = 15, max_frames: int = 40000) -> None:
    """Residual k-means: codebook q is fitted on what codebooks 0..q-1 left unexplained.

    Random EnCodec codebooks are all zeros (every clip would be code 0), so this runs before
    any training too. At most `max_frames` latent frames (a seeded random subset) are used."""
    gen = torch.Generator().manual_seed(seed)
    latents = torch.cat([codec.encoder(chunk[:, None, :]) for chunk in audio.split(8)])  # (B, D, T)
    residual = latents.transpose(1, 2).reshape(-1, latents.shape[1])
    if len(residual) > max_frames:
        residual = residual[torch.randperm(len(residual), generator=gen)[:max_frames]]
    for layer in codec.quantizer.layers:
        cb = layer.codebook
        centers = _kmeans(residual, cb.embed.shape[0], iters, gen)
        cb.embed.copy_(centers)
        cb.embed_avg.copy_(centers)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(True)
        residual = residual - centers[torch.cdist(residual, centers).argmin(1)]


def _crops(audio: torch.Tensor, batch: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """`batch` random windows of `samples` from random rows of audio (B, N)."""
    rows = torch.randint(len(audio), (batch,), generator=gen)
    starts = torch.randint(audio.shape[1] - samples + 1, (batch,), generator=gen)
    return torch.stack([audio[r, s : s + samples] for r, s in zip(rows.tolist(), starts.tolist())])


def _quantized(codec, x: torch.Tensor) -> torch.Tensor:
    """Latents after RVQ, as `decode` sees them (encoder and codebooks frozen: no gradient)."""
    with torch.no_grad():
        return codec.quantizer.decode(codec.quantizer.encode(codec.encoder(x[:, None, :])))


def train_codec(codec, audio: torch.Tensor, steps: int, seed: int, batch: int = 8, seconds: float = 0.5,
                lr: float = 4e-3, ae_share: float = 0.75, log_every: int = 0) -> list[float]:
    """Phases 1-3 above on audio (B, N) at the codec's rate; returns the loss of every step.

    `ae_share` of the steps train the continuous autoencoder, the rest the decoder alone."""
    gen = torch.Generator().manual_seed(seed)
    samples = int(seconds * codec.config.sampling_rate)
    ae_steps = int(round(steps * ae_share))
    losses: list[float] = []
    codec.train()
    for phase, n_steps, params in (("autoencoder", ae_steps, list(codec.encoder.parameters()) + list(codec.decoder.parameters())),
                                   ("decoder", steps - ae_steps, list(codec.decoder.parameters()))):
        if phase == "decoder":
            fit_codebooks(codec, audio, seed)
        if n_steps <= 0:
            continue
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - 0.9 * s / n_steps))
        for step in range(n_steps):
            x = _crops(audio, batch, samples, gen)
            z = codec.encoder(x[:, None, :]) if phase == "autoencoder" else _quantized(codec, x)
            est = codec.decoder(z)[:, 0, :samples]
            loss = codec_loss(x, est)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if log_every and (step % log_every == 0 or step == n_steps - 1):
                print(f"  codec {phase} step {step}/{n_steps} loss {loss.item():.3f}", flush=True)
    codec.eval()
    return losses
