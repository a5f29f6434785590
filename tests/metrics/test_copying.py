"""The copy check's figures on codes whose answer is known."""

import numpy as np

from musicgen_lora.metrics.copying import WINDOW, TrainingIndex, copy_figures, window_hashes


def test_a_verbatim_stretch_is_found_where_it_came_from():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 1024, (4, 500)) for _ in range(3)]
    index = TrainingIndex.build(train)
    fresh = rng.integers(0, 1024, (4, 300))
    none = copy_figures(fresh, index, 50.0)
    assert none["copy_longest_s"] == 0 and none["copy_share"] == 0 and none["copy_clip"] == -1
    copied = fresh.copy()
    copied[:, 100:200] = train[2][:, 40:140]  # 2 s of training clip 2 from frame 40
    got = copy_figures(copied, index, 50.0)
    assert got["copy_longest_s"] == 100 / 50.0 and (got["copy_clip"], got["copy_frame"]) == (2, 40)
    assert got["copy_share"] == round((100 - WINDOW + 1) / (300 - WINDOW + 1), 4)


def test_silence_and_windows_that_do_not_continue_do_not_count():
    rng = np.random.default_rng(1)
    silence = np.array([7, 8, 9, 10])
    train = [np.concatenate([np.repeat(silence[:, None], 50, 1), rng.integers(0, 1024, (4, 200))], axis=1)]
    index = TrainingIndex.build(train, silence)
    quiet = np.repeat(silence[:, None], 120, 1)
    assert copy_figures(quiet, index, 50.0, silence)["copy_share"] == 0.0
    # two training stretches glued out of order: each is a run, the longest is one of them
    glued = np.concatenate([train[0][:, 100:130], train[0][:, 60:90]], axis=1)
    got = copy_figures(glued, index, 50.0, silence)
    assert got["copy_longest_s"] == 30 / 50.0
    assert len(window_hashes(rng.integers(0, 9, (4, 5)))) == 0


def test_a_copys_location_is_not_a_figure_that_moves():
    """copy_clip / copy_frame / copy_nn_clip say where a copy is: a different index between base and
    an adapter is not a change in the audio (it made trial-4b read "other figures moved")."""
    from musicgen_lora.metrics.comparison import per_clip_intervals

    def row(model, s, clip):
        return {
            "prompt": "p",
            "model": model,
            "sample": s,
            "length": "clip",
            "flags": [],
            "metrics": {"copy_clip": clip, "copy_nn_clip": clip, "copy_frame": clip, "copy_share": 0.0},
        }

    rows = [row("base", s, 0) for s in range(6)] + [row("best", s, 5 + s) for s in range(6)]
    out = per_clip_intervals(rows, "best", {"resamples": 200, "seed": 0, "level": 0.95})
    assert set(out) == {"copy_share"}
