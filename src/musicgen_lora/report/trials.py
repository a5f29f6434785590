"""The side-by-side page of runs (`reports/trials.html`, `reports/experiments.html`): every
run's best adapter on the same prompt.

Nothing else lets a user hear trial-3's best next to trial-4a's best for one prompt. Each
prompt gets a table with one row per trial (player, valid loss, headline numbers, flags), and a
table of the trials' own numbers sits on top; a click on a column header sorts by it (inline
script, no network). The audio is wherever the caller put it (`compare` extracts it from each
trial's tag into `reports/trials_audio/`); links are relative to the page.

This module prepares the data (columns, rows, URLs); `trials.html.j2` beside it is the HTML.
"""

from __future__ import annotations

from pathlib import Path

from ..core.files import write_text
from .html import CLIP_KEYS, href, label, number, render

MODELS = ("base", "best", "final")


def overview(trials: list[dict]) -> tuple[list[tuple[str, str]], list[dict]]:
    """Columns ((label, "num" | "text" | ""), "" not sortable) and one row per trial: its headline
    metrics (metrics/headline.json at its tag, as `dvc exp show` reports them) and the means of its
    best adapter's clips on this page."""
    keys = [k for k in CLIP_KEYS if any(k in (r.get("metrics") or {}) for t in trials for r in t.get("rows", []))]
    cols = [
        ("run", "text"),
        ("description", ""),
        ("verdict best / final", "text"),
        ("of the way (best), %", "num"),
        ("best epoch", "num"),
        ("objective (best)", "num"),
    ]
    cols += [(f"valid loss {n}", "num") for n in MODELS] + [
        ("style FD best (musicnn)", "num"),
        ("flagged best", "num"),
        ("checks best vs base", "text"),
    ]
    cols += [(f"best: {label(k)}", "num") for k in keys]
    rows = []
    for t in trials:
        m, clips = t.get("metrics") or {}, t.get("rows", [])
        verdict = m.get("verdict") or {}
        rows.append(
            {
                "name": t["name"],
                "description": t.get("description", ""),
                "checks": checks_text(m.get("checks")),
                "verdict": f"{verdict.get('best', '-')} / {verdict.get('final', '-')}",
                "numbers": [
                    (m.get("style_share_pct") or {}).get("best"),
                    m.get("best_epoch"),
                    m.get("loss_objective"),
                    *((m.get("valid_loss_real") or {}).get(n) for n in MODELS),
                    (m.get("style_fd") or {}).get("best"),
                    (m.get("flagged") or {}).get("best"),
                ],
                "means": [mean([(r.get("metrics") or {}).get(k) for r in clips]) for k in keys],
            }
        )
    return cols, rows


def checks_text(checks) -> str:
    """headline.json's tally ({"better": 2, "worse": 0, "no_measurable_difference": 3}) in words."""
    if not isinstance(checks, dict):
        return "" if checks is None else str(checks)
    return ", ".join(f"{checks.get(k, 0)} {k.replace('_', ' ')}" for k in ("better", "worse", "no_measurable_difference"))


def mean(values: list) -> float | None:
    found = [v for v in map(number, values) if v is not None]
    return sum(found) / len(found) if found else None


def prompt_table(prompt: str, entries: list[tuple[str, dict]], page: Path) -> dict:
    """One row per trial for `prompt`; entries are (trial name, its best-model row with `path`)."""
    keys = [k for k in CLIP_KEYS if any(k in (r.get("metrics") or {}) for _, r in entries)]
    cols = (
        [("run", "text"), ("best adapter", ""), ("valid loss", "num")] + [(label(k), "num") for k in keys] + [("flags", "")]
    )
    return {
        "prompt": prompt,
        "columns": cols,
        "entries": [
            {
                "name": name,
                "url": href(r["path"], page),
                "valid_loss": r.get("valid_loss"),
                "numbers": [(r.get("metrics") or {}).get(k) for k in keys],
                "flags": list(r.get("flags") or []),
            }
            for name, r in entries
        ],
    }


def write_trials_page(page: Path, trials: list[dict], title: str = "Trials: best adapters side by side") -> Path:
    """`trials`: [{name, description, metrics (the trial's headline.json), rows (its best-model
    rows of comparison_results.jsonl, each with `path`: the extracted wav)}], in report order."""
    page = Path(page)
    prompts = list(dict.fromkeys(r["prompt"] for t in trials for r in t.get("rows", [])))
    tables = [
        prompt_table(p, [(t["name"], r) for t in trials for r in t.get("rows", []) if r["prompt"] == p], page)
        for p in prompts
    ]
    columns, rows = overview(trials)
    write_text(
        page,
        render(
            "trials.html.j2",
            title=title,
            columns=columns,
            trials=rows,
            prompts=tables,
            missing=[t["name"] for t in trials if not t.get("rows")],
        ),
    )
    return page
