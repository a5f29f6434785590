"""Training the tiny EnCodec so its codes mean something (used by `bootstrap`).

A randomly initialised EnCodec cannot round-trip audio: its codebooks are all zeros and its
decoder turns any code sequence into noise. Worse, its signal shrinks layer by layer until the
conv biases dominate: the encoder's latents are a constant vector with ~0.5% variation, and a
codec trained from there collapses to one output for every input. So:

1. `init_from_data`: every conv of encoder and decoder is rescaled on a batch of real audio so
   its output channels have mean 0 and std 1 (LSUV-style data-dependent init), then residual
   k-means fits the codebooks on the encoder's latents;
2. `train_codec`: the standard VQ-VAE recipe on the exact inference path (encoder -> residual
   VQ -> decoder): straight-through gradients past the quantiser, a commitment loss, codebooks
   updated by exponential moving averages (with dead codes restarted from the batch), and
   EnCodec's multi-scale spectral + waveform L1 reconstruction loss (its GAN left out).
"""

from __future__ import annotations

import math
import time
import warnings

import torch

from ..model.musicgen import decode_codes, encode_audio

SCALES = (128, 256, 512, 1024, 2048)  # STFT sizes (Hann window, hop n_fft / 4) of the spectral loss
EPS = 1e-3  # magnitude floor: spectral detail more than 60 dB below full scale does not count
COMMITMENT = 0.02  # VQ-VAE's beta, on latents scaled by their variance (0.25 collapsed the encoder onto few codes)
EMA_DECAY = 0.9  # codebook moving averages: fast, because the build runs few hundred steps


def _stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """|STFT| scaled so a full-scale sine peaks at 1 whatever n_fft is (one EPS for all scales)."""
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    return spec.abs() * (2.0 / window.sum())


def spectral_terms(ref: torch.Tensor, est: torch.Tensor, scales=SCALES) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-magnitude L1, spectral convergence), each averaged over SCALES, for (B, N) audio.

    Log magnitudes weigh quiet partials and high bands like the ear does; spectral convergence
    (relative Frobenius error of linear magnitudes) keeps the loud parts exact."""
    log_l1, conv = ref.new_zeros(()), ref.new_zeros(())
    for n_fft in scales:
        a, b = _stft_mag(ref, n_fft), _stft_mag(est, n_fft)
        log_l1 = log_l1 + (torch.log(a + EPS) - torch.log(b + EPS)).abs().mean()
        conv = conv + torch.linalg.norm(a - b) / torch.linalg.norm(a).clamp(min=EPS)
    return log_l1 / len(scales), conv / len(scales)


def codec_loss(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Multi-scale spectral loss + 0.1 x L1 on the waveform (EnCodec's recipe, minus the GAN)."""
    log_l1, conv = spectral_terms(ref, est)
    return log_l1 + conv + 0.1 * (ref - est).abs().mean()


MEL_SCALES = ((256, 40), (512, 96), (1024, 128), (2048, 160))  # (n_fft, mel bands) of the refine loss


def mel_loss(ref: torch.Tensor, est: torch.Tensor, sr: int) -> torch.Tensor:
    """L1 of log10 mel power spectrograms at MEL_SCALES (DAC's mel loss, 80 dB range), averaged."""
    total = ref.new_zeros(())
    for n_fft, n_mels in MEL_SCALES:
        a, b = log_mel(ref, sr, n_fft, n_mels), log_mel(est, sr, n_fft, n_mels)
        total = total + (a - b).abs().mean() / 10  # dB -> log10 units
    return total / len(MEL_SCALES)


def refine_loss(ref: torch.Tensor, est: torch.Tensor, sr: int) -> torch.Tensor:
    """codec_loss + the mel loss + waveform L1 at full weight: what measured best of the recipes
    tried for 600 steps (musicnn embedding cosine of the round trip 0.38, against 0.31 for
    codec_loss alone and 0.22 for waveform terms alone)."""
    return codec_loss(ref, est) + mel_loss(ref, est, sr) + (ref - est).abs().mean()


def log_mel(x: torch.Tensor, sr: int, n_fft: int = 1024, n_mels: int = 64) -> torch.Tensor:
    """Log-mel spectrogram (B, n_mels, frames) of audio (B, N), 80 dB floor below full scale."""
    import torchaudio

    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, 0.0, sr / 2, n_mels, sr).to(x.dtype)
    mel = (_stft_mag(x, n_fft).pow(2).transpose(1, 2) @ fb).transpose(1, 2)
    return 10 * torch.log10(mel.clamp(min=1e-8))


def logmel_correlation(ref: torch.Tensor, est: torch.Tensor, sr: int) -> float:
    """Pearson correlation of log-mel spectrograms of ref and est, per clip, averaged."""
    a, b = log_mel(ref, sr).flatten(1), log_mel(est, sr).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)).mean())


@torch.no_grad()
def reconstruction_quality(model, audio_batch: torch.Tensor) -> dict[str, float]:
    """Round-trip `audio_batch` (B, N) through the model's codec (encode -> codes -> decode).

    spectral_distance: mean absolute difference of natural-log STFT magnitudes, averaged over
    SCALES (0 = identical spectra; lower is better). snr_db: 10 log10(signal / error energy) of
    the waveform, averaged over clips (higher is better; every phase error counts, so a codec
    trained for minutes on CPU stays near 0 dB, where silence scores 0 dB too). magnitude_snr_db:
    the same on STFT magnitudes (n_fft 1024), blind to phase. logmel_corr: correlation of input
    and output log-mel spectrograms (1 = same shape of spectrum over time). output_spread: how
    much outputs of different clips differ (mean distance of each clip's log-mel from the batch
    mean, dB; ~0 = collapsed decoder).
    """
    audio_batch = audio_batch.float()
    est = decode_codes(model, encode_audio(model, audio_batch))[:, : audio_batch.shape[-1]]
    log_l1, _ = spectral_terms(audio_batch, est)
    err = (audio_batch - est).pow(2).sum(-1)
    snr = 10 * torch.log10(audio_batch.pow(2).sum(-1).clamp(min=1e-12) / err.clamp(min=1e-12))
    a, b = _stft_mag(audio_batch, 1024), _stft_mag(est, 1024)
    mag_snr = 10 * torch.log10(a.pow(2).sum((1, 2)).clamp(min=1e-12) / (a - b).pow(2).sum((1, 2)).clamp(min=1e-12))
    sr = model.config.audio_encoder.sampling_rate
    mel = log_mel(est, sr)
    return {
        "spectral_distance": float(log_l1),
        "snr_db": float(snr.mean()),
        "magnitude_snr_db": float(mag_snr.mean()),
        "logmel_corr": logmel_correlation(audio_batch, est, sr),
        "output_spread": float((mel - mel.mean(0, keepdim=True)).abs().mean()),
        "output_std": float(est.std()),
    }


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

    At most `max_frames` latent frames (a seeded random subset) are used."""
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


def encodec_convs(net) -> list:
    """EnCodec's padded conv wrappers in forward order (each holds a `.conv`). transformers keeps
    the class in a module of its own, not in its public API: where that import fails, every
    module holding a Conv1d named `conv` is taken instead (the same set today), with a warning."""
    try:
        from transformers.models.encodec.modeling_encodec import EncodecConv1d
    except ImportError:
        warnings.warn("codec_train: transformers has no EncodecConv1d; matching modules by their .conv", stacklevel=2)
        return [m for m in net.modules() if isinstance(getattr(m, "conv", None), torch.nn.Conv1d)]
    return [m for m in net.modules() if isinstance(m, EncodecConv1d)]


@torch.no_grad()
def standardise_convs(net, x: torch.Tensor, last_std: float | None = None) -> torch.Tensor:
    """Rescale each conv of `net` in turn (forward order) so that, on input x, its output channels
    have mean 0 and std 1 (the last conv: std `last_std` if given). Returns net(x) afterwards."""
    convs = encodec_convs(net)
    for i, module in enumerate(convs):
        seen = {}
        hook = module.register_forward_hook(lambda mod, inp, out: seen.setdefault("out", out))
        net(x)
        hook.remove()
        out, conv = seen["out"], module.conv
        mu, sd = out.mean((0, 2)), out.std((0, 2)).clamp(min=1e-8)
        scale = (last_std if last_std is not None and i == len(convs) - 1 else 1.0) / sd
        conv.bias.copy_((conv.bias - mu) * scale)
        conv.weight = conv.weight * scale[:, None, None]  # weight norm re-derives magnitude and direction
    return net(x)


def init_from_data(codec, audio: torch.Tensor, seed: int, clips: int = 16, seconds: float = 1.0) -> None:
    """Phase 1 above, on `clips` seeded random crops of audio (B, N), then k-means on all of it."""
    x = _crops(audio, clips, int(seconds * codec.config.sampling_rate), torch.Generator().manual_seed(seed))
    latents = standardise_convs(codec.encoder, x[:, None, :])
    standardise_convs(codec.decoder, latents, last_std=float(audio.std()))
    fit_codebooks(codec, audio, seed)


def optimizer_step(loss: torch.Tensor, opt, sched, params) -> None:
    """One clipped AdamW step and a scheduler tick (the bootstrap's plain loops share it)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()


def _crops(audio: torch.Tensor, batch: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """`batch` random windows of `samples` from random rows of audio (B, N)."""
    rows = torch.randint(len(audio), (batch,), generator=gen)
    starts = torch.randint(audio.shape[1] - samples + 1, (batch,), generator=gen)
    return torch.stack([audio[r, s : s + samples] for r, s in zip(rows.tolist(), starts.tolist())])


def quantize_train(codec, z: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual VQ of latents z (B, D, T) as `encode` runs it, for training: returns the quantised
    latents with straight-through gradients to z, and the commitment loss. Updates each codebook
    by EMA of the residuals assigned to it; codes unused for a while restart on a random residual."""
    residual = z.detach().transpose(1, 2).reshape(-1, z.shape[1])
    quantized = torch.zeros_like(residual)
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            cb = layer.codebook
            idx = torch.cdist(residual, cb.embed).argmin(1)
            q = cb.embed[idx]
            cb.cluster_size.mul_(EMA_DECAY).add_(torch.bincount(idx, minlength=len(cb.embed)).float(), alpha=1 - EMA_DECAY)
            cb.embed_avg.mul_(EMA_DECAY).add_(torch.zeros_like(cb.embed).index_add_(0, idx, residual), alpha=1 - EMA_DECAY)
            n = cb.cluster_size.sum()
            size = (cb.cluster_size + 1e-5) / (n + len(cb.embed) * 1e-5) * n  # Laplace smoothing
            cb.embed.copy_(cb.embed_avg / size[:, None])
            dead = cb.cluster_size < 0.05
            if dead.any():
                fresh = residual[torch.randint(len(residual), (int(dead.sum()),), generator=gen)]
                cb.embed[dead], cb.embed_avg[dead], cb.cluster_size[dead] = fresh, fresh, 1.0
            quantized += q
            residual = residual - q
    quantized = quantized.reshape(z.shape[0], z.shape[2], -1).transpose(1, 2)
    commitment = (z - quantized).pow(2).mean() / z.detach().var().clamp(min=1e-8)
    return z + (quantized - z).detach(), commitment


def train_codec(
    codec,
    audio: torch.Tensor,
    steps: int,
    seed: int,
    batch: int = 8,
    seconds: float = 0.5,
    lr: float = 3e-3,
    log_every: int = 0,
) -> list[float]:
    """Phases 1-2 above on audio (B, N) at the codec's rate; returns the loss of every step.
    AdamW, 20 warm-up steps then cosine decay to lr / 10, batches of random crops, seeded."""
    gen = torch.Generator().manual_seed(seed)
    init_from_data(codec, audio, seed)
    samples = int(seconds * codec.config.sampling_rate)
    params = list(codec.encoder.parameters()) + list(codec.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )
    losses: list[float] = []
    codec.train()
    t0 = time.time()
    for step in range(steps):
        x = _crops(audio, batch, samples, gen)
        quantized, commitment = quantize_train(codec, codec.encoder(x[:, None, :]), gen)
        loss = codec_loss(x, codec.decoder(quantized)[:, 0, :samples]) + COMMITMENT * commitment
        optimizer_step(loss, opt, sched, params)
        losses.append(loss.item())
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(
                f"  codec step {step}/{steps} loss {loss.item():.3f} commitment {commitment.item():.3f} "
                f"{time.time() - t0:.0f}s",
                flush=True,
            )
    codec.eval()
    return losses
