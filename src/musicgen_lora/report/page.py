"""The run's page (`metrics/report.html`): listen to base, best and final side by side.

The run's verdicts were always made by listening; this page puts every prompt's three clips in
one row (player, spectrogram, headline numbers, flags) under the run's summary (losses, checks,
loss curve), and the training samples as a timeline, one row per epoch, so a user hears when the
adapter starts to drift. Audio is linked, not copied: links are relative to the page, so the
page opens from disk wherever the workspace lives. Spectrograms go to `<page stem>_files/spec/`
beside the page; the folder is replaced whole (atomically), then the page is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import atomic_dir, inside, write_text
from ..metrics.registry import keys
from ..metrics.verdict import explain
from .figures import loss_svg, spectrogram_png
from .html import CLIP_KEYS, audio, document, esc, flags, fmt, href, label, metric_list, num_cell

MODELS = ("base", "best", "final")
# Per-clip means over prompts (summary["models"][m]["mean"]); set-level distances come from summary["set"].
MEAN_KEYS = keys(mean=True)
SET_KEYS = keys(level="set")
VERDICT_CLASS = {"better": "ok", "worse": "bad"}  # "no measurable difference" stays plain


def assets_dir(page: Path) -> Path:
    return Path(page).with_name(Path(page).stem + "_files")


def prompts_of(rows: list[dict]) -> list[tuple[str, int]]:
    """(prompt, sample) in the order of the rows (evaluate writes them in params order)."""
    return list(dict.fromkeys((r["prompt"], r.get("sample", 0)) for r in rows))


def checks_list(checks: dict) -> str:
    """Each comparison's verdicts (summary["checks"]: {"best_vs_base": {check: verdict}}): "better"
    green, "worse" red, "no measurable difference" plain."""
    return "".join(f'<li class="{VERDICT_CLASS.get(v, "")}">{esc(name.replace("_vs_", " vs "))}: {esc(k)}: '
                   f"<b>{esc(v)}</b></li>" for name, verdicts in checks.items() for k, v in (verdicts or {}).items())


def models_of(rows: list[dict]) -> list[str]:
    present = {r["model"] for r in rows}
    return [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def summary_section(summary: dict, epochs: list[dict]) -> str:
    """Losses (real frames, and the training objective), checks, loss curve, means per model."""
    models, objective = summary.get("models") or {}, summary.get("valid_loss_objective") or {}
    sets = summary.get("set") or {}
    names = [m for m in MODELS if m in models] + sorted(set(models) - set(MODELS))
    losses = "".join(f"<tr><th>{esc(n)}</th>{num_cell((models[n].get('mean') or {}).get('valid_loss'))}"
                     f"{num_cell(objective.get(n))}</tr>" for n in names)
    checks = checks_list(summary.get("checks") or {})
    keys = [k for k in MEAN_KEYS if any(k in (models[n].get("mean") or {}) for n in names)]
    means = "".join(f"<tr><th>{esc(label(k))}</th>" + "".join(num_cell((models[n].get("mean") or {}).get(k))
                                                              for n in names) + "</tr>" for k in keys)
    means += "".join(f"<tr><th>set: {esc(label(k))}</th>" + "".join(num_cell((sets.get(n) or {}).get(k))
                                                                   for n in names) + "</tr>"
                     for k in SET_KEYS if any(k in (sets.get(n) or {}) for n in names))
    flag_row = "<tr><th>flags (clips)</th>" + "".join(
        f"<td>{flags(f'{f} x{c}' for f, c in (models[n].get('flags') or {}).items())}</td>" for n in names) + "</tr>"
    return (f'<section id="summary"><div class="cards">'
            f'<div class="card"><h3>Valid loss</h3><p>best epoch: <b>{esc(summary.get("best_epoch", "-"))}</b></p>'
            f'<table><thead><tr><th></th><th class="n">real frames</th><th class="n">training objective</th></tr>'
            f'</thead><tbody>{losses}</tbody></table></div>'
            f'<div class="card"><h3>Checks (95% intervals)</h3><ul>{checks or "<li>none</li>"}</ul></div>'
            f'<div class="card"><h3>Loss per epoch (training objective)</h3>{loss_svg(epochs)}</div>'
            f'<div class="card"><h3>Means over prompts</h3><table><thead><tr><th></th>'
            + "".join(f'<th class="n">{esc(n)}</th>' for n in names)
            + f"</tr></thead><tbody>{means}{flag_row}</tbody></table></div></div></section>")


def clip_cell(row: dict, page: Path, wav: Path, png: Path | None) -> str:
    title = f"{row['model']}: {row['prompt']}"
    spec = f'<img class="spec" src="{esc(href(png, page))}" alt="spectrogram, {esc(title)}">' if png else ""
    numbers = metric_list({"valid_loss": row.get("valid_loss"), **(row.get("metrics") or {})},
                          ["valid_loss"] + CLIP_KEYS)
    return f'<td class="clip">{audio(href(wav, page), title)}{spec}{numbers}<div>{flags(row.get("flags"))}</div></td>'


def clips_section(rows: list[dict], eval_dir: Path, page: Path, spec_dir: Path, final_spec: Path) -> str:
    """One row per prompt and sample, one column per model; spectrograms are drawn into `spec_dir`
    and linked at `final_spec` (where `spec_dir` will be once the folder is in place)."""
    prompts, models = prompts_of(rows), models_of(rows)
    by_key = {(r["prompt"], r.get("sample", 0), r["model"]): r for r in rows}
    several = len({s for _, s in prompts}) > 1
    body = []
    for i, (prompt, sample) in enumerate(prompts):
        cells = []
        for model in models:
            row = by_key.get((prompt, sample, model))
            if row is None:
                cells.append('<td class="clip missing">not generated</td>')
                continue
            wav = Path(eval_dir) / row["file"]
            inside(eval_dir, row["file"])  # a row pointing outside the evaluation folder is refused
            name = f"{model}_{i:02d}.png"
            spectrogram_png(wav, spec_dir / name)
            cells.append(clip_cell(row, page, wav, final_spec / name))
        # every model generated this (prompt, sample) from one seed: `generate --seed` regenerates it
        seeds = {r["seed"] for m in models if (r := by_key.get((prompt, sample, m))) and "seed" in r}
        note = ([f"sample {sample}"] if several else []) + [f"seed {s}" for s in sorted(seeds)]
        seed = f' <span class="muted">({", ".join(note)})</span>' if note else ""
        body.append(f'<tr><th class="prompt" scope="row">{esc(prompt)}{seed}</th>{"".join(cells)}</tr>')
    head = "".join(f"<th>{esc(m)}</th>" for m in models)
    return (f'<section id="clips"><h2>Prompts and samples ({len(prompts)}) x models ({len(models)})</h2>'
            f'<table class="clips"><thead><tr><th>prompt</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></section>')


def samples_section(samples_dir: Path | None, page: Path) -> str:
    """The training samples (`model.samples`) as a timeline: one row per epoch."""
    index_path = Path(samples_dir or "") / "index.json"
    if samples_dir is None or not index_path.is_file():
        return ""
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if not index.get("epochs"):
        return ('<section id="samples"><h2>Samples during training</h2><p class="muted">off '
                '(<code>train.sample_prompts: []</code>)</p></section>')
    prompts = index["prompts"]
    body = []
    for e in index["epochs"]:
        epoch_dir = Path(samples_dir) / f"epoch_{e}"
        info = json.loads((epoch_dir / "index.json").read_text(encoding="utf-8"))
        players = "".join(f"<td>{audio(href(epoch_dir / f, page), f'epoch {e}: {p}')}</td>"
                          for p, f in zip(info["prompts"], info["files"]))
        body.append(f'<tr><th scope="row">{e}{" (base)" if e == 0 else ""}</th>{num_cell(info.get("train_loss"))}'
                    f'{num_cell(info.get("valid_loss"))}{players}</tr>')
    head = "".join(f"<th>{esc(p)}</th>" for p in prompts)
    return (f'<section id="samples"><h2>Samples during training</h2><p class="muted">The same prompts and seed '
            f'after every epoch (epoch 0: the base model), {fmt(info.get("seconds"))} s each.</p>'
            f'<table class="timeline"><thead><tr><th>epoch</th><th class="n">train loss</th>'
            f'<th class="n">valid loss</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>')


def verdict_section(summary: dict) -> str:
    """The run's answer first: each adapter's verdict in a sentence (metrics/verdict.py)."""
    verdicts = summary.get("verdicts", {})
    if not verdicts:
        return ""
    items = "".join(f"<li><strong>{esc(n)}: {esc(', '.join(v['words']))}</strong> {esc(explain(v))}</li>"
                    for n, v in verdicts.items())
    return f'<section id="verdict"><h2>Verdict</h2><ul>{items}</ul></section>'


def target_section(summary: dict, page: Path) -> str:
    """Your music beside what each model makes: a few target clips to play, and the top tags
    musicnn hears in the target and in each model's clips (closer is not close: listen)."""
    target, sets = summary.get("target") or {}, summary.get("set") or {}
    if not target.get("top_tags"):
        return ""
    tags = lambda pairs: ", ".join(f"{esc(t)} {p:.2f}" for t, p in pairs[:3])  # noqa: E731
    rows = [f"<tr><th>your music (held out, {esc(target.get('n', '?'))} clips)</th><td>{tags(target['top_tags'])}</td>"
            f"<td>" + "".join(f'<div>{audio(href(Path(c["file"]), page), c["source"])}'
                              f'<span class="muted"> {esc(c["source"])} at {c["offset_s"]:g} s: '
                              f'{tags(c["top_tags"])}</span></div>' for c in target.get("clips", [])) + "</td></tr>"]
    rows += [f"<tr><th>{esc(n)}</th><td>{tags(sets[n].get('top_tags') or [])}</td><td></td></tr>"
             for n in MODELS if n in sets]
    return ('<section id="target"><h2>Your music, and what musicnn hears</h2><table><thead><tr><th></th>'
            '<th>top tags (mean probability)</th><th>listen</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table></section>")


def write_run_page(page: Path, rows: list[dict], eval_dir: Path, epochs: list[dict], summary: dict,
                   samples_dir: Path | None = None, title: str = "Run report") -> Path:
    """Write the run's page at `page` (and its spectrograms beside it); returns `page`."""
    page, assets = Path(page), assets_dir(page)
    with atomic_dir(assets) as tmp:
        clips = clips_section(rows, eval_dir, page, tmp / "spec", assets / "spec")
    body = (f"<h1>{esc(title)}</h1><p class=\"muted\">Best epoch {esc(summary.get('best_epoch', '-'))}; "
            f"audio from <code>{esc(href(eval_dir, page))}/</code>. Opens from disk; no network.</p>"
            + verdict_section(summary) + target_section(summary, page) + summary_section(summary, epochs) + clips
            + samples_section(samples_dir, page))
    write_text(page, document(title, body))
    return page
