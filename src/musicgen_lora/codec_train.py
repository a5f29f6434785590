"""Training the tiny EnCodec so its codes mean something (used by `bootstrap`).

A randomly initialised EnCodec cannot round-trip audio: its decoder turns any code sequence
into noise, so a MusicGen on top of it could only ever generate noise. The codec is trained in
three cheap phases, all on generic-style audio:

1. encoder + decoder as a plain (continuous) autoencoder with a multi-scale spectral loss plus
   a small L1 waveform loss: this is where the representation is learned;
2. residual k-means refits the codebooks on the trained encoder's latents, so the RVQ codes
   cover where the latents actually are (EMA codebooks would need far more steps on CPU);
3. `train_decoder`: with encoder and codebooks frozen, the decoder is re-initialised and
   trained alone on the quantised path (exactly what `encode`/`decode` run at inference).

Freezing the encoder in phase 3 keeps the codes fixed, so nothing needs a straight-through
estimator and the codebooks stay consistent with the latents they were fitted on. The same
`train_decoder` retrains the decoder of an existing model without touching its codes
(`bootstrap --decoder-only`). Its loss has no normalised-MSE term: a decoder that cannot match
the phase minimises that term by going quiet and input-independent (the collapse it fixes).
"""

from __future__ import annotations

import math
import time

import torch

from .musicgen import decode_codes, encode_audio

SCALES = (128, 256, 512, 1024)  # STFT sizes (Hann window, hop n_fft / 4) of the spectral loss
DECODER_SCALES = (256, 512, 1024, 2048)  # STFT sizes of the decoder-only loss
EPS = 1e-3  # magnitude floor: spectral detail more than 60 dB below full scale does not count


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
    """Multi-scale spectral loss + 0.1 x L1 on the waveform (EnCodec's recipe, minus the GAN),
    + 0.5 x normalised waveform MSE (= 1 / linear SNR): with only a few hundred CPU steps the
    spectral terms alone leave the phase, and so the SNR, untrained."""
    log_l1, conv = spectral_terms(ref, est)
    nmse = (ref - est).pow(2).sum(-1) / ref.pow(2).sum(-1).clamp(min=1e-8)
    return log_l1 + conv + 0.1 * (ref - est).abs().mean() + 0.5 * nmse.mean()


def decoder_loss(ref: torch.Tensor, est: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss (log-magnitude L1 + spectral convergence over DECODER_SCALES)
    + 0.1 x waveform L1."""
    log_l1, conv = spectral_terms(ref, est, DECODER_SCALES)
    return log_l1 + conv + 0.1 * (ref - est).abs().mean()


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
    the waveform, averaged over clips (higher is better; phase errors count, so it is modest even
    for a good codec). logmel_corr: correlation of input and output log-mel spectrograms (1 =
    same shape of spectrum over time). output_spread: how much outputs of different clips differ
    (mean distance of each clip's log-mel from the batch mean, dB; ~0 = collapsed decoder).
    """
    audio_batch = audio_batch.float()
    est = decode_codes(model, encode_audio(model, audio_batch))[:, : audio_batch.shape[-1]]
    log_l1, _ = spectral_terms(audio_batch, est)
    err = (audio_batch - est).pow(2).sum(-1)
    snr = 10 * torch.log10(audio_batch.pow(2).sum(-1).clamp(min=1e-12) / err.clamp(min=1e-12))
    sr = model.config.audio_encoder.sampling_rate
    mel = log_mel(est, sr)
    return {"spectral_distance": float(log_l1), "snr_db": float(snr.mean()),
            "logmel_corr": logmel_correlation(audio_batch, est, sr),
            "output_spread": float((mel - mel.mean(0, keepdim=True)).abs().mean()), "output_std": float(est.std())}


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


def train_codec(codec, audio: torch.Tensor, steps: int, seed: int, batch: int = 8, seconds: float = 0.5,
                lr: float = 4e-3, ae_share: float = 0.75, decoder_steps: int | None = None,
                log_every: int = 0) -> list[float]:
    """Phases 1-3 above on audio (B, N) at the codec's rate; returns the loss of every step.

    `ae_share` of `steps` train the continuous autoencoder; the decoder phase runs
    `decoder_steps` (default: the rest of `steps`) of `train_decoder`."""
    gen = torch.Generator().manual_seed(seed)
    samples = int(seconds * codec.config.sampling_rate)
    ae_steps = int(round(steps * ae_share))
    losses: list[float] = []
    params = list(codec.encoder.parameters()) + list(codec.decoder.parameters())
    codec.train()
    if ae_steps > 0:
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - 0.9 * s / ae_steps))
        for step in range(ae_steps):
            x = _crops(audio, batch, samples, gen)
            loss = codec_loss(x, codec.decoder(codec.encoder(x[:, None, :]))[:, 0, :samples])
            optimizer_step(loss, opt, sched, params)
            losses.append(loss.item())
            if log_every and (step % log_every == 0 or step == ae_steps - 1):
                print(f"  codec autoencoder step {step}/{ae_steps} loss {loss.item():.3f}", flush=True)
    codec.eval()
    fit_codebooks(codec, audio, seed)
    n_dec = steps - ae_steps if decoder_steps is None else decoder_steps
    if n_dec > 0:
        losses += train_decoder(codec, audio, n_dec, seed, log_every=log_every)["loss"]
    return losses


@torch.no_grad()
def quantized_embeddings(codec, audio: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """What `decode` feeds the decoder for whole clips (B, N): quantizer.decode(codes) with the
    codes `encode` gives, (B, D, T). Computed once, so decoder steps never run the encoder."""
    out = []
    for x in audio.split(chunk):
        codes = codec.encode(x[:, None, :]).audio_codes[0]  # (B, K, T), as encode_audio
        out.append(codec.quantizer.decode(codes.transpose(0, 1)))
    return torch.cat(out)


def reinit_decoder(codec, seed: int) -> None:
    """Fresh (seeded) weights for codec.decoder, in place; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(codec.decoder)(codec.config)
    codec.decoder.load_state_dict(fresh.state_dict())


@torch.no_grad()
def fold_input_standardisation(codec, emb: torch.Tensor) -> None:
    """Data-dependent init: fold per-channel standardisation of the decoder input into the
    decoder's first conv (W' = W / std, b' = b - W' mean). The frozen encoder's latents are a
    large constant vector with ~0.5% variation carrying the content; a decoder fed them raw
    only sees the constant and collapses to one output for every input."""
    conv = codec.decoder.layers[0].conv
    mu, sd = emb.mean((0, 2)), emb.std((0, 2)).clamp(min=1e-6)
    w = conv.weight / sd[None, :, None]
    conv.bias.sub_((w * mu[None, :, None]).sum((1, 2)))
    conv.weight = w  # weight norm's right_inverse re-derives its magnitude and direction


def train_decoder(model, audio: torch.Tensor, steps: int, seed: int, batch: int = 8, seconds: float = 1.0,
                  lr: float = 1e-3, reinit: bool = True, log_every: int = 0,
                  max_seconds: float | None = None) -> dict:
    """Re-initialise and train only the decoder of `model` (a MusicGen or its EnCodec) to turn the
    quantised embeddings of audio (B, N) back into audio; encoder and codebooks stay frozen, so
    the codes do not change. Adam, warm-up then cosine decay to lr/10, batches of `batch` random
    `seconds`-long crops (frame-aligned), seeded. Stops early after `max_seconds` of wall time.

    Returns {"loss", "out_std", "spectral": per-step lists, "step_seconds": mean step time}."""
    codec = getattr(model, "audio_encoder", model)
    hop = int(codec.config.sampling_rate / codec.config.frame_rate)
    frames = int(round(seconds * codec.config.frame_rate))
    codec.eval()
    for p in codec.parameters():
        p.requires_grad_(False)
    if reinit:
        reinit_decoder(codec, seed)
    emb = quantized_embeddings(codec, audio)
    if reinit:
        fold_input_standardisation(codec, emb)
    audio = audio[:, : emb.shape[-1] * hop]
    params = list(codec.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed + 7)
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    warm = max(1, min(20, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, steps) / steps))))
    hist: dict = {"loss": [], "out_std": [], "spectral": []}
    codec.decoder.train()
    t0 = time.time()
    for step in range(steps):
        rows = torch.randint(len(emb), (batch,), generator=gen).tolist()
        starts = torch.randint(emb.shape[-1] - frames + 1, (batch,), generator=gen).tolist()
        z = torch.stack([emb[r, :, s : s + frames] for r, s in zip(rows, starts)])
        x = torch.stack([audio[r, s * hop : (s + frames) * hop] for r, s in zip(rows, starts)])
        est = codec.decoder(z)[:, 0, : x.shape[-1]]
        loss = decoder_loss(x, est)
        optimizer_step(loss, opt, sched, params)
        with torch.no_grad():
            spectral = float(spectral_terms(x, est, DECODER_SCALES)[0])
        hist["loss"].append(loss.item())
        hist["out_std"].append(float(est.detach().std()))
        hist["spectral"].append(spectral)
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"  decoder step {step}/{steps} loss {loss.item():.3f} spectral {spectral:.3f} out_std "
                  f"{hist['out_std'][-1]:.4f} (in {float(x.std()):.4f}) {time.time() - t0:.0f}s", flush=True)
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    codec.decoder.eval()
    for p in codec.parameters():
        p.requires_grad_(True)
    hist["step_seconds"] = (time.time() - t0) / max(1, len(hist["loss"]))
    return hist
