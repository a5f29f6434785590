"""The pages in a real browser: headless Chromium (Debian's `chromium`) opens them from disk.

A probe (selftest.js beside this file, put into a copy of the page by helpers.probe; the pages
never carry it) waits for every audio element's metadata and reports durations, failed sources,
broken images, column sorting and every window error or console.error; Chromium's console log
(stderr) must be empty too. A screenshot of the run page
goes to the test's tmp dir and to /tmp/page_screenshot.png, to look at.
"""

import shutil
from pathlib import Path

import pytest

from musicgen_lora.report.page import write_run_page
from musicgen_lora.report.trials import write_trials_page

from report.helpers import MODELS, PROMPTS, chromium, fake_headline, fake_run, probe, screenshot

SHOT = Path("/tmp/page_screenshot.png")


@pytest.fixture(scope="module")
def browser():
    return chromium()


def check(result: dict, console: list[str], audio: int) -> None:
    assert result["errors"] == [] and console == [], (result["errors"], console)
    assert result["audio"] == audio and result["loaded"] == audio, result["failed"]
    assert all(d and d > 0 for d in result["durations"]), result["durations"]
    assert result["broken_images"] == []
    assert result["sort"]["unsorted"] == []


def test_run_page_loads_every_clip(browser, tmp_path):
    r = fake_run(tmp_path)
    write_run_page(r["page"], r["rows"], r["eval_dir"], r["loss"], r["summary"], r["samples"])
    result, console = probe(browser, r["page"], tmp_path / "profile")
    check(result, console, len(PROMPTS) * len(MODELS) + 3 * 2)
    assert result["images"] == len(PROMPTS) * len(MODELS) + 1  # the spectrograms and the loss figure
    assert sorted(set(result["durations"])) == [0.5, 1.0]  # samples, clips
    shot = screenshot(browser, r["page"], tmp_path / "page.png", tmp_path / "profile")
    shutil.copy(shot, SHOT)


def test_trials_page_loads_and_sorts(browser, tmp_path):
    r = fake_run(tmp_path)
    best = [x for x in r["rows"] if x["model"] == "best"]
    trials = [
        {
            "name": f"trial-{k}",
            "description": "",
            "metrics": fake_headline(k),
            "rows": [{**x, "path": r["eval_dir"] / x["file"], "valid_loss": x["valid_loss"] - k} for x in best],
        }
        for k in (1, 2, 3)
    ]
    page = write_trials_page(tmp_path / "reports/trials.html", trials)
    result, console = probe(browser, page, tmp_path / "profile")
    check(result, console, len(PROMPTS) * 3)
    assert result["sort"]["checked"] > 0


def test_the_probe_sees_a_broken_link_and_a_console_error(browser, tmp_path):
    """The checks are not blind: a missing wav is a failed source and a load error, and a
    console.error shows in the probe and in Chromium's log."""
    r = fake_run(tmp_path)
    write_run_page(r["page"], r["rows"], r["eval_dir"], r["loss"], r["summary"], r["samples"])
    (r["samples"] / "epoch_1/00.wav").unlink()
    r["page"].write_text(r["page"].read_text().replace("</body>", '<script>console.error("boom")</script></body>'))
    result, console = probe(browser, r["page"], tmp_path / "profile")
    assert result["failed"] == ["train/samples/epoch_1/00.wav"] and result["loaded"] == result["audio"] - 1
    assert any("epoch_1/00.wav" in e for e in result["errors"]) and "console.error: boom" in result["errors"]
    assert any("boom" in line for line in console)
