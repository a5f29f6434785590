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
from .html import CLIP_KEYS, audio, document, esc, flags, href, label, num_cell

MEAN_KEYS = ["style_fd_mfcc", "code_js_divergence", "loudness_slope_lu_per_s", "tail_drop_lu", "spectral_flatness"]


def _head(columns: list[tuple[str, str]]) -> str:
    """`columns`: (label, "num" | "text" | "") where "" is not sortable."""
    cells = "".join(f'<th{" class=n" if kind == "num" else ""}{f" data-sort={kind}" if kind else ""}>{esc(text)}</th>'
                    for text, kind in columns)
    return f"<thead><tr>{cells}</tr></thead>"


def overview(trials: list[dict]) -> str:
    """One row per trial: valid losses, means of the best model's clips, flags."""
    models = [t.get("metrics", {}).get("models", {}) for t in trials]
    keys = [k for k in MEAN_KEYS if any(k in m.get("best", {}).get("mean", {}) for m in models)]
    # valid loss on real frames (as evaluate measures it; trial-1's training-time loss counted padding)
    cols = [("trial", "text"), ("description", ""), ("best epoch", "num"), ("valid loss base", "num"),
            ("valid loss best", "num"), ("valid loss final", "num")]
    cols += [(f"best: {label(k)}", "num") for k in keys] + [("best: flags (clips)", "")]
    body = []
    for t, m in zip(trials, models):
        metrics = t.get("metrics", {})
        mean = m.get("best", {}).get("mean", {})
        counts = m.get("best", {}).get("flags") or {}
        body.append(f'<tr><th scope="row">{esc(t["name"])}</th><td>{esc(t.get("description", ""))}</td>'
                    + num_cell(metrics.get("best_epoch"))
                    + "".join(num_cell(m.get(n, {}).get("mean", {}).get("valid_loss"))
                              for n in ("base", "best", "final"))
                    + "".join(num_cell(mean.get(k)) for k in keys)
                    + f"<td>{flags(f'{f} x{c}' for f, c in counts.items())}</td></tr>")
    return (f'<section id="trials"><h2>Trials ({len(trials)})</h2><table class="sortable">{_head(cols)}'
            f'<tbody>{"".join(body)}</tbody></table></section>')


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
    """`trials`: [{name, description, metrics (the trial's summary.json), rows (its best-model
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
