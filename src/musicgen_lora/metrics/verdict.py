"""Which training worked: one verdict per adapter (best, final) against the base model, built
only from measured intervals, with the figures that made it and a next thing to try.

Words (one adapter can carry several):
- improved: a musicnn style check (style_fd, style_similarity, tag_kl) measurably closer to the
  target music, none measurably further, and not degraded. It also says how close: style_fd on a
  scale from base (0%) to the target music against itself (100%: the distance between two halves
  of the target clips, the least a set of this size can score), and what musicnn hears.
- inert: no style check and no per-clip figure of the generated audio moved beyond its interval,
  whatever the loss did.
- degraded: more flagged clips than base, or a flag figure (noise, decay, silent tail, silence,
  silence codes) measurably worse.
- not closer: the audio changed, but no style check moved toward the target.
- overfit (final): the held-out loss rose after the best epoch (final measurably worse than best).
- copies training audio: clips flagged `near_copy` (metrics/copying.py: a verbatim run of training
  codes far longer than base's and the held-out clips', and a musicnn embedding nearer a
  training clip than training clips are to each other).
- forgets prompts: on the off-style prompts (evaluate.off_style_prompts: other styles, asked on
  purpose) the adapter's clips sound measurably more like your music than base's did: it plays
  your style whatever the text asks.
"""

from __future__ import annotations

from . import bootstrap as B
from .copying import COPY_FLAG
from .registry import FLAG_FIGURES, FLAG_WORDS, STYLE

# FLAG_FIGURES: per-clip figures a defect moves (the side that is worse, the flag threshold it
# approaches). A move counts when it is measurable, goes the wrong way and leaves the mean past half the
# threshold: a base whose tails rise (+4 LU) and an adapter whose tails stay level (0 LU) have
# moved "down", towards a silent tail, without a defect in sight.
SILENCE_CODES_LIMIT = 0.05  # silence codes have no flag: 5% of frames is where padding was learned (trial-1)
SUGGEST = {
    "inert": "more epochs or a higher train.lr",
    "degraded": "a lower train.lr (or fewer epochs)",
    "overfit": "fewer epochs (or keep using best)",
    "not closer": "more epochs, a higher train.lr, or captions that describe your music",
    "far": "more of your music, or more epochs",
    "forgets prompts": "fewer epochs, a lower train.lr or train.rank, so the captions still steer",
    "copies training audio": "more of your music, fewer epochs or a lower train.rank",
}


def _excludes_zero(iv: dict | None) -> bool:
    return bool(iv) and B.Interval.from_dict(iv).excludes_zero()


def _fmt(iv: dict) -> str:
    lo, hi = iv["ci95"]
    return f"{iv['delta']:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def past_length_defect(summary: dict, model: str) -> dict | None:
    """The interval of the rise in silence codes past the real-audio length, where it is measurable:
    an adapter trained on padded clips with the padding in its loss generates padding (summarize's
    padded comparison, best only)."""
    padded = summary.get("padded") or {}
    iv = (padded.get("delta") or {}).get("past_silence_code_share") if padded.get("model", "best") == model else None
    return iv if _excludes_zero(iv) and iv["delta"] > 0 else None


def style_share(fd_base: float | None, fd_model: float | None, fd_floor: float | None, iv: dict | None) -> dict | None:
    """How far style_fd moved from base toward the target's own floor, in % (0: base, 100: as close
    as two halves of the target are to each other), with the interval of the move on that scale."""
    if None in (fd_base, fd_model, fd_floor) or fd_base - fd_floor <= 0:
        return None
    span = fd_base - fd_floor
    out = {"share_pct": round(100 * (fd_base - fd_model) / span, 1)}
    if iv:
        lo, hi = iv["ci95"]
        out["ci95_pct"] = [round(-100 * hi / span, 1), round(-100 * lo / span, 1)]
    return out


def judge(summary: dict, model: str) -> dict:
    """The verdict of adapter `model` ("best" or "final") from a run summary (stages/summarize)."""
    m, base = summary["models"][model], summary["models"]["base"]
    deltas, checks = m.get("delta_vs_base", {}), summary["checks"].get(f"{model}_vs_base", {})
    sets = summary["set"]
    words, because = [], []
    thresholds = summary.get("thresholds", {})

    def defect(k: str) -> bool:
        side, key = FLAG_FIGURES[k]
        iv, mean = deltas.get(k), m["mean"].get(k)
        if not _excludes_zero(iv) or (iv["delta"] > 0) != (side == "higher") or mean is None:
            return False
        limit = 0.5 * thresholds[key] if key in thresholds else SILENCE_CODES_LIMIT if key is None else None
        return limit is not None and (mean > limit if side == "higher" else mean < limit)

    worse_flags = [k for k in FLAG_FIGURES if defect(k)]

    def defects(model_row: dict) -> int:  # flagged clips, a copy aside (it has a word of its own)
        return model_row["flagged_clips"] - model_row.get("copy_only_clips", 0)

    more_flagged = defects(m) > defects(base)
    past = past_length_defect(summary, model)
    if worse_flags or more_flagged or past:
        words.append("degraded")
        if more_flagged:
            because.append(f"{defects(m)} clips flagged for noise, decay or silence against base's {defects(base)}")
        because += [f"more {FLAG_WORDS[k]}: {_fmt(deltas[k])}" for k in worse_flags]
        if past:
            because.append(f"silence codes past the real-audio length (padding learned, trial-1's lesson): {_fmt(past)}")
    better = [k for k in STYLE if checks.get(k) == B.BETTER]
    worse = [k for k in STYLE if checks.get(k) == B.WORSE]
    moved = [k for k, iv in deltas.items() if k != "valid_loss" and _excludes_zero(iv)]
    floor = (summary.get("target", {}).get("self_fd") or {}).get("mean")
    share = style_share(
        sets["base"].get("style_fd"), sets[model].get("style_fd"), floor, sets[model].get("style_fd_vs_base")
    )
    if better and not worse and "degraded" not in words:
        words.append("improved")
        iv = sets[model].get("style_fd_vs_base") if "style_fd" in better else deltas.get(better[0])
        figure = "style_fd" if "style_fd" in better else better[0]
        because.append(f"{figure} closer to your music: {_fmt(iv)}")
    elif not better and not worse and not moved and "degraded" not in words:
        words.append("inert")
        because.append("no style check and no per-clip figure moved beyond its interval")
    elif "degraded" not in words:
        words.append("not closer")
        because.append(
            "style: "
            + (", ".join(f"{k} further" for k in worse) if worse else "no measurable move")
            + (f"; other figures moved: {', '.join(moved[:3])}" if moved else "")
        )
    final_iv = summary.get("final_vs_best_valid_loss")
    if model == "final" and final_iv and _excludes_zero(final_iv) and final_iv["delta"] > 0:
        words.append("overfit")
        because.append(f"held-out loss rose after the best epoch ({summary['best_epoch']}): final - best {_fmt(final_iv)}")
    copies = m.get("flags", {}).get(COPY_FLAG, 0)
    if copies:
        words.append("copies training audio")
        because.append(
            f"{copies} clip(s) flagged {COPY_FLAG}: long verbatim runs of training codes, heard near a training clip"
        )
    off = m.get("off_style", {}).get("style_similarity")
    if off and B.verdict(B.Interval.from_dict(off), lower_is_better=False) == B.BETTER:
        words.append("forgets prompts")
        because.append(f"the off-style prompts sound more like your music than base's: style_similarity {_fmt(off)}")
    heard = [t for t, _ in sets[model].get("top_tags", [])[:3]]
    target = [t for t, _ in summary.get("target", {}).get("top_tags", [])[:3]]
    problem = next(
        (
            w
            for w in ("copies training audio", "degraded", "forgets prompts", "overfit", "inert", "not closer")
            if w in words
        ),
        None,
    )
    v = {"words": words, "because": because, "style_share": share, "heard_as": heard, "target_heard_as": target}
    words_next = problem or ("far" if "improved" in words and not close(v) else None)
    return {**v, "suggestion": SUGGEST.get(words_next) if words_next else None}


def close(v: dict) -> bool:
    """Close, not only closer: at least half the way from base to your music, and heard first as
    what your music is heard as first."""
    share = v["style_share"]
    return bool(share and share["share_pct"] >= 50 and v["heard_as"][:1] == v["target_heard_as"][:1])


def explain(v: dict) -> str:
    """The figures behind a verdict, how close it got and the next thing to try, in words."""
    text = f"({'; '.join(v['because'])})"
    share = v["style_share"]
    if "improved" in v["words"] and share:
        ci = f", 95% CI [{share['ci95_pct'][0]:.0f}%, {share['ci95_pct'][1]:.0f}%]" if "ci95_pct" in share else ""
        text += f"; {share['share_pct']:.0f}% of the way from base to your music{ci}"
    if v["heard_as"] and v["target_heard_as"]:
        heard, target = ", ".join(v["heard_as"]), ", ".join(v["target_heard_as"])
        if "improved" not in v["words"]:
            text += f"; heard as {heard} (your music: {target})"
        elif close(v):
            text += f"; now heard as {heard}, like your music"
        else:
            text += f"; still heard as {heard} (your music: {target})"
    if v["suggestion"]:
        text += f". Worth trying: {v['suggestion']}"
    return text + "."


def sentence(model: str, v: dict) -> str:
    """The verdict in one sentence a user reads first."""
    return f"{model}: {', '.join(v['words'])} {explain(v)}"
