"""The files stages hand each other are read through one validating reader each: a damaged or
older file is one line naming it and how to remake it, never a KeyError or a traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.core.artifacts import read_reference
from musicgen_lora.core.errors import UserError

GOOD = {
    "thresholds": {
        "decaying_slope_lu_per_s": -0.5,
        "silent_tail_drop_lu": -10.0,
        "mostly_silent_ratio": 0.5,
        "noisy_flatness": 0.3,
        "silence_threshold_dbfs": -60.0,
    },
    "base": {"style_fd": 1.0},
    "base_valid_loss": 5.1,
    "target": {"n": 3},
    "padded": None,
    "copy": {},
}


@pytest.mark.parametrize(
    "text, words",
    [
        (json.dumps(GOOD)[:40], "not JSON"),  # truncated
        ("[1, 2]", "a JSON list, not an object"),
        (json.dumps({**GOOD, "extra": 1}), "'extra' missing or unknown"),  # an unknown key
        (json.dumps({k: v for k, v in GOOD.items() if k != "copy"}), "'copy' missing or unknown"),
        (json.dumps({**GOOD, "thresholds": {**GOOD["thresholds"], "noisy_flatness": "high"}}), "thresholds is not"),
        (json.dumps({**GOOD, "base_valid_loss": None}), "base_valid_loss is not"),
    ],
)
def test_a_damaged_reference_is_one_line(tmp_path, text, words):
    path = tmp_path / "reference.json"
    path.write_text(text)
    with pytest.raises(UserError, match="dvc repro evaluate_base") as err:
        read_reference(path)
    assert str(path) in str(err.value) and words in str(err.value) and "\n" not in str(err.value)
    path.write_text(json.dumps(GOOD))
    assert read_reference(path) == GOOD


def test_metrics_with_a_damaged_reference_says_so(tmp_path):
    """`metrics` reads the calibrated thresholds from evaluation/reference.json: before, a list
    there was a TypeError traceback."""
    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation/reference.json").write_text("[]")
    run = subprocess.run(
        [sys.executable, "-m", "musicgen_lora", "metrics", "a.wav"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().startswith("evaluation/reference.json: not the file `evaluate base` writes")


ROW = {
    "prompt": "p",
    "model": "best",
    "sample": 0,
    "seed": 0,
    "length": "clip",
    "file": "best_model/a.wav",
    "duration_s": 3.0,
    "valid_loss": 5.0,
    "flags": [],
    "metrics": {},
    "made_on": {},
}


def test_results_set_metrics_and_summaries_are_read_through_their_records(tmp_path):
    """comparison_results.jsonl, set_metrics.json, a train run's files and a run's summary: the
    shape each stage writes reads back; another shape is one line naming the file."""
    from musicgen_lora.core.artifacts import parse_results, parse_summary, read_epochs, read_results, read_set_metrics

    results = tmp_path / "comparison_results.jsonl"
    results.write_text(json.dumps(ROW) + "\n")
    assert read_results(results) == [ROW] and parse_results(json.dumps(ROW) + "\n\n", "rev:x") == [ROW]
    results.write_text(json.dumps({k: v for k, v in ROW.items() if k != "made_on"}) + "\n")
    with pytest.raises(UserError, match=r"comparison_results.jsonl: line 1: not a row evaluate writes \('made_on'"):
        read_results(results)
    sets = tmp_path / "set_metrics.json"
    sets.write_text(json.dumps({"models": {}, "target": {}, "padded": None, "prompts": {}, "bootstrap": {}}))
    assert read_set_metrics(sets).padded is None
    sets.write_text(json.dumps({"models": {}}))
    with pytest.raises(UserError, match="set_metrics.json: not the file `evaluate` writes"):
        read_set_metrics(sets)
    epochs = tmp_path / "epochs.json"
    epochs.write_text(json.dumps([{"epoch": 0, "valid_loss": 5.0}]))
    with pytest.raises(UserError, match="epochs.json: not the per-epoch losses `train` writes"):
        read_epochs(epochs)
    with pytest.raises(UserError, match="trial-1:metrics/summary.json: a summary from an older version"):
        parse_summary(json.dumps({"models": {}}), "trial-1:metrics/summary.json")


def test_a_corrupt_jsonl_line_is_one_line_naming_it(tmp_path):
    """(It was a traceback: the reader asked jsonlines' error for an attribute it does not have.)"""
    from musicgen_lora.core.artifacts import read_results

    results = tmp_path / "comparison_results.jsonl"
    results.write_text(json.dumps(ROW) + "\n{not json\n")
    with pytest.raises(UserError, match=r"comparison_results.jsonl: line 2 is not JSON; regenerate it"):
        read_results(results)
