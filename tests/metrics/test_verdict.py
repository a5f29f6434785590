"""Verdicts from measured intervals: each word comes from the figures that justify it, and an
improvement says how close it got (share of the way, what musicnn hears)."""

import numpy as np

from musicgen_lora.metrics import bootstrap as B
from musicgen_lora.metrics.style import self_distance
from musicgen_lora.metrics.verdict import judge, sentence

THRESHOLDS = {
    "noisy_flatness": 0.3,
    "decaying_slope_lu_per_s": -0.5,
    "silent_tail_drop_lu": -10.0,
    "mostly_silent_ratio": 0.5,
    "silence_threshold_dbfs": -60.0,
}


def iv(delta, lo, hi, n=16):
    return {"delta": delta, "ci95": [lo, hi], "n": n}


def summary(
    style=None,
    deltas=None,
    means=None,
    flagged=(0, 0),
    fd=(117.0, 117.0),
    fd_iv=None,
    final_vs_best=None,
    heard=("techno", "drums", "beat"),
    target=("flute", "classical", "slow"),
    floor=20.0,
):
    none = iv(0.0, -0.1, 0.1)
    deltas = {
        "style_similarity": none,
        "tag_kl": none,
        "spectral_flatness": iv(0.0, -0.01, 0.01),
        "valid_loss": iv(-0.5, -0.6, -0.4),
        **(deltas or {}),
    }
    checks = {
        k: B.verdict(B.Interval.from_dict(v), k != "style_similarity")
        for k, v in deltas.items()
        if k in ("style_similarity", "tag_kl", "valid_loss")
    }
    checks["style_fd"] = (style or {}).get("style_fd", "no measurable difference")
    model = {"delta_vs_base": deltas, "flagged_clips": flagged[1], "mean": {"spectral_flatness": 0.05, **(means or {})}}
    tags = [[t, 0.4] for t in heard]
    return {
        "best_epoch": 2,
        "thresholds": THRESHOLDS,
        "models": {"base": {"flagged_clips": flagged[0], "mean": {}}, "best": model, "final": model},
        "checks": {"best_vs_base": checks, "final_vs_base": checks},
        "set": {
            "base": {"style_fd": fd[0]},
            "best": {"style_fd": fd[1], "style_fd_vs_base": fd_iv, "top_tags": tags},
            "final": {"style_fd": fd[1], "style_fd_vs_base": fd_iv, "top_tags": tags},
        },
        "target": {"top_tags": [[t, 0.5] for t in target], "self_fd": {"mean": floor}},
        "final_vs_best_valid_loss": final_vs_best,
    }


def test_nothing_moved_is_inert_and_suggests_more_training():
    v = judge(summary(), "best")
    assert v["words"] == ["inert"] and "higher train.lr" in v["suggestion"]
    assert "improved" not in sentence("best", v)


def test_closer_but_far_says_how_far_and_what_it_still_sounds_like():
    s = summary(style={"style_fd": B.BETTER}, fd=(117.0, 104.0), fd_iv=iv(-13.0, -19.7, -5.9))
    v = judge(s, "best")
    assert v["words"] == ["improved"]
    assert v["style_share"]["share_pct"] == round(100 * 13 / 97, 1)  # base 117 -> floor 20
    text = sentence("best", v)
    assert "13% of the way from base to your music" in text and "still heard as techno, drums, beat" in text
    assert "your music: flute, classical, slow" in text and "Worth trying" in text
    assert "it worked" not in text.lower()


def test_close_and_heard_like_the_target_reads_differently():
    s = summary(
        style={"style_fd": B.BETTER}, fd=(117.0, 40.0), fd_iv=iv(-77.0, -90.0, -60.0), heard=("flute", "classical", "slow")
    )
    v = judge(s, "best")
    text = sentence("best", v)
    assert v["words"] == ["improved"] and v["suggestion"] is None
    assert "79% of the way" in text and "now heard as flute, classical, slow, like your music" in text


def test_noise_is_degraded_and_names_the_figure():
    s = summary(deltas={"spectral_flatness": iv(0.25, 0.2, 0.3)}, means={"spectral_flatness": 0.3}, flagged=(0, 5))
    v = judge(s, "best")
    assert v["words"][0] == "degraded" and "lower train.lr" in v["suggestion"]
    assert any("noise (spectral flatness)" in b for b in v["because"]) and any("5 clips flagged" in b for b in v["because"])


def test_a_move_away_from_a_flag_is_not_a_defect():
    """Tails that rose 4 LU in base and stay level now moved 'down', but nowhere near a silent tail."""
    s = summary(deltas={"tail_drop_lu": iv(-3.9, -5.4, -2.2)}, means={"tail_drop_lu": 0.0})
    assert judge(s, "best")["words"] == ["not closer"]


def test_final_after_the_turn_is_overfit():
    s = summary(final_vs_best=iv(0.2, 0.1, 0.3, n=40))
    assert judge(s, "final")["words"] == ["inert", "overfit"]
    assert "overfit" not in judge(s, "best")["words"]
    assert "fewer epochs" in judge(s, "final")["suggestion"] or "higher train.lr" in judge(s, "final")["suggestion"]


def test_the_target_floor_is_a_distance_of_two_halves():
    rng = np.random.default_rng(0)
    same = self_distance(rng.normal(size=(24, 8)), seed=0)
    assert same["n"] == 24 and same["range95"][0] <= same["mean"] <= same["range95"][1]
    assert self_distance(rng.normal(size=(3, 8)), seed=0) is None
    assert self_distance(rng.normal(size=(24, 8)), seed=1) != same


def test_off_style_prompts_that_sound_like_the_target_forget_the_prompt():
    s = summary(style={"style_fd": B.BETTER}, fd=(117.0, 90.0), fd_iv=iv(-27.0, -35.0, -20.0))
    s["models"]["best"]["off_style"] = {"style_similarity": iv(0.2, 0.1, 0.3, n=6)}
    v = judge(s, "best")
    assert v["words"] == ["improved", "forgets prompts"] and "captions still steer" in v["suggestion"]
    s["models"]["best"]["off_style"] = {"style_similarity": iv(0.2, 0.1, 0.3, n=4)}  # too few pairs to tell
    assert judge(s, "best")["words"] == ["improved"]


def test_a_copy_has_its_own_word_and_is_not_counted_as_a_defect():
    s = summary(style={"style_fd": B.BETTER}, fd=(117.0, 60.0), fd_iv=iv(-57.0, -70.0, -40.0), flagged=(0, 2))
    s["models"]["best"]["flags"] = {"near_copy": 2}
    s["models"]["best"]["copy_only_clips"] = 2
    v = judge(s, "best")
    assert v["words"] == ["improved", "copies training audio"] and "fewer epochs" in v["suggestion"]
    assert "2 clip(s) flagged near_copy" in " ".join(v["because"])


def test_silence_codes_past_the_real_length_are_degraded():
    """trial-1's lesson: padding in the loss, and the adapter generates silence codes where its
    clips were padded; measurable, it is a defect whatever the clip-length figures say."""
    s = summary()
    s["padded"] = {"model": "best", "delta": {"past_silence_code_share": iv(0.0037, 0.0018, 0.0055, n=8)}}
    best = judge(s, "best")
    assert "degraded" in best["words"] and any("past the real-audio length" in b for b in best["because"])
    assert "degraded" not in judge(s, "final")["words"]  # final was not generated at the padded length
    s["padded"]["delta"]["past_silence_code_share"] = iv(0.0004, -0.001, 0.002, n=8)
    assert judge(s, "best")["words"] == ["inert"]
