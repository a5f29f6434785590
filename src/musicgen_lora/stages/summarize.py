"""Stage `summarize`: the run's headline metrics (`metrics/headline.json`, what `dvc metrics show`
and `dvc exp show` read), the full detail (`metrics/summary.json`), a report people read
(`metrics/summary.md`), plots: loss curves, loudness over time per model, spectrograms, and a
page to listen to every clip (`metrics/report.html`, see `report/page.py`)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..core.args import stage_paths
from ..core.files import read_jsonl, write_json, write_text
from ..metrics.plots import MODELS, plot_loudness, plot_losses, plot_spectrograms
from ..report.page import write_run_page

# Per-clip means in the report, in this order.
REPORTED = ["valid_loss", "integrated_loudness_lufs", "loudness_slope_lu_per_s", "tail_drop_lu", "silence_ratio",
            "spectral_flatness", "pulse_clarity", "chroma_entropy", "code_js_divergence", "silence_code_share"]


def model_means(rows: list[dict]) -> dict[str, dict]:
    """Per model: mean of each scalar per-clip metric over prompts, deltas against base, flag counts."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = {}
    for name, rs in by_model.items():
        values = defaultdict(list)
        for r in rs:
            values["valid_loss"].append(r["valid_loss"])
            for k, v in r["metrics"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    values[k].append(v)
        out[name] = {"mean": {k: round(float(np.mean(v)), 5) for k, v in values.items()},
                     "flags": dict(Counter(f for r in rs for f in r["flags"])),
                     "flagged_clips": sum(1 for r in rs if r["flags"]), "clips": len(rs)}
    for name, m in out.items():
        m["delta_vs_base"] = {k: round(v - out["base"]["mean"][k], 5) for k, v in m["mean"].items()
                              if name != "base" and k in out["base"]["mean"]}
    return out


def headline(summary: dict) -> dict:
    """The few numbers that fit on a screen per experiment. `valid_loss_real` is measured on real
    audio frames only (padding masked) for every model; `loss_objective` is what training
    minimised (it counts padded frames when train.mask_padding is false: trial-1's trap)."""
    models = summary["models"]
    names = [n for n in MODELS if n in models]
    return {
        "best_epoch": summary["best_epoch"],
        "loss_objective": round(summary["valid_loss_objective"]["best"], 5),
        "valid_loss_real": {n: models[n]["mean"]["valid_loss"] for n in names},
        "style_fd": {n: round(summary["set"][n]["style_fd_mfcc"], 1) for n in names},
        "flagged": {n: models[n]["flagged_clips"] for n in names},
        "checks": f"{sum(summary['checks'].values())}/{len(summary['checks'])}",
    }


def report(summary: dict) -> str:
    models, objective = summary["models"], summary["valid_loss_objective"]
    names = [n for n in MODELS if n in models]
    lines = ["# Run summary", "",
             f"Best epoch: {summary['best_epoch']}. Training objective on the valid split: base {objective['base']:.4f}, "
             f"best {objective['best']:.4f}, final {objective['final']:.4f}.", "",
             "| per-clip mean (delta vs base) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in REPORTED:
        cells = []
        for name in names:
            v, d = models[name]["mean"].get(key), models[name]["delta_vs_base"].get(key)
            cells.append("" if v is None else f"{v:.4g}" + ("" if d is None else f" ({d:+.3g})"))
        label = "valid_loss (real frames only)" if key == "valid_loss" else key
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| set-level distance (lower = closer) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in sorted(summary["set"][names[0]]):
        lines.append(f"| {key} | " + " | ".join(f"{summary['set'][n][key]:.5g}" for n in names) + " |")
    lines += ["", "Flags (clips): " + "; ".join(f"{n}: {models[n]['flags'] or 'none'}" for n in names), "",
              "Checks: " + ", ".join(f"{k} = {v}" for k, v in summary["checks"].items()), ""]
    return "\n".join(lines)


def run(train_metrics: Path, results: Path, set_metrics: Path, eval_dir: Path, out_json: Path, out_headline: Path,
        out_md: Path, plots: Path, page: Path) -> dict:
    epochs = json.loads((train_metrics / "epochs.json").read_text(encoding="utf-8"))
    live = json.loads((train_metrics / "metrics.json").read_text(encoding="utf-8"))
    rows = read_jsonl(results)
    models = model_means(rows)
    sets = json.loads(set_metrics.read_text(encoding="utf-8"))
    base, best = models["base"]["mean"], models.get("best", {}).get("mean", {})
    summary = {"best_epoch": live["best_epoch"], "valid_loss_objective": live["valid_loss_objective"],
               "models": models, "set": sets}
    summary["checks"] = {
        "best_valid_loss_below_base": bool(best.get("valid_loss", np.inf) < base["valid_loss"]),
        "best_closer_to_target_style": bool(sets.get("best", {}).get("style_fd_mfcc", np.inf)
                                            < sets["base"]["style_fd_mfcc"]),
        # the same question asked of the codes, independent of how well the codec decodes them
        "best_codes_closer_to_target": bool(best.get("code_js_divergence", np.inf) < base["code_js_divergence"]),
        "base_not_noisy": models["base"]["flags"].get("noisy", 0) == 0,
    }
    write_json(out_json, summary)
    write_json(out_headline, headline(summary))
    write_text(out_md, report(summary))
    objective = "training objective: padded frames counted" if live.get("mask_padding") is False \
        else "training objective: real frames"
    plot_losses(epochs, plots / "loss.png", objective)
    plot_loudness(rows, plots / "loudness.png")
    plot_spectrograms(rows, eval_dir, plots / "spectrograms.png")
    write_run_page(page, rows, eval_dir, epochs, summary, train_metrics / "samples")  # report/page.py
    return summary


def main(argv: list[str]) -> int:
    args = stage_paths("summarize", __doc__, argv, "--train-metrics", "--results", "--set-metrics", "--eval-dir",
                       "--out", "--headline", "--report", "--plots", "--page")
    summary = run(args.train_metrics, args.results, args.set_metrics, args.eval_dir, args.out, args.headline,
                  args.report, args.plots, args.page)
    print(f"summarize: checks {headline(summary)['checks']} passed; report {args.report}, plots {args.plots}/")
    print(f"page: {args.page}")
    return 0
