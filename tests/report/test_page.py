"""The page writers on a fake run: relative links that resolve, one row per prompt and a column
per model, flags and numbers shown, missing keys tolerated, nothing fetched from the network."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from musicgen_lora.report.html import HERE
from musicgen_lora.report.page import assets_dir, write_run_page
from musicgen_lora.report.trials import write_trials_page

from report.helpers import MODELS, PROMPTS, fake_headline, fake_run


class Collect(HTMLParser):
    """Sources of audio and img elements, rows of each table (by class), every attribute value."""

    def __init__(self):
        super().__init__()
        self.audio, self.img, self.tables, self.attrs = [], [], [], []
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.attrs += [v for v in a.values() if v]
        if tag == "audio":
            self.audio.append(a)
        elif tag == "img":
            self.img.append(a["src"])
        elif tag == "table":
            self._table = {"class": a.get("class", ""), "rows": []}
            self.tables.append(self._table)
        elif tag == "tr" and self._table is not None:
            self._table["rows"].append([])
        elif tag in ("td", "th") and self._table is not None and self._table["rows"]:
            self._table["rows"][-1].append(a.get("class", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None


def parse(page: Path) -> Collect:
    c = Collect()
    c.feed(page.read_text(encoding="utf-8"))
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    r = fake_run(root)
    write_run_page(r["page"], r["rows"], r["eval_dir"], r["loss"], r["summary"], r["samples"])
    return r


def test_links_are_relative_and_resolve(run):
    page = run["page"]
    c = parse(page)
    assert len(c.audio) == len(PROMPTS) * len(MODELS) + 3 * 2  # clips + training samples (3 epochs x 2)
    assert len(c.img) == len(PROMPTS) * len(MODELS) + 1  # and the loss figure
    for src in [a["src"] for a in c.audio] + c.img:
        assert not src.startswith(("/", "file:")) and "://" not in src, src
        assert (page.parent / src).resolve().is_file(), src
    assert all("controls" in a and a.get("preload") == "metadata" for a in c.audio)
    assert "../evaluation/best_model/01_dark-driving-chiptune.wav" in [a["src"] for a in c.audio]
    assert "train/samples/epoch_2/01.wav" in [a["src"] for a in c.audio]


def test_one_row_per_prompt_one_column_per_model(run):
    text = run["page"].read_text()
    clips = next(t for t in parse(run["page"]).tables if t["class"] == "clips")
    assert len(clips["rows"]) == 1 + len(PROMPTS)  # the header row, then a row per prompt
    assert all(r.count("clip") == len(MODELS) for r in clips["rows"][1:])
    assert re.search(r"<th>prompt</th><th>base</th><th>best</th><th>final</th>", text)
    for i, p in enumerate(PROMPTS):  # each prompt with the seed that regenerates its clips
        assert f'>{p} <span class="muted">(seed {10 + i})</span></th>' in text


def test_numbers_flags_summary_and_timeline(run):
    text = run["page"].read_text()
    assert '<span class="flag">decaying</span>' in text and "decaying x1" in text
    assert "tail drop LU" in text and "code JS div" in text and "flatness" in text
    assert '<li class="ok">best vs base: valid_loss: <b>better</b>' in text
    assert '<img class="loss" src="plots/loss.png"' in text  # summarize's loss figure, not a second drawing
    assert '<li class="">best vs base: style_fd: <b>no measurable difference</b>' in text
    assert '<li class="bad">final vs base: valid_loss: <b>worse</b>' in text
    assert "training objective" in text and "set: style FD" in text
    timeline = next(t for t in parse(run["page"]).tables if t["class"] == "timeline")
    assert len(timeline["rows"]) == 1 + 3  # epochs 0, 1, 2


def test_offline_and_self_contained(run):
    text = run["page"].read_text()
    assert not re.search(r"https?://", text)
    assert not re.search(r"<(script|link|img|audio)[^>]+(src|href)=[\"']?(//|/)", text)
    assert "<script src" not in text and "<link" not in text
    # one stylesheet, inlined; no script on the run page (the browser test's probe is not in the product)
    css = (HERE / "style.css").read_text()
    assert text.count("<style>") == 1 and css in text and "<script" not in text and "selftest" not in text


def test_values_are_escaped(tmp_path):
    """The templates autoescape what they render: a prompt, a flag or a trial name with markup in
    it shows as text, in the page and in its attributes."""
    r = fake_run(tmp_path)
    odd = 'a <b>bold</b> & "quoted" prompt'
    rows = [{**x, "prompt": odd, "flags": ["<i>x</i>"]} if x["prompt"] == PROMPTS[0] else x for x in r["rows"]]
    write_run_page(r["page"], rows, r["eval_dir"], r["loss"], r["summary"], r["samples"])
    text = r["page"].read_text()
    assert "<b>bold</b>" not in text and "<i>x</i>" not in text
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34; prompt" in text
    assert f"base: {odd}" in parse(r["page"]).attrs  # the player's title, read back as it was
    page = write_trials_page(tmp_path / "trials.html", [{"name": "<trial>", "metrics": {}, "rows": []}])
    assert "&lt;trial&gt;" in page.read_text() and "<trial>" not in page.read_text()


def test_spectrograms_are_small_and_the_page_is_deterministic(run, tmp_path):
    spec = assets_dir(run["page"]) / "spec"
    assert sorted(p.name for p in spec.iterdir()) == sorted(f"{m}_{i:02d}.png" for m in MODELS for i in range(3))
    assert Image.open(spec / "best_00.png").size == (300, 80)
    before = {p: p.read_bytes() for p in [run["page"], *spec.iterdir()]}
    write_run_page(run["page"], run["rows"], run["eval_dir"], run["loss"], run["summary"], run["samples"])
    assert {p: p.read_bytes() for p in [run["page"], *spec.iterdir()]} == before
    assert not [p for p in run["page"].parent.rglob("*") if p.name.startswith(".") and "tmp" in p.name]


def test_samples_off_and_missing(tmp_path):
    r = fake_run(tmp_path)
    (r["samples"] / "index.json").write_text(json.dumps({"prompts": [], "epochs": []}))
    write_run_page(r["page"], r["rows"][:3], r["eval_dir"], None, {}, r["samples"])
    text = r["page"].read_text()
    assert "sample_prompts: []" in text and len(parse(r["page"]).audio) == 3
    write_run_page(r["page"], r["rows"][:3], r["eval_dir"], None, {}, None)
    assert 'id="samples"' not in r["page"].read_text()


def test_trials_page(run, tmp_path):
    best = [r for r in run["rows"] if r["model"] == "best"]
    trials = [
        {
            "name": f"trial-{k}",
            "description": f"rank {4 * k}",
            "metrics": fake_headline(k),
            "rows": [{**r, "path": run["eval_dir"] / r["file"], "valid_loss": r["valid_loss"] + k} for r in best],
        }
        for k in (1, 2)
    ] + [{"name": "trial-failed", "metrics": {}, "rows": []}]
    page = write_trials_page(tmp_path / "reports/trials.html", trials)
    c, text = parse(page), page.read_text()
    assert len(c.audio) == len(PROMPTS) * 2
    assert all((page.parent / a["src"]).resolve().is_file() for a in c.audio)
    sortable = [t for t in c.tables if t["class"] == "sortable"]
    assert len(sortable) == 1 + len(PROMPTS) and all(len(t["rows"]) == 1 + 2 for t in sortable[1:])
    assert len(sortable[0]["rows"]) == 1 + 3 and "No audio found for: trial-failed" in text
    assert 'data-sort="num"' in text and not re.search(r"https?://", text)
    assert text.count("<script>") == 1 and "selftest" not in text  # the sort script, not the browser test's probe
    assert "valid loss final" in text and "<td>2 better, 0 worse, 3 no measurable difference</td>" in text
