"""The run's page (`metrics/report.html`): listen to base, best and final side by side.

The run's verdicts were always made by listening; this page puts every prompt's three clips in
one row (player, spectrogram, headline numbers, flags) under the run's summary (losses, checks,
loss curve), and the training samples as a timeline, one row per epoch, so a user hears when the
adapter starts to drift. Audio is linked, not copied: links are relative to the page, so the
page opens from disk wherever the workspace lives. Spectrograms go to `<page stem>_files/spec/`
beside the page; the folder is replaced whole (atomically), then the page is written.

This module prepares the data (URLs, rows, numbers); `page.html.j2` beside it is the HTML.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.files import atomic_dir, inside, write_text
from ..metrics.registry import keys
from ..metrics.verdict import explain
from .figures import spectrogram_png
from .html import CLIP_KEYS, href, label, render

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


def models_of(rows: list[dict]) -> list[str]:
    present = {r["model"] for r in rows}
    return [m for m in MODELS if m in present] + sorted(present - set(MODELS))


def summary_data(summary: dict, loss_png: Path | None, page: Path) -> dict:
    """Losses (real frames, and the training objective), checks, loss curve, means per model.
    Checks (summary["checks"]: {"best_vs_base": {check: verdict}}): "better" green, "worse" red,
    "no measurable difference" plain."""
    models, objective = summary.get("models") or {}, summary.get("valid_loss_objective") or {}
    sets = summary.get("set") or {}
    names = [m for m in MODELS if m in models] + sorted(set(models) - set(MODELS))
    means = {n: models[n].get("mean") or {} for n in names}
    set_of = {n: sets.get(n) or {} for n in names}
    rows = [(label(k), [means[n].get(k) for n in names]) for k in MEAN_KEYS if any(k in means[n] for n in names)]
    rows += [(f"set: {label(k)}", [set_of[n].get(k) for n in names]) for k in SET_KEYS if any(k in set_of[n] for n in names)]
    return {
        "best_epoch": summary.get("best_epoch", "-"),
        "names": names,
        "means": rows,
        "losses": [(n, means[n].get("valid_loss"), objective.get(n)) for n in names],
        "checks": [
            (VERDICT_CLASS.get(v, ""), name.replace("_vs_", " vs "), k, v)
            for name, verdicts in (summary.get("checks") or {}).items()
            for k, v in (verdicts or {}).items()
        ],
        "loss_png": loss_png and href(loss_png, page),  # summarize's loss.png, the one loss figure
        "flags": [[f"{f} x{c}" for f, c in (models[n].get("flags") or {}).items()] for n in names],
    }


def clip_cell(row: dict, page: Path, wav: Path, png: Path) -> dict:
    numbers = {"valid_loss": row.get("valid_loss"), **(row.get("metrics") or {})}
    return {
        "url": href(wav, page),
        "title": f"{row['model']}: {row['prompt']}",
        "spec": href(png, page),
        "numbers": [(k, numbers[k]) for k in ["valid_loss"] + CLIP_KEYS if k in numbers],
        "flags": list(row.get("flags") or []),
    }


def clips_data(rows: list[dict], eval_dir: Path, page: Path, spec_dir: Path, final_spec: Path) -> dict:
    """One row per prompt and sample, one cell per model (None: not generated); spectrograms are
    drawn into `spec_dir` and linked at `final_spec` (where `spec_dir` will be once the folder is
    in place)."""
    prompts, models = prompts_of(rows), models_of(rows)
    by_key = {(r["prompt"], r.get("sample", 0), r["model"]): r for r in rows}
    several = len({s for _, s in prompts}) > 1
    out = []
    for i, (prompt, sample) in enumerate(prompts):
        cells = []
        for model in models:
            row = by_key.get((prompt, sample, model))
            if row is None:
                cells.append(None)
                continue
            wav = Path(eval_dir) / row["file"]
            inside(eval_dir, row["file"])  # a row pointing outside the evaluation folder is refused
            name = f"{model}_{i:02d}.png"
            spectrogram_png(wav, spec_dir / name)
            cells.append(clip_cell(row, page, wav, final_spec / name))
        # every model generated this (prompt, sample) from one seed: `generate --seed` regenerates it
        seeds = {r["seed"] for m in models if (r := by_key.get((prompt, sample, m))) and "seed" in r}
        note = ([f"sample {sample}"] if several else []) + [f"seed {s}" for s in sorted(seeds)]
        out.append({"prompt": prompt, "note": ", ".join(note), "cells": cells})
    return {"models": models, "rows": out}


def samples_data(samples_dir: Path | None, page: Path) -> dict | None:
    """The training samples (`model.samples`) as a timeline: one row per epoch (None: no section)."""
    index_path = Path(samples_dir or "") / "index.json"
    if samples_dir is None or not index_path.is_file():
        return None
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if not index.get("epochs"):
        return {"off": True}
    epochs, info = [], {}
    for e in index["epochs"]:
        epoch_dir = Path(samples_dir) / f"epoch_{e}"
        info = json.loads((epoch_dir / "index.json").read_text(encoding="utf-8"))
        epochs.append(
            {
                "epoch": e,
                "train_loss": info.get("train_loss"),
                "valid_loss": info.get("valid_loss"),
                "players": [(href(epoch_dir / f, page), f"epoch {e}: {p}") for p, f in zip(info["prompts"], info["files"])],
            }
        )
    return {"off": False, "prompts": index["prompts"], "epochs": epochs, "seconds": info.get("seconds")}


def verdicts_data(summary: dict) -> list[tuple[str, str, str]]:
    """The run's answer first: each adapter's verdict in a sentence (metrics/verdict.py)."""
    return [(n, ", ".join(v["words"]), explain(v)) for n, v in (summary.get("verdicts") or {}).items()]


def target_data(summary: dict, page: Path) -> dict | None:
    """Your music beside what each model makes: a few target clips to play, and the top tags
    musicnn hears in the target and in each model's clips (closer is not close: listen)."""
    target, sets = summary.get("target") or {}, summary.get("set") or {}
    if not target.get("top_tags"):
        return None
    return {
        "n": target.get("n", "?"),
        "top_tags": target["top_tags"],
        "clips": [{**c, "url": href(Path(c["file"]), page)} for c in target.get("clips", [])],
        "models": [(n, sets[n].get("top_tags") or []) for n in MODELS if n in sets],
    }


def copies_data(summary: dict, eval_dir: Path, page: Path) -> list[dict]:
    """Each clip flagged near_copy beside the training clip it copies, both playable."""
    out = []
    for c in summary.get("copies") or []:
        inside(eval_dir, c["file"])
        out.append(
            {**c, "url": href(Path(eval_dir) / c["file"], page), "training_url": href(Path(c["training"]["file"]), page)}
        )
    return out


def write_run_page(
    page: Path,
    rows: list[dict],
    eval_dir: Path,
    loss_png: Path | None,
    summary: dict,
    samples_dir: Path | None = None,
    title: str = "Run report",
) -> Path:
    """Write the run's page at `page` (and its spectrograms beside it), showing the loss figure
    `loss_png` (metrics/plots/loss.png); returns `page`."""
    page, assets = Path(page), assets_dir(page)
    with atomic_dir(assets) as tmp:
        clips = clips_data(rows, eval_dir, page, tmp / "spec", assets / "spec")
    write_text(
        page,
        render(
            "page.html.j2",
            title=title,
            audio_dir=href(eval_dir, page),
            verdicts=verdicts_data(summary),
            copies=copies_data(summary, eval_dir, page),
            target=target_data(summary, page),
            summary=summary_data(summary, loss_png, page),
            clips=clips,
            samples=samples_data(samples_dir, page),
        ),
    )
    return page
