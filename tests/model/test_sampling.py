"""Per-prompt sampling: draws from softmax(top-k(logits) / T), and a prompt's clip does not depend
on the prompts beside it."""

import torch
from transformers import ClassifierFreeGuidanceLogitsProcessor

from musicgen_lora.model.musicgen import generate
from musicgen_lora.model.sampling import RowSampling


def test_draws_follow_the_tempered_top_k_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    sampler = RowSampling([7], guidance_scale=1.0, temperature=0.8, top_k=3)
    ids = torch.zeros(1, 1, dtype=torch.long)
    draws = torch.stack([sampler(ids, logits).argmax(-1) for _ in range(20000)]).flatten()
    share = torch.bincount(draws, minlength=5).float() / len(draws)
    expected = torch.cat([torch.softmax(logits[0, :3] / 0.8, -1), torch.zeros(2)])
    assert share[3:].sum() == 0  # outside the top 3: never
    assert torch.allclose(share, expected, atol=0.015), (share, expected)


def test_a_row_draws_the_same_noise_alone_or_in_a_batch_and_survives_guidance():
    torch.manual_seed(0)
    k, v = 4, 32
    scores = torch.randn(2 * 3 * k, v)  # conditional then unconditional halves, 3 prompts x 4 codebooks
    ids = torch.zeros(3 * k, 1, dtype=torch.long)
    together = RowSampling([10, 11, 12], 3.0, 1.0, 8)(ids, scores)
    # MusicGen's own guidance processor runs after ours and must leave our scores as they are
    after = ClassifierFreeGuidanceLogitsProcessor(3.0)(ids, together)
    assert after.shape == (3 * k, v) and torch.equal(after, together[: 3 * k])
    one = torch.cat([scores[k : 2 * k], scores[3 * k + k : 3 * k + 2 * k]])  # prompt 1's rows, both halves
    alone = RowSampling([11], 3.0, 1.0, 8)(ids[:k], one)
    assert torch.equal(alone[:k], together[k : 2 * k])


def test_a_prompt_in_a_batch_gets_the_clip_it_gets_alone(tiny):
    model, tok = tiny
    frames = 40
    _, batch = generate(model, tok, ["bright chiptune", "calm solo piano with soft chords"], frames, 3.0, 1.0, 250, 5)
    _, alone = generate(model, tok, ["calm solo piano with soft chords"], frames, 3.0, 1.0, 250, 6)
    assert (batch[1] == alone[0]).all()
    assert not (batch[0] == batch[1]).all()
