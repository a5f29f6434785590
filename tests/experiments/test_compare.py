"""The report's ranking: by best's verdict, then its musicnn distance, with intervals, and a paired
interval against the top run only where both generated the same prompts and seeds."""

import os

from musicgen_lora.experiments.compare import style_ranking

PAIRS = [["a", 0], ["b", 0], ["c", 0], ["a", 1], ["b", 1], ["c", 1]]  # six: verdicts need MIN_PAIRS


def summary(fd: float, sims: list[float], pairs=PAIRS) -> dict:
    return {
        "set": {
            "base": {"style_fd": 30.0},
            "best": {
                "style_fd": fd,
                "n_generated": 6,
                "n_target": 6,
                "top_tags": [["techno", 0.5]],
                "style_fd_vs_base": {"delta": fd - 30, "ci95": [fd - 35, fd - 25], "n": 6},
            },
        },
        "models": {
            "best": {
                "mean": {"style_similarity": sum(sims) / len(sims)},
                "delta_vs_base": {"style_similarity": {"delta": 0.1, "ci95": [-0.1, 0.3], "n": 6}},
            }
        },
        "per_clip": {"pairs": pairs, "style_similarity": {"best": sims}},
        "target": {"n": 6, "top_tags": [["piano", 0.7]]},
        "bootstrap": {"seed": 0, "resamples": 500, "level": 0.95},
    }


def test_trials_ranked_by_style_with_intervals():
    rows = [
        {"name": "far", "summary": summary(20.0, [0.5, 0.6, 0.55, 0.62, 0.58, 0.52])},
        {"name": "near", "summary": summary(10.0, [0.8, 0.85, 0.9, 0.82, 0.86, 0.84])},
        {"name": "same", "summary": summary(12.0, [0.81, 0.84, 0.9, 0.83, 0.85, 0.85])},
        {"name": "other-prompts", "summary": summary(15.0, [0.5] * 6, pairs=[["z", 0]] * 6)},
        {"name": "old", "summary": {}},
    ]  # a tag from before musicnn: left out of the ranking
    table = style_ranking(rows).splitlines()
    ranked = [line.split(" | ")[1] for line in table if line.startswith("| ") and line[2].isdigit()]
    assert ranked == ["near", "same", "other-prompts", "far"]
    by_name = {line.split(" | ")[1]: line for line in table if line.startswith("| ") and line[2].isdigit()}
    assert "-20 [-25, -15] | better" in by_name["near"] and "(top)" in by_name["near"]
    assert "no measurable difference" in by_name["same"] and "worse" in by_name["far"]
    assert "not paired" in by_name["other-prompts"] and "piano" in table[0]
    assert "No run" in style_ranking([{"name": "old", "summary": {}}])


def test_the_verdict_ranks_before_the_style_distance():
    """A run that degrades or copies ranks below one that improved, however close its style
    distance: closer audio that is noise is not the pick."""

    def run(name, fd, words):
        return {"name": name, "summary": {**summary(fd, [0.5] * 6), "verdicts": {"best": {"words": words}}}}

    rows = [
        run("copies", 5.0, ["improved", "copies training audio"]),
        run("noisy", 8.0, ["degraded"]),
        run("inert", 29.0, ["inert"]),
        run("closer", 20.0, ["improved"]),
        run("closest", 12.0, ["improved"]),
    ]
    table = style_ranking(rows).splitlines()
    ranked = [line.split(" | ")[1:3] for line in table if line.startswith("| ") and line[2].isdigit()]
    assert ranked == [
        ["closest", "improved"],
        ["closer", "improved"],
        ["inert", "inert"],
        ["noisy", "degraded"],
        ["copies", "improved, copies training audio"],
    ]


def test_compare_without_the_trial_tags_leaves_the_reports_alone(tmp_path, monkeypatch, capsys):
    """A fresh clone has no trial tags: compare says how to get them, exits non-zero and writes
    nothing over the committed reports; outside a git repository it says so in one line."""
    import subprocess

    from musicgen_lora.__main__ import main

    from conftest import ROOT

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "trials.yaml").write_text((ROOT / "experiments" / "trials.yaml").read_text())
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "trials.md").write_text("committed report")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--trials"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "compare: not inside a git repository; run it in the project's clone"
    subprocess.run(["git", "init", "-q"], check=True)
    assert main(["compare", "--trials"]) == 1
    err = capsys.readouterr().err.strip()
    assert "none of the 5 trials of experiments/trials.yaml has a git tag here" in err and "git fetch --tags" in err
    assert "make trials" in err and len(err.splitlines()) == 1
    assert (reports / "trials.md").read_text() == "committed report" and sorted(os.listdir(reports)) == ["trials.md"]
