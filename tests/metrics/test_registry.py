"""The metric registry is the one list: docs/metrics.md is generated from it and the pages,
summary and verdicts read it."""

from pathlib import Path

from musicgen_lora.metrics import registry as M
from musicgen_lora.metrics.comparison import CHECKS
from musicgen_lora.metrics.verdict import FLAG_FIGURES
from musicgen_lora.report.html import CLIP_KEYS, label
from musicgen_lora.report.page import MEAN_KEYS

ROOT = Path(__file__).resolve().parents[2]


def test_docs_metrics_is_generated_from_the_registry():
    assert (ROOT / M.DOC).read_text(encoding="utf-8") == M.markdown(), (
        "docs/metrics.md is stale: python -m musicgen_lora.metrics.registry --write"
    )
    for m in M.METRICS:
        assert f"`{m.key}`" in M.markdown()


def test_check_mode_fails_on_a_stale_doc(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / M.DOC).write_text("# old\n")
    assert M.doc_main(["--check"]) == 1
    assert "registry --write" in capsys.readouterr().out
    assert M.doc_main(["--write"]) == 0 and M.doc_main(["--check"]) == 0


def test_every_reader_takes_its_keys_from_the_registry():
    assert list(CHECKS) == [m.key for m in M.METRICS if m.check]
    assert all(isinstance(lower, bool) for lower in CHECKS.values()), "a check needs a direction"
    assert CLIP_KEYS == M.keys(cell=True) and MEAN_KEYS == M.keys(mean=True)
    assert set(FLAG_FIGURES) == {m.key for m in M.METRICS if m.flag}
    assert all(m.defect for m in M.METRICS if m.flag), "a flag figure's defect needs words for the verdict"
    labels = [m.label for m in M.METRICS]
    assert len(set(labels)) == len(labels) and label("style_fd") == "style FD (musicnn)"
    assert label("not_a_metric") == "not_a_metric"
