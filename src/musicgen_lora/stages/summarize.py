"""Stage `summarize`: the run's headline metrics (`metrics/headline.json`, what `dvc metrics show`
and `dvc exp show` read), the full detail (`metrics/summary.json`), a report people read
(`metrics/summary.md`), plots: loss curves, loudness over time per model, spectrograms, and a
page to listen to every clip (`metrics/report.html`, see `report/page.py`).

Every difference against base carries a 95% paired bootstrap interval (`metrics.comparison`,
drawn as evaluate recorded in set_metrics.json), and the checks say "better" or "worse" only where
the interval excludes zero: with 8-16 generated clips a difference of means is often noise.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from ..core.args import stage_paths
from ..core.artifacts import (
    EPOCHS,
    REFERENCE,
    TRAIN_METRICS,
    Headline,
    SetMetrics,
    read_epochs,
    read_reference,
    read_results,
    read_set_metrics,
    read_train_metrics,
)
from ..core.files import write_json, write_text
from ..metrics import bootstrap as B
from ..metrics import comparison as C
from ..metrics import registry as M
from ..metrics import style as S
from ..metrics import verdict as V
from ..metrics.copying import COPY_FLAG, copies_of
from ..metrics.plots import MODELS, plot_loudness, plot_losses, plot_spectrograms
from ..report.page import write_run_page

# the per-clip style figures: measured on the in-style prompts only; their per-clip values are kept
# in summary.json for trial-vs-trial intervals
STYLE_KEYS = M.keys(style=True, level="clip")


def model_means(rows: list[dict], sets: dict, boot: dict, prompts: dict | None = None) -> dict[str, dict]:
    """Per model: mean of each scalar per-clip metric over prompts and samples, flag counts, and each
    difference against base with its interval (the valid loss's over the valid clips; the style
    figures' over the in-style prompts, and apart, `off_style`: over the off-style ones)."""
    in_style, off_style = (set(prompts["in_style"]), set(prompts["off_style"])) if prompts else (None, set())
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("length", "clip") == "clip":
            by_model[r["model"]].append(r)
    out = {}
    for name, rs in by_model.items():
        values = defaultdict(list)
        for r in rs:
            values["valid_loss"].append(r["valid_loss"])
            for k, v in r["metrics"].items():
                if C.measure(k, v) and (k not in STYLE_KEYS or in_style is None or r["prompt"] in in_style):
                    values[k].append(v)
        out[name] = {
            "mean": {k: round(float(np.mean(v)), 5) for k, v in values.items()},
            "flags": dict(Counter(f for r in rs for f in r["flags"])),
            "flagged_clips": sum(1 for r in rs if r["flags"]),
            "clips": len(rs),
            "copy_only_clips": sum(1 for r in rs if r["flags"] == [COPY_FLAG]),
        }
        if name != "base":
            deltas = C.per_clip_intervals(rows, name, boot)
            deltas.update(C.per_clip_intervals(rows, name, boot, keys=STYLE_KEYS, prompts=in_style))
            if off_style:
                out[name]["off_style"] = C.per_clip_intervals(rows, name, boot, keys=STYLE_KEYS, prompts=off_style)
            deltas["valid_loss"] = C.valid_loss_interval(
                sets["base"].get("valid_losses", []), sets.get(name, {}).get("valid_losses", []), boot
            )
            out[name]["delta_vs_base"] = {k: v for k, v in deltas.items() if v is not None}
    return out


def headline(summary: dict) -> Headline:
    """What `dvc exp show` shows per experiment, kept narrow so that `dvc exp show --only-changed`
    of a few experiments fits a terminal: the verdicts, how far best got, and the figures behind
    them for base and best (base's are the same in every experiment of one corpus, so
    --only-changed hides them). `valid_loss_real` is measured on real audio frames only; `style_fd`
    is the musicnn-embedding distance to the target clips. Everything else (final's figures, the
    checks, the training objective) is in summary.json, which `dvc exp show` does not read."""
    every = C.figures(summary)

    def base_best(key: str) -> dict:
        return {n: v for n, v in every[key].items() if n in ("base", "best")}

    return Headline(
        verdict=every["verdict"],
        style_share_pct={"best": every["style_share_pct"].get("best")},
        style_fd=base_best("style_fd"),
        valid_loss_real=base_best("valid_loss_real"),
        flagged=base_best("flagged"),
        best_epoch=every["best_epoch"],
    )


def _ci(d: dict | None, fmt: str = "{:+.3g}") -> str:
    if not d:
        return ""
    lo, hi = d["ci95"]
    return f" ({fmt.format(d['delta'])} [{fmt.format(lo)}, {fmt.format(hi)}])"


def _tags(tags: list) -> str:
    return ", ".join(f"{n} {p:.2f}" for n, p in tags)


def copy_lines(summary: dict) -> list[str]:
    """Each clip flagged near_copy and the training audio it copies (the page plays both)."""
    out = []
    for c in summary.get("copies", []):
        t = c["training"]
        where = f"{t.get('source', '?')} at {t.get('offset_s', 0) + (t.get('run_starts_s') or 0):g} s"
        out.append(
            f'- Copy: {c["model"]}\'s "{c["prompt"]}" (sample {c["sample"]}) repeats {where}: '
            f"{c['longest_s']:g} s verbatim, musicnn distance {c['nn_distance']:g} to that clip."
        )
    return out + [""] if out else []


def report(summary: dict) -> str:
    models, objective, sets = summary["models"], summary["valid_loss_objective"], summary["set"]
    names = [n for n in MODELS if n in models]
    boot, target = summary["bootstrap"], summary["target"]
    pairs = models["base"]["clips"]
    n_valid = next(
        (m["delta_vs_base"]["valid_loss"]["n"] for m in models.values() if "valid_loss" in m.get("delta_vs_base", {})), 0
    )
    verdicts = [V.sentence(n, v) for n, v in summary.get("verdicts", {}).items()]
    lines = [
        "# Run summary",
        "",
        *(f"**Verdict, {v}**" for v in verdicts),
        "",
        *copy_lines(summary),
        f"Best epoch: {summary['best_epoch']}. Training objective on the valid split: base {objective['base']:.4f}, "
        f"best {objective['best']:.4f}, final {objective['final']:.4f}."
        + (
            f" Stopped early at epoch {summary['early_stop']['epoch']} of {summary['early_stop']['of']}: "
            f"{summary['early_stop']['why']}."
            if summary.get("early_stop")
            else ""
        ),
        "",
        f"Differences against base are shown as (delta [95% CI]): a paired bootstrap ({boot['resamples']} "
        f"resamples, seed {boot['seed']}) over the {pairs} (prompt, seed) pairs each model generated, and over "
        f"the {n_valid} valid clips for the valid loss. An interval that "
        "contains 0 means no measurable difference.",
        "",
        "## What a music tagger hears",
        "",
        "musicnn (trained on MagnaTagATune), top tags with their mean probability:",
        "",
        "| clips | top tags |",
        "|---|---|",
        f"| target: {target['n']} held-out real clips | {_tags(target['top_tags'])} |",
    ]
    lines += [f"| {n}: {sets[n]['n_generated']} generated | {_tags(sets[n]['top_tags'])} |" for n in names]
    lines += ["", "| style (vs the target clips) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    fd = [
        f"{sets[n]['style_fd']:.4g}" + _ci(sets[n].get("style_fd_vs_base")) if sets[n]["style_fd"] is not None else "-"
        for n in names
    ]
    lines.append(
        f"| style_fd: Fréchet distance of musicnn embeddings (n = {sets['base']['n_generated']} generated "
        f"vs {sets['base']['n_target']} target; lower = closer) | " + " | ".join(fd) + " |"
    )
    for key, words in (
        ("style_similarity", "style_similarity: cosine to the target's mean embedding, mean per clip (higher = closer)"),
        ("tag_kl", "tag_kl: KL(target tags || clip tags), mean per clip (lower = closer)"),
    ):
        lines.append(
            f"| {words} | "
            + " | ".join(
                f"{models[n]['mean'].get(key, float('nan')):.4g}" + _ci(models[n].get("delta_vs_base", {}).get(key))
                for n in names
            )
            + " |"
        )
    lines.append(
        "| style_fd_mfcc: Fréchet distance of MFCC statistics (one number, no interval) | "
        + " | ".join(f"{sets[n]['style_fd_mfcc']:.5g}" if sets[n]["style_fd_mfcc"] is not None else "-" for n in names)
        + " |"
    )
    worst = "; ".join(
        f'"{html.escape(w["prompt"])}" (sample {w["sample"]}): {w["style_similarity"]:.3f}, '
        f"heard as {', '.join(w['top_tags'])}"
        for w in summary.get("worst_clips", {}).get("best", [])
    )
    if worst:
        lines += ["", f"Least target-like clips of best (style_similarity): {worst}."]
    off = [(n, models[n].get("off_style", {}).get("style_similarity")) for n in names if n != "base"]
    if summary.get("prompts") and summary["prompts"]["off_style"] and any(iv for _, iv in off):
        pairs = next(iv["n"] for _, iv in off if iv)
        lines += [
            "",
            f"Off-style prompts ({len(summary['prompts']['off_style'])}, {pairs} pairs; the adapter should "
            f"still follow them, not drift toward your music): style_similarity against base "
            + "; ".join(f"{n} {_ci(iv).strip()} {B.verdict(B.Interval.from_dict(iv), False)}" for n, iv in off if iv)
            + (
                ""
                if pairs >= B.MIN_PAIRS
                else f" (a check needs {B.MIN_PAIRS} pairs: add off-style prompts or raise evaluate.samples_per_prompt)"
            )
            + ".",
        ]
    lines += [
        "",
        "## Per-clip means",
        "",
        "| per-clip mean (delta vs base [95% CI]) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for key in M.keys(mean=True):
        cells = [
            ("" if models[n]["mean"].get(key) is None else f"{models[n]['mean'][key]:.4g}")
            + _ci(models[n].get("delta_vs_base", {}).get(key))
            for n in names
        ]
        lines.append(f"| {'valid_loss (real frames only)' if key == 'valid_loss' else key} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Flags (clips): " + "; ".join(f"{n}: {models[n]['flags'] or 'none'}" for n in names),
        "",
        "## Checks",
        "",
        "Better or worse only where the 95% interval excludes 0.",
        "",
        "| check | " + " | ".join(summary["checks"]) + " |",
        "|---|" + "---|" * len(summary["checks"]),
    ]
    for key in C.CHECKS:
        lines.append(f"| {M.BY_KEY[key].check} | " + " | ".join(v[key] for v in summary["checks"].values()) + " |")
    if summary.get("padded"):
        p = summary["padded"]
        lines += ["", "## Past the real-audio length", ""] + [
            f"- {w}" for w in C.padded_words(p, p["clip_seconds"], p["pad_to_seconds"], summary.get("mask_padding"))
        ]
    return "\n".join(lines) + "\n"


def build_summary(
    epochs: list[dict], live: dict, rows: list[dict], evaluated: SetMetrics, reference: dict, target_emb: np.ndarray
) -> dict:
    """Every figure of the run with its interval against base, the checks and the verdicts."""
    sets, boot, prompts = evaluated.models, evaluated.bootstrap, evaluated.prompts
    models = model_means(rows, sets, boot, prompts)
    names = [n for n in MODELS if n in models]
    summary = {
        "prompts": prompts,
        "best_epoch": live["best_epoch"],
        "valid_loss_objective": live["valid_loss_objective"],
        "early_stop": live.get("early_stop"),
        "mask_padding": live.get("mask_padding"),
        "models": models,
        "bootstrap": boot,
        "target": {**evaluated.target, "self_fd": S.self_distance(target_emb, boot["seed"])},
        "set": {n: {k: v for k, v in sets[n].items() if k != "valid_losses"} for n in names},
        "checks": {
            f"{n}_vs_base": C.checks(models[n]["delta_vs_base"], sets[n].get("style_fd_vs_base"))
            for n in names
            if n != "base"
        },
        "thresholds": reference["thresholds"],
        "copies": copies_of(rows, reference.get("copy") or {}),
    }
    if "best" in sets and "final" in sets:
        summary["final_vs_best_valid_loss"] = C.valid_loss_interval(
            sets["best"].get("valid_losses", []), sets["final"].get("valid_losses", []), boot
        )
    summary["verdicts"] = {n: V.judge(summary, n) for n in names if n != "base"}
    summary["worst_clips"] = {
        n: C.worst_clips(rows, n, prompts=set(prompts["in_style"]) if prompts else None) for n in names
    }
    base_pairs = list(C.paired(rows, "base"))
    summary["per_clip"] = {
        "pairs": [list(k) for k in base_pairs],
        **{
            key: {n: [C.paired(rows, n).get(k, {}).get("metrics", {}).get(key) for k in base_pairs] for n in names}
            for key in STYLE_KEYS
        },
    }
    if evaluated.padded:
        cmp = C.padded_comparison(rows, "best" if "best" in models else names[-1], boot)
        summary["padded"] = cmp and {**evaluated.padded, **cmp}
    return summary


def run(
    train_metrics: Path,
    results: Path,
    set_metrics: Path,
    eval_dir: Path,
    out_json: Path,
    out_headline: Path,
    out_md: Path,
    plots: Path,
    page: Path,
) -> dict:
    epochs, live = read_epochs(train_metrics / EPOCHS), read_train_metrics(train_metrics / TRAIN_METRICS)
    rows = read_results(results)
    target_emb = load_file(str(eval_dir / "reference.safetensors"))["valid_musicnn_emb"]
    summary = build_summary(
        epochs, live, rows, read_set_metrics(set_metrics), read_reference(eval_dir / REFERENCE), target_emb
    )
    write_json(out_json, summary)
    write_json(out_headline, asdict(headline(summary)))
    write_text(out_md, report(summary))
    objective = (
        "training objective: padded frames counted"
        if live.get("mask_padding") is False
        else "training objective: real frames"
    )
    clip_rows = [r for r in rows if r.get("length", "clip") == "clip"]
    plot_losses(epochs, plots / "loss.png", objective)
    plot_loudness(clip_rows, plots / "loudness.png")
    plot_spectrograms([r for r in clip_rows if r.get("sample", 0) == 0], eval_dir, plots / "spectrograms.png")
    write_run_page(page, clip_rows, eval_dir, plots / "loss.png", summary, train_metrics / "samples")  # report/page.py
    return summary


def main(argv: list[str]) -> int:
    args = stage_paths(
        "summarize",
        __doc__,
        argv,
        "--train-metrics",
        "--results",
        "--set-metrics",
        "--eval-dir",
        "--out",
        "--headline",
        "--report",
        "--plots",
        "--page",
    )
    summary = run(
        args.train_metrics,
        args.results,
        args.set_metrics,
        args.eval_dir,
        args.out,
        args.headline,
        args.report,
        args.plots,
        args.page,
    )
    checks = C.figures(summary)["checks"]
    print(
        f"summarize: best vs base: {checks['better']} better, {checks['worse']} worse, "
        f"{checks['no_measurable_difference']} no measurable difference; report {args.report}, plots {args.plots}/"
    )
    print(f"page: {args.page}")
    return 0
