"""MusicGen's delay pattern, the masking of padded frames and the training loss.

The decoder predicts codebook k shifted right by k steps (the pattern `generate` decodes with);
labels of padded frames are -100 so padding never enters the loss. Written out next to each
other, as audiocraft does, because getting them out of step is the classic silent bug.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .stereo import delays

IGNORE = -100  # label value CrossEntropy skips


def delay_pattern_labels(
    codes: torch.Tensor, frame_mask: torch.Tensor, mask_padding: bool, channels: int = 1
) -> torch.Tensor:
    """Decoder labels (B, T + K/channels - 1, K) for codes (B, K, T), in MusicGen's delay pattern.

    Codebook k is shifted right by k steps, so at sequence step s the decoder predicts frame s
    of codebook 0, frame s-1 of codebook 1, ... (the pattern `generate` decodes with). Stereo
    codes interleave the channels (index 2k left, 2k + 1 right) and both share codebook k's
    shift (`stereo.delays`). Steps a codebook has no frame for are IGNORE. With `mask_padding`,
    frames that only cover padding (frame_mask False) are IGNORE too: trial-1 left them in and the
    model learned to predict the silence of the padded half (low valid loss, quiet or noisy
    generations).
    """
    b, k, t = codes.shape
    shifts = delays(k, channels)
    labels = torch.full((b, t + shifts[-1], k), IGNORE, dtype=torch.long, device=codes.device)
    keep = frame_mask.bool() if mask_padding else torch.ones_like(frame_mask, dtype=torch.bool)
    masked = codes.long().masked_fill(~keep[:, None, :], IGNORE)
    for cb, d in enumerate(shifts):
        labels[:, d : d + t, cb] = masked[:, cb]
    return labels


def decoder_input_ids(labels: torch.Tensor, start_id: int, pad_id: int) -> torch.Tensor:
    """Teacher-forcing inputs (B*K, S): labels shifted right behind the start token; ignored
    positions become the pad id, as in `generate`'s delay-pattern mask."""
    b, s, k = labels.shape
    shifted = torch.full((b, k, s), pad_id, dtype=torch.long, device=labels.device)
    shifted[..., 0] = start_id
    shifted[..., 1:] = labels.transpose(1, 2)[..., :-1]
    shifted[shifted == IGNORE] = pad_id
    return shifted.reshape(b * k, s)


def codebook_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over codebooks of each codebook's token-mean cross-entropy (as audiocraft does).

    logits (B*K, S, V), labels (B, S, K). A codebook whose labels are all IGNORE is left out
    (CrossEntropy's mean over nothing is NaN); if nothing at all is left, the loss is an exact
    zero that still carries the graph, so a fully padded batch never poisons training.
    """
    b, s, k = labels.shape
    logits = logits.reshape(b, k, s, -1).float()
    total, used = logits.new_zeros(()), 0
    for cb in range(k):
        target = labels[..., cb].reshape(-1)
        valid = target != IGNORE
        if valid.any():
            total = total + F.cross_entropy(logits[:, cb].reshape(-1, logits.shape[-1])[valid], target[valid])
            used += 1
    return total / used if used else logits.sum() * 0.0


def text_inputs(tokenizer, captions: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(captions, padding=True, return_tensors="pt"))


def loss_inputs(
    tokenizer,
    captions: list[str],
    codes: torch.Tensor,
    frame_mask: torch.Tensor,
    mask_padding: bool,
    channels: int = 1,
    chroma: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """A batch for `forward_loss`: captions tokenized, delay-pattern labels, and (melody models)
    each clip's chroma as `input_features`."""
    batch = text_inputs(tokenizer, captions)
    batch["labels"] = delay_pattern_labels(codes, frame_mask, mask_padding, channels)
    if chroma is not None:
        batch["input_features"] = chroma
    return batch


def forward_loss(model, batch: dict[str, torch.Tensor], pad_id: int, start_id: int) -> torch.Tensor:
    """Teacher-forced loss of a batch {input_ids, attention_mask, labels[, input_features]} on the
    model's device. A melody model's logits also cover its conditioning prefix: the last steps
    are the decoder's."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    labels = batch["labels"]
    extra = {"input_features": batch["input_features"]} if "input_features" in batch else {}
    # use_cache=False: a teacher-forced forward needs no key/value cache (built and returned, it
    # costs ~0.15 GB per clip on musicgen-small)
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=decoder_input_ids(labels, start_id, pad_id),
        use_cache=False,
        **extra,
    )
    return codebook_loss(out.logits[:, -labels.shape[1] :], labels)
