"""Every metric the project reports, once: its label, unit, which direction is better, what it is,
what it catches of what the fine-tuning log used to judge by ear, and where it is shown.

The summary, the run page, the trials report, the verdicts and docs/metrics.md (generated from
here by `python -m musicgen_lora.metrics.registry --write`; a test keeps it current) read this table;
none of them lists metrics of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # short, for table headers and cells
    unit: str  # "" where the figure has none
    lower_is_better: bool | None  # None: neither direction is better (a description, not a score)
    what: str  # what it is, in one line
    catches: str  # what it catches ("by ear"), for docs/metrics.md
    level: str = "clip"  # "clip": per generated clip; "set": over a model's clips; "run": training
    mean: bool = False  # a per-clip mean in the summary's and the page's tables
    cell: bool = False  # shown in each clip's cell on the pages
    check: str = ""  # a check against base (its words in the summary); "" = not a check
    style: bool = False  # measures closeness to the target style (in-style prompts only)
    flag: tuple[str, str | None] | None = None  # (the side a defect moves it to, its threshold in flags)
    defect: str = ""  # the defect a move to that side means, in words (verdicts)


METRICS: tuple[Metric, ...] = (
    Metric(
        "valid_loss",
        "valid loss",
        "nats",
        True,
        "held-out loss of each model, real frames only",
        "fit, without trial-1's padding artefact",
        "run",
        mean=True,
        check="valid loss on real frames (lower)",
    ),
    Metric(
        "style_fd",
        "style FD (musicnn)",
        "",
        True,
        "Fréchet distance of musicnn embeddings, generated clips vs the held-out target clips (n stated)",
        '"style transfer", "timbre"',
        "set",
        check="style_fd, musicnn (lower)",
        style=True,
    ),
    Metric(
        "style_similarity",
        "style similarity",
        "cosine",
        False,
        "cosine of a clip's musicnn embedding to the target clips' mean embedding",
        '"style transfer"; the least target-like clip',
        mean=True,
        cell=True,
        check="style_similarity (higher)",
        style=True,
    ),
    Metric(
        "tag_kl",
        "tag KL",
        "nats",
        True,
        "KL divergence of musicnn's tag distribution of the target clips from the clip's (top tags in words)",
        '"timbre": what a listener would call it',
        mean=True,
        cell=True,
        check="tag_kl (lower)",
        style=True,
    ),
    Metric(
        "style_fd_mfcc",
        "style FD (MFCC)",
        "",
        True,
        "Fréchet distance of MFCC statistics (no interval)",
        "timbre, by a measure that knows nothing of music",
        "set",
    ),
    Metric(
        "integrated_loudness_lufs",
        "LUFS",
        "LUFS",
        None,
        "BS.1770 integrated loudness",
        "a clip far quieter or louder than the rest",
        mean=True,
        cell=True,
    ),
    Metric(
        "loudness_slope_lu_per_s",
        "slope LU/s",
        "LU/s",
        None,
        "slope of BS.1770 block loudness over the clip",
        '"grows quieter over the clip" (flag decaying)',
        mean=True,
        cell=True,
        flag=("lower", "decaying_slope_lu_per_s"),
        defect="decay (loudness slope)",
    ),
    Metric(
        "tail_drop_lu",
        "tail drop LU",
        "LU",
        None,
        "loudness of the last 2 s minus the rest",
        '"decaying ending" (flag silent_tail)',
        mean=True,
        cell=True,
        flag=("lower", "silent_tail_drop_lu"),
        defect="a silent tail (tail drop)",
    ),
    Metric(
        "silence_ratio",
        "silence",
        "share",
        True,
        "share of 50 ms frames below evaluate.silence_threshold_dbfs",
        "dropouts (flag mostly_silent)",
        mean=True,
        cell=True,
        flag=("higher", "mostly_silent_ratio"),
        defect="silence (silence ratio)",
    ),
    Metric(
        "spectral_flatness",
        "flatness",
        "",
        None,
        "median geometric / arithmetic mean of the power spectrum",
        '"mostly noise" (flag noisy)',
        mean=True,
        cell=True,
        flag=("higher", "noisy_flatness"),
        defect="noise (spectral flatness)",
    ),
    Metric(
        "pulse_clarity",
        "pulse clarity",
        "",
        None,
        "peak of the onset envelope's autocorrelation",
        '"coherence": a beat vs mush',
        mean=True,
    ),
    Metric(
        "chroma_entropy",
        "chroma entropy",
        "bits",
        None,
        "entropy of the clip's mean chroma",
        '"coherence": a key vs mush',
        mean=True,
    ),
    Metric(
        "code_entropy_bits",
        "code entropy",
        "bits",
        None,
        "entropy of the generated EnCodec codes",
        '"stability": one code repeated',
    ),
    Metric(
        "code_js_divergence",
        "code JS div",
        "bits",
        True,
        "Jensen-Shannon divergence of the generated codes' distribution from the training codes'",
        '"stability"; codes the training music never uses',
        mean=True,
        cell=True,
        check="code_js_divergence vs training codes (lower)",
    ),
    Metric(
        "silence_code_share",
        "silence codes",
        "share",
        True,
        "share of frames whose first code is EnCodec's silence",
        "predicting padding (trial-1)",
        mean=True,
        flag=("higher", None),
        defect="silence codes",
    ),
    Metric(
        "copy_longest_s",
        "longest copy s",
        "s",
        True,
        "longest run of the clip's codes found verbatim in the training codes (0.2 s windows)",
        '"sounds like the tracks I used" (flag near_copy, with copy_nn_distance)',
    ),
    Metric(
        "copy_share",
        "copied share",
        "share",
        True,
        "share of the clip's 0.2 s code windows found in the training codes",
        '"sounds like the tracks I used"',
    ),
    Metric(
        "copy_nn_distance",
        "nearest training clip",
        "",
        None,
        "musicnn embedding distance to the nearest training clip (copy_nn_clip names it)",
        "a paraphrase of one training clip rather than the style",
    ),
    Metric(
        "loudness_thirds_delta_lu",
        "thirds delta LU",
        "LU",
        None,
        "loudness of the last third minus the first",
        '"grows quieter over the clip"',
    ),
)
PAST_LENGTH = ("past_silence_code_share", "within_silence_code_share", "past_loudness_change_lu", "past_silence_ratio")
BY_KEY = {m.key: m for m in METRICS}


def keys(**where) -> list[str]:
    """Keys of the metrics whose fields equal `where` (truthy for True), in registry order:
    keys(mean=True), keys(cell=True)."""
    return [
        m.key
        for m in METRICS
        if all(bool(getattr(m, f)) == v if isinstance(v, bool) else getattr(m, f) == v for f, v in where.items())
    ]


def label(key: str) -> str:
    return BY_KEY[key].label if key in BY_KEY else key


CHECKS = {m.key: m.lower_is_better for m in METRICS if m.check}  # check -> lower is better
STYLE = {m.key: m.lower_is_better for m in METRICS if m.style}  # the style checks
FLAG_FIGURES = {m.key: m.flag for m in METRICS if m.flag}  # figure -> (worse side, threshold)
FLAG_WORDS = {m.key: m.defect for m in METRICS if m.flag}


def markdown() -> str:
    """docs/metrics.md."""
    better = {True: "lower", False: "higher", None: "\u2013"}
    rows = [
        f"| `{m.key}` | {m.what} | {m.unit or chr(0x2013)} | {better[m.lower_is_better]} | {m.catches} |" for m in METRICS
    ]
    return "\n".join(
        [
            "# What each metric measures",
            "",
            "Generated from `src/musicgen_lora/metrics/registry.py` by `python -m musicgen_lora.metrics.registry --write`",
            "(a test fails when this file is not current): every per-clip figure of",
            "`evaluation/comparison_results.jsonl`, every set-level figure of `metrics/summary.json`, and what each",
            "catches of what the fine-tuning log used to judge by ear. `python -m musicgen_lora metrics FILE... [--json]`",
            "scores any audio file the same way.",
            "",
            '| metric | what it is | unit | better | catches ("by ear") |',
            "|---|---|---|---|---|",
            *rows,
            "",
            "Padded runs only (`pad_to_seconds`): "
            + ", ".join(f"`{k}`" for k in PAST_LENGTH)
            + ', the same figures on the part generated past the real audio (trial-1\'s "grows quieter").',
            "",
            "Checks (better or worse than base only where the 95% interval excludes 0): "
            + ", ".join(f"`{k}`" for k in CHECKS)
            + ". The verdict's style checks: "
            + ", ".join(f"`{k}`" for k in STYLE)
            + ".",
            "",
            "Flag thresholds come from `params.yaml`, calibrated at run time against the training clips",
            "(`evaluation/reference.json`): a threshold only becomes more lenient where real training",
            "music would itself trip it.",
            "",
        ]
    )


DOC = "docs/metrics.md"


def doc_main(argv: list[str]) -> int:
    """`--write` writes docs/metrics.md from this table; `--check` exits 1 if it differs. (A module
    entry point, not a subcommand: the command table is code every stage runs.)"""
    import argparse
    from pathlib import Path

    from ..core.files import write_text

    ap = argparse.ArgumentParser(prog="python -m musicgen_lora.metrics.registry", description=doc_main.__doc__)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    path = Path(DOC)
    if args.write:
        write_text(path, markdown())
        return 0
    if not path.is_file() or path.read_text(encoding="utf-8") != markdown():
        print(f"{DOC} is not current: run `python -m musicgen_lora.metrics.registry --write`")
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(doc_main(sys.argv[1:]))
