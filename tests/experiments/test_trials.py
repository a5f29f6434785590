"""The trials command end to end: real `dvc exp run` in a temporary git repo, tags, compare."""

import json
import re
import subprocess

import pytest
import soundfile as sf
from ruamel.yaml import YAML

from bench.pipeline import workspace_trial_times

from conftest import make_project, sh
from report.helpers import browser_expected, chromium, probe

pytestmark = pytest.mark.slow

TRIALS = {
    "trials": [
        {
            "name": "trial-a",
            "description": "padded to 6 s, padding left in the loss",
            "params": {
                "train.rank": 4,
                "train.alpha": 8.0,
                "train.lr": 0.0003,
                "train.epochs": 1,
                "train.mask_padding": False,
                "encode.pad_to_seconds": 6.0,
            },
        },
        {
            "name": "trial-b",
            "description": "masked, rank 8",
            "params": {"train.rank": 8, "train.alpha": 16.0, "train.lr": 0.00005, "train.epochs": 1, "train.dropout": 0.05},
        },
    ]
}


def trial_project(root):
    """A tiny project with the two-trial manifest committed; returns its environment."""
    env = make_project(root, tracks=3)
    (root / "experiments").mkdir()
    YAML().dump(TRIALS, root / "experiments/trials.yaml")
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "trials"], root, env)
    return env


def test_trials_tags_params_and_report(tmp_path):
    env = trial_project(tmp_path)
    none = subprocess.run(
        ["python", "-m", "musicgen_lora", "compare"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert none.returncode == 1 and "nothing to compare here" in none.stderr, none.stderr
    assert "Traceback" not in none.stderr and not (tmp_path / "reports").exists()
    # one trial the plain way, then the rest through `dvc exp run --queue` and two `dvc queue` workers
    # (the tagged trial-a is skipped there): both paths give the same kind of tag, nothing leaks between
    out = sh(["python", "-m", "musicgen_lora", "trials", "trial-a"], tmp_path, env)
    assert "trial-a: ok" in out and "trial-b" not in out
    out = sh(["python", "-m", "musicgen_lora", "trials", "--queue", "-j", "2"], tmp_path, env)
    assert "trial-a: skipped: tag exists" in out and "trial-b: ok" in out, out

    assert sh(["git", "tag", "-l", "trial-*"], tmp_path, env).split() == ["trial-a", "trial-b"]
    msg = sh(["git", "tag", "-l", "--format=%(contents)", "trial-a"], tmp_path, env)
    assert "padding left in the loss" in msg and "train.mask_padding: False" in msg
    times = workspace_trial_times(tmp_path)  # what `make bench` reports as trials_wall_s
    assert times["first_trial_estimated"] is False and set(times["trial_s"]) == {"trial-a", "trial-b"}
    assert all(s > 0 for s in times["trial_s"].values()) and f"wall_s: {times['trial_s']['trial-a']}" in msg
    assert sh(["git", "status", "--porcelain", "params.yaml"], tmp_path, env) == ""

    rows = json.loads(sh(["python", "-m", "musicgen_lora", "compare", "--trials", "--json"], tmp_path, env))
    rows = {r["name"]: r for r in rows}
    a, b = rows["trial-a"]["params"], rows["trial-b"]["params"]
    assert a["train"]["rank"] == 4 and a["train"]["mask_padding"] is False and a["encode"]["pad_to_seconds"] == 6.0
    assert b["train"]["rank"] == 8 and b["train"]["lr"] == 0.00005 and isinstance(b["train"]["alpha"], float)
    # trial-a's overrides did not leak into trial-b
    assert b["train"]["mask_padding"] is True and b["encode"]["pad_to_seconds"] is None
    assert b["train"]["dropout"] == 0.05 and a["train"]["dropout"] == 0.0
    for r in rows.values():
        # epoch 0 (base) and the one trained epoch; headline metrics from dvc exp show (base and best),
        # every model's figures from the tag's summary.json
        assert r["figures"]["loss_objective"] > 0 and len(r["valid_losses"]) == 2
        assert set(r["metrics"]["valid_loss_real"]) == {"base", "best"}
        assert set(r["figures"]["valid_loss_real"]) == {"base", "best", "final"}

    again = subprocess.run(
        ["python", "-m", "musicgen_lora", "trials", "trial-a"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "tag exists" in again.stdout

    sh(["python", "-m", "musicgen_lora", "compare", "--trials"], tmp_path, env)
    report = (tmp_path / "reports/trials.md").read_text()
    assert "| trial-a |" in report and "| trial-b |" in report
    # ranked by the musicnn style distance, intervals read from each tag's metrics/summary.json
    ranking = report.split("## Ranked by verdict, then style (musicnn)")[1]
    assert "| 1 | trial-" in ranking and "| 2 | trial-" in ranking and "[" in ranking
    # trial-a trained on clips padded to 6 s: also evaluated at 6 s, the part past 3 s compared with base
    summary_a = json.loads(sh(["git", "show", "trial-a:metrics/summary.json"], tmp_path, env))
    assert summary_a["padded"]["pad_to_seconds"] == 6.0 and summary_a["padded"]["n"] == 2
    assert "past_silence_code_share" in summary_a["padded"]["delta"]
    assert "padded" not in json.loads(sh(["git", "show", "trial-b:metrics/summary.json"], tmp_path, env))
    assert (tmp_path / "reports/trials_valid_loss.png").stat().st_size > 1000

    # the cross-trial page: each prompt under each trial's best adapter, audio read from the tags
    page = tmp_path / "reports/trials.html"
    srcs = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', page.read_text())
    assert len(srcs) == 2 * 2  # 2 prompts x 2 trials
    for trial in ("trial-a", "trial-b"):
        mine = [s for s in srcs if s.startswith(f"trials_audio/{trial}/")]
        assert len(mine) == 2, srcs
        for src in mine:
            assert sf.info(str(page.parent / src)).duration == pytest.approx(3.0, abs=0.1)
    if browser_expected():  # in a browser too (tests/report/test_page_browser.py has the details)
        result, console = probe(chromium(), page, tmp_path / "profile")
        assert result["loaded"] == 4 and result["errors"] == [] and console == [], (result, console)

    # the same runs as the commit's experiments (what a user's own `dvc exp run`s are): ranked, with
    # the params they vary and each run's verdict, and a page to hear them side by side
    out = sh(["python", "-m", "musicgen_lora", "compare"], tmp_path, env)
    mine = (tmp_path / "reports/experiments.md").read_text()
    assert "# Your experiments" in mine and mine in out + "\n"
    header = next(line for line in mine.splitlines() if line.startswith("| run |"))
    assert "train.rank" in header and "train.lr" in header and "train.epochs" not in header  # only what varies
    assert "| trial-a | " in mine and "| trial-b | " in mine and "| 1 | trial-" in mine
    verdicts = {"improved", "inert", "degraded", "not closer", "overfit", "forgets prompts", "copies training audio"}
    for row in (line for line in mine.splitlines() if line.startswith("| trial-")):
        best, final = row.split(" | ")[header.split(" | ").index("verdict best / final")].split(" / ")
        assert set(best.split(", ")) <= verdicts and set(final.split(", ")) <= verdicts, row
    assert len(re.findall(r"<audio ", (tmp_path / "reports/experiments.html").read_text())) == 2 * 2
    assert (tmp_path / "reports/trials.md").read_text() == report  # the trials' report is left as it was
    # named revisions: an unknown one is one line before anything is read or written
    bad = subprocess.run(
        ["python", "-m", "musicgen_lora", "compare", "trial-a", "no-such-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.strip().startswith("compare: 'no-such-run' is no experiment"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and (tmp_path / "reports/experiments.md").read_text() == mine
    # what a user types to see their experiments side by side fits a 160-column terminal unabridged
    table = sh(["python", "-m", "musicgen_lora", "show"], tmp_path, env).splitlines()
    assert table[0].split()[:4] == ["run", "pad_to_seconds", "alpha", "dropout"] and len(table) == 4, table
    runs = {line.split()[0]: line.split() for line in table[1:3]}  # in the order dvc exp show dates them
    assert set(runs) == {"trial-a", "trial-b"} and max(map(len, table)) <= 160, table
    assert runs["trial-a"][1:7] == ["6.0", "8.0", "0.0", "0.0003", "False", "4"], table

    # a tag brings back that trial's adapters exactly
    sh(["git", "checkout", "-q", "trial-a"], tmp_path, env)
    sh(["dvc", "checkout", "-q"], tmp_path, env)
    lock = YAML(typ="safe").load((tmp_path / "dvc.lock").read_text())
    md5 = {o["path"]: o["md5"] for o in lock["stages"]["train"]["outs"]}
    assert json.loads((tmp_path / "models/best_model/adapter_config.json").read_text())["r"] == 4
    wavs = sorted((tmp_path / "evaluation/best_model").glob("*_0_*.wav"))  # sample 0: the page's
    assert len(wavs) == 2 and len(list((tmp_path / "evaluation/best_model").glob("*.wav"))) == 2 * 2
    for wav in wavs:  # the page's copy is the tag's audio
        assert (tmp_path / "reports/trials_audio/trial-a" / wav.name).read_bytes() == wav.read_bytes()
    assert md5["models/best_model"].endswith(".dir")
