"""The mini-model builder and its corpus: real compositions played by SoundFont instruments,
held-out families never in pretraining, and a build that a kill does not change.

The committed model is built by the same code with the default sizes (`make mini`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from musicgen_lora.tiny import mini, scores


def test_held_out_families_never_reach_pretraining():
    """No pretraining track is played by, or names, an instrument of a held-out family; a fifth of
    the pieces are never pretrained on; several genres and families are heard."""
    tracks = scores.pretrain_tracks(seed=0, count=300, seconds=5.0)
    held_words = {w for fam in scores.HELD_OUT.values() for _, w in fam}
    held_programs = {p for fam in scores.HELD_OUT.values() for p, _ in fam}
    for t in tracks:
        assert t.family in scores.PRETRAIN_FAMILIES and t.program not in held_programs
        assert not any(w in t.caption for w in held_words), t.caption
    pretrain = {p.path for p in scores.pieces() if p.pretrain}
    assert {t.piece for t in tracks} <= pretrain
    assert 0.15 < 1 - len(pretrain) / len(scores.pieces()) < 0.25
    assert len({t.family for t in tracks}) == len(scores.PRETRAIN_FAMILIES)
    assert len({t.genre for t in tracks}) >= 5
    target = scores.heldout_tracks(0, "strings", 5, 5.0, ("reel",))
    assert all(t.piece not in pretrain and t.genre == "reel" and t.family == "strings" for t in target)


def test_a_track_renders_the_same_samples_every_time():
    t = scores.heldout_tracks(0, "strings", 1, 3.0, ("reel",))[0]
    a, b = scores.render(t), scores.render(t)
    assert a.dtype == np.float32 and len(a) == 3 * scores.SR
    assert np.array_equal(a, b) and 0.5 < np.abs(a).max() <= 1.0
    assert np.array_equal(np.round(a * 32767), a * 32767)  # 16-bit values


def _sha(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_a_killed_build_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A build stopped in the LM phase (its finished codec phases without the optimiser's state, as
    committed between sessions), and a fresh build folder seeded with the finished codec phases,
    both resume to the weights of a build never stopped (one Phase class runs both phases, so
    this covers a resume inside the codec phase too)."""
    cfg = mini.MiniConfig.quick()
    phases = tmp_path / "phases"
    whole = mini.build_mini(tmp_path / "whole", tmp_path / "work-whole", cfg, phases)
    assert sorted(p.name for p in phases.iterdir()) == sorted(
        f"{name}-{part}" for name in ("codec", "refine", "lm") for part in ("state.json", "weights.safetensors")
    )
    assert len(whole["codec_loss"]) == cfg.codec_steps and len(whole["lm_loss"]) == cfg.lm_steps
    assert len(whole["refine_loss"]) == cfg.refine_steps
    # saves: codec init, step 2, step 4 (codec done), refine step 2 (done), lm step 2: killed in the LM phase
    for stop_after in (5,):
        work = tmp_path / f"work-{stop_after}"
        saves = []
        real_save = mini.Phase.save

        def save_then_die(self, saves=saves, stop_after=stop_after, real_save=real_save):
            real_save(self)
            saves.append(self.name)
            if len(saves) == stop_after:
                raise KeyboardInterrupt("killed")

        monkeypatch.setattr(mini.Phase, "save", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            mini.build_mini(tmp_path / f"out-{stop_after}", work, cfg)
        monkeypatch.setattr(mini.Phase, "save", real_save)
        if stop_after == 5:  # the codec phases are done: only their weights travel between sessions
            (work / "codec-optimizer.pt").unlink()
            (work / "refine-optimizer.pt").unlink()
        again = mini.build_mini(tmp_path / f"out-{stop_after}", work, cfg)
        assert again["sha256"] == whole["sha256"] == _sha(tmp_path / f"out-{stop_after}")
        assert again["codec_loss"] == whole["codec_loss"] and again["lm_loss"] == whole["lm_loss"]
        assert again["refine_loss"] == whole["refine_loss"]

    # the next session: a fresh build folder, the committed finished codec phase, the LM to train
    for name in ("lm-state.json", "lm-weights.safetensors"):
        (phases / name).unlink()
    seeded = mini.build_mini(tmp_path / "out-seeded", tmp_path / "work-seeded", cfg, phases)
    assert seeded["sha256"] == whole["sha256"]
