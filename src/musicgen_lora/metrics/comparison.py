"""A fine-tuned model against the base, with intervals: per-clip differences paired by (prompt,
sample), which share a seed; the valid loss paired by valid clip; the checks.

A check says "better" or "worse" only where its 95% bootstrap interval excludes zero, and "no
measurable difference" otherwise (`bootstrap.verdict`). Input rows are comparison_results.jsonl
rows as dicts, so this module knows nothing of MusicGen.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from . import bootstrap as B
from .copying import LOCATIONS
from .registry import CHECKS, PAST_LENGTH  # check -> lower is better; style_fd's interval comes from evaluate (embeddings)


def scalar(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def measure(key: str, v) -> bool:
    """A per-clip figure to average and compare: a number that measures (not a copy's location)."""
    return scalar(v) and key not in LOCATIONS


def paired(rows: list[dict], model: str, length: str = "clip", prompts: set | None = None) -> dict[tuple, dict]:
    """(prompt, sample) -> row of one model at one length (of `prompts` only, if given)."""
    return {
        (r["prompt"], r["sample"]): r
        for r in rows
        if r["model"] == model and r.get("length", "clip") == length and (prompts is None or r["prompt"] in prompts)
    }


def per_clip_intervals(
    rows: list[dict], model: str, boot: dict, length: str = "clip", keys: list[str] | None = None, prompts: set | None = None
) -> dict[str, dict]:
    """Mean difference model - base of each scalar per-clip metric, over the pairs both have (of
    `prompts` only, if given)."""
    base, other = paired(rows, "base", length, prompts), paired(rows, model, length, prompts)
    pairs = [k for k in base if k in other]
    if not pairs:
        return {}
    keys = keys or [k for k, v in base[pairs[0]]["metrics"].items() if measure(k, v)]
    out = {}
    for k in keys:
        a = [base[p]["metrics"].get(k) for p in pairs]
        b = [other[p]["metrics"].get(k) for p in pairs]
        if all(scalar(x) for x in a + b):
            out[k] = B.paired_mean_diff(a, b, boot["resamples"], boot["seed"], boot["level"]).as_dict()
    return out


def valid_loss_interval(base_losses: list[float], losses: list[float], boot: dict) -> dict | None:
    """Valid loss difference over the valid clips (each clip scored by both models)."""
    if not base_losses or len(base_losses) != len(losses):
        return None
    return B.paired_mean_diff(base_losses, losses, boot["resamples"], boot["seed"], boot["level"]).as_dict()


def verdict_of(interval: dict | None, lower_is_better: bool) -> str:
    if interval is None:
        return "not measured (fewer than 2 pairs)"
    return B.verdict(B.Interval.from_dict(interval), lower_is_better)


def checks(deltas: dict[str, dict], style_fd: dict | None) -> dict[str, str]:
    """Each check's verdict for one model against base; `deltas` are its per-clip intervals (with
    the valid loss's), `style_fd` evaluate's paired interval of the embedding distance."""
    found = {**deltas, "style_fd": style_fd}
    return {k: verdict_of(found.get(k), lower) for k, lower in CHECKS.items()}


def tally(verdicts: dict[str, str]) -> dict[str, int]:
    """{"better": n, "worse": n, "no_measurable_difference": n}: the checks in three numbers."""
    c = Counter(verdicts.values())
    return {"better": c[B.BETTER], "worse": c[B.WORSE], "no_measurable_difference": len(verdicts) - c[B.BETTER] - c[B.WORSE]}


def worst_clips(rows: list[dict], model: str, k: int = 2, prompts: set | None = None) -> list[dict]:
    """The k clips of a model least like the target (lowest style_similarity), among the in-style
    `prompts` (an off-style prompt is meant to sound unlike the target)."""
    rs = [r for r in paired(rows, model, prompts=prompts).values() if scalar(r["metrics"].get("style_similarity"))]
    rs.sort(key=lambda r: r["metrics"]["style_similarity"])
    return [
        {
            "prompt": r["prompt"],
            "sample": r["sample"],
            "file": r["file"],
            "style_similarity": r["metrics"]["style_similarity"],
            "top_tags": r["metrics"].get("top_tags", []),
        }
        for r in rs[:k]
    ]


def padded_comparison(rows: list[dict], model: str, boot: dict) -> dict | None:
    """Base vs `model` at the padded length: means of the past-length measures, the interval of each
    difference (pairs: prompts), and flag counts. None when there are no padded rows."""
    base, other = paired(rows, "base", "padded"), paired(rows, model, "padded")
    if not base or not other:
        return None
    out = {"model": model, "n": len([k for k in base if k in other]), "mean": {}, "flags": {}}
    for name, rs in (("base", base), (model, other)):
        out["mean"][name] = {
            k: round(float(np.mean([r["metrics"][k] for r in rs.values()])), 5)
            for k in [*PAST_LENGTH, "loudness_slope_lu_per_s", "loudness_thirds_delta_lu"]
        }
        out["flags"][name] = dict(Counter(f for r in rs.values() for f in r["flags"]))
    out["delta"] = per_clip_intervals(rows, model, boot, "padded", [*PAST_LENGTH, "loudness_thirds_delta_lu"])
    return out


def padded_words(cmp: dict, clip_s: float, pad_s: float, mask_padding: bool | None = None) -> list[str]:
    """What the padded comparison means, in sentences (the lesson of trial-1, or its absence)."""
    m, d, name = cmp["mean"], cmp["delta"], cmp["model"]
    b, f = m["base"], m[name]
    sil, loud = d["past_silence_code_share"], d["past_loudness_change_lu"]
    words = [
        f"Generated at the padded training length ({pad_s:g} s; real audio was {clip_s:g} s), {cmp['n']} "
        f"prompts, one seed each. Past {clip_s:g} s, {f['past_silence_code_share']:.2%} of {name}'s codec frames "
        f"are the codec's digital-silence codes (base {b['past_silence_code_share']:.2%}; within the first "
        f"{clip_s:g} s: {f['within_silence_code_share']:.2%} vs {b['within_silence_code_share']:.2%})."
    ]
    s_lo, s_hi = sil["ci95"]
    if s_lo > 0 and B.Interval.from_dict(sil).excludes_zero():
        words.append(
            f"The rise is measurable (+{sil['delta']:.2%}, 95% CI [{s_lo:+.2%}, {s_hi:+.2%}]): {name} has "
            "learned to predict the padding, generating silence codes where its training clips were "
            "zero-padded"
            + (": the padded frames were in its loss (train.mask_padding: false)." if mask_padding is False else ".")
        )
    else:
        words.append(
            f"No measurable rise in silence codes past {clip_s:g} s (difference {sil['delta']:+.2%}, 95% CI "
            f"[{s_lo:+.2%}, {s_hi:+.2%}]): no sign that {name} learned to predict the padding."
        )
    l_lo, l_hi = loud["ci95"]
    trend = "quieter" if loud["delta"] < 0 else "louder"
    words.append(
        f"Loudness past {clip_s:g} s relative to before it: {f['past_loudness_change_lu']:+.2f} LU for {name}, "
        f"{b['past_loudness_change_lu']:+.2f} LU for base; last third minus first "
        f"{f['loudness_thirds_delta_lu']:+.2f} LU vs {b['loudness_thirds_delta_lu']:+.2f} LU. "
        + (
            f"{name} gets measurably {trend} in the padded part than base does "
            f"({loud['delta']:+.2f} LU, 95% CI [{l_lo:+.2f}, {l_hi:+.2f}])"
            + (": the 'grows quieter over the clip' of the log." if trend == "quieter" else ".")
            if B.Interval.from_dict(loud).excludes_zero()
            else f"The difference from base is not measurable ({loud['delta']:+.2f} LU, 95% CI [{l_lo:+.2f}, {l_hi:+.2f}])."
        )
    )
    flags = cmp["flags"]
    words.append(
        f"Flags on the padded clips: {name} {flags[name] or 'none'}, base {flags['base'] or 'none'}"
        + (
            " (the flag thresholds are set for whole clips that fade or fall silent; a change confined to "
            "the padded part can stay below them)."
            if not flags[name]
            else "."
        )
    )
    return words


def figures(summary: dict) -> dict:
    """The full per-model figures (base, best, final) of a run's summary.json, in headline.json's
    shape plus final, the checks' tally and the training objective (the trials' pages read these)."""
    models = summary["models"]
    names = [n for n in ("base", "best", "final") if n in models]
    return {
        "best_epoch": summary["best_epoch"],
        "loss_objective": round(summary["valid_loss_objective"]["best"], 5),
        "valid_loss_real": {n: models[n]["mean"]["valid_loss"] for n in names},
        "style_fd": {n: summary["set"][n]["style_fd"] for n in names},
        "flagged": {n: models[n]["flagged_clips"] for n in names},
        "checks": tally(summary["checks"].get("best_vs_base", {})),
        "verdict": {n: ", ".join(v["words"]) for n, v in summary.get("verdicts", {}).items()},
        "style_share_pct": {n: (v["style_share"] or {}).get("share_pct") for n, v in summary.get("verdicts", {}).items()},
    }
