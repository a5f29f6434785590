"""The cross-trial page (`reports/trials.html`): every trial's best adapter on the same prompt.

Nothing else lets a user hear trial-3's best next to trial-4a's best for one prompt. Each
prompt gets a table with one row per trial (player, valid loss, headline numbers, flags), and a
table of the trials' own numbers sits on top; a click on a column header sorts by it (inline
script, no network). The audio is wherever the caller put it (`compare` extracts it from each
trial's tag into `reports/trials_audio/`); links are relative to the page.
"""

from __future__ import annotations

from pathlib import Path

from ..core.files import write_text
from .html import CLIP_KEYS, audio, document, esc, flags, href, label, num_cell, number

MODELS = ("base", "best", "final")


def _head(columns: list[tuple[str, str]]) -> str:
    """`columns`: (label, "num" | "text" | "") where "" is not sortable."""
    cells = "".join(f'<th{" class=n" if kind == "num" else ""}{f" data-sort={kind}" if kind else ""}>{esc(text)}</th>'
                    for text, kind in columns)
    return f"<thead><tr>{cells}</tr></thead>"


def overview(trials: list[dict]) -> str:
    """One row per trial: its headline metrics (metrics/headline.json at its tag, as `dvc exp
    show` reports them) and the means of its best adapter's clips on this page."""
    keys = [k for k in CLIP_KEYS if any(k in (r.get("metrics") or {}) for t in trials for r in t.get("rows", []))]
    cols = [("trial", "text"), ("description", ""), ("best epoch", "num"), ("objective (best)", "num")]
    cols += [(f"valid loss {n}", "num") for n in MODELS] + [("style FD best (musicnn)", "num"),
                                                             ("flagged best", "num"), ("checks best vs base", "text")]
    cols += [(f"best: {label(k)}", "num") for k in keys]
    body = []
    for t in trials:
        m, rows = t.get("metrics") or {}, t.get("rows", [])
        means = [mean([(r.get("metrics") or {}).get(k) for r in rows]) for k in keys]
        body.append(f'<tr><th scope="row">{esc(t["name"])}</th><td>{esc(t.get("description", ""))}</td>'
                    + num_cell(m.get("best_epoch")) + num_cell(m.get("loss_objective"))
                    + "".join(num_cell((m.get("valid_loss_real") or {}).get(n)) for n in MODELS)
                    + num_cell((m.get("style_fd") or {}).get("best")) + num_cell((m.get("flagged") or {}).get("best"))
                    + f'<td>{esc(checks_text(m.get("checks")))}</td>' + "".join(num_cell(v) for v in means) + "</tr>")
    return (f'<section id="trials"><h2>Trials ({len(trials)})</h2><p class="muted">valid loss: held-out, real '
            f'frames only; objective: what training minimised (counts padding when mask_padding is false); '
            f'"best:" columns: means over the best adapter\'s clips on this page (the first sample of each '
            f'prompt), so they differ from the run summary\'s means over every sample.</p>'
            f'<table class="sortable">{_head(cols)}<tbody>{"".join(body)}</tbody></table></section>')


def checks_text(checks) -> str:
    """headline.json's tally ({"better": 2, "worse": 0, "no_measurable_difference": 3}) in words."""
    if not isinstance(checks, dict):
        return "" if checks is None else str(checks)
    return ", ".join(f"{checks.get(k, 0)} {k.replace('_', ' ')}" for k in ("better", "worse", "no_measurable_difference"))


def mean(values: list) -> float | None:
    found = [v for v in map(number, values) if v is not None]
    return sum(found) / len(found) if found else None


def prompt_table(prompt: str, entries: list[tuple[str, dict]], page: Path) -> str:
    """One row per trial for `prompt`; entries are (trial name, its best-model row with `path`)."""
    keys = [k for k in CLIP_KEYS if any(k in (r.get("metrics") or {}) for _, r in entries)]
    cols = [("trial", "text"), ("best adapter", ""), ("valid loss", "num")] + [(label(k), "num") for k in keys] \
        + [("flags", "")]
    body = []
    for name, r in entries:
        m = r.get("metrics") or {}
        body.append(f'<tr><th scope="row">{esc(name)}</th><td>{audio(href(r["path"], page), f"{name}: {prompt}")}</td>'
                    + num_cell(r.get("valid_loss")) + "".join(num_cell(m.get(k)) for k in keys)
                    + f"<td>{flags(r.get('flags'))}</td></tr>")
    return f'<h3>{esc(prompt)}</h3><table class="sortable">{_head(cols)}<tbody>{"".join(body)}</tbody></table>'


def write_trials_page(page: Path, trials: list[dict], title: str = "Trials: best adapters side by side") -> Path:
    """`trials`: [{name, description, metrics (the trial's headline.json), rows (its best-model
    rows of comparison_results.jsonl, each with `path`: the extracted wav)}], in report order."""
    page = Path(page)
    prompts = list(dict.fromkeys(r["prompt"] for t in trials for r in t.get("rows", [])))
    sections = []
    for prompt in prompts:
        entries = [(t["name"], r) for t in trials for r in t.get("rows", []) if r["prompt"] == prompt]
        sections.append(prompt_table(prompt, entries, page))
    missing = [t["name"] for t in trials if not t.get("rows")]
    note = f'<p class="muted">No audio found for: {esc(", ".join(missing))}.</p>' if missing else ""
    body = (f"<h1>{esc(title)}</h1><p class=\"muted\">Each trial's best adapter (its lowest valid loss) on the "
            f"same prompts and seeds. Click a column header to sort by it.</p>{note}" + overview(trials)
            + f'<section id="prompts"><h2>By prompt ({len(prompts)})</h2>{"".join(sections)}</section>')
    write_text(page, document(title, body))
    return page
