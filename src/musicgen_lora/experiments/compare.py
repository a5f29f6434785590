"""`python -m musicgen_lora compare [REV ...]`: runs side by side, ranked by verdict, then style.

`compare` with no revision compares this commit's own run with its `dvc exp run` experiments and
the trials' tags; `compare A B ...` any experiments (by name), tags, branches or commits; both
write `reports/experiments.{md,html}` and `reports/experiments_valid_loss.png`. `compare
--trials` (what `make compare` runs) writes the reference trials' report:

Params and summary metrics come from DVC (not from files on disk); per-epoch losses from the
DVCLive TSVs committed at each tag; the intervals from each tag's `metrics/summary.json` (git
tracked). Writes `reports/trials.md` (a table in the shape of experiments/TRIALS.md, then the
trials ranked by their best adapter's verdict, then its musicnn style distance, with intervals),
`reports/trials_valid_loss.png` (valid loss of every trial) and `reports/trials.html`, a page to
hear every trial's best adapter on each prompt side by side (report/trials.py). The audio is a
DVC output of each tag, not on disk: it is read from the DVC cache at that tag
(`DVCFileSystem(rev=tag)`) into `reports/trials_audio/<trial>/`.

Trial against trial: every trial generates the same prompts with the same seeds (evaluate params
are not what the trials change), so best's per-clip style_similarity of two trials pairs up and
the difference from the top-ranked trial gets the same paired bootstrap as best against base.
The style_fd values compare across trials as single numbers, each with its best-vs-base interval.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..core.artifacts import HEADLINE, RESULTS, SUMMARY, TRAIN_METRICS  # noqa: E402
from ..core.artifacts import parse_json_object, parse_results, parse_summary  # noqa: E402
from ..core.errors import UserError  # noqa: E402
from ..core.files import atomic_dir, atomic_path, inside  # noqa: E402
from ..metrics import bootstrap as B  # noqa: E402
from ..metrics import comparison as C  # noqa: E402
from ..metrics import verdict as V  # noqa: E402
from ..metrics.plots import save_png  # noqa: E402
from ..report.trials import write_trials_page  # noqa: E402
from .trials import MANIFEST, git, load_trials, require_git  # noqa: E402

LOSS_TSV = "metrics/train/plots/metrics/{}/loss.tsv"  # DVCLive's
EVAL_DIR = "evaluation"
RESULTS_AT, SUMMARY_AT = f"{EVAL_DIR}/{RESULTS}", f"metrics/{SUMMARY}"  # where a run keeps them
TRAIN_METRICS_AT, HEADLINE_AT = f"metrics/train/{TRAIN_METRICS}", f"metrics/{HEADLINE}"
OLDER = "re-run it with this version (`dvc exp run`)"


def at(rev: str, path: str, what: str) -> dict:
    """A JSON file of a revision (an empty object where the revision has none: a failed or older run)."""
    return parse_json_object(git("show", f"{rev}:{path}", check=False) or "{}", f"{rev}:{path}", what, OLDER)


def exp_rows(show: list) -> dict[str, dict]:
    """name and commit -> {params, metrics} for every row of `dvc exp show --json` (tags are rows of
    their own)."""
    out = {}

    def visit(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data:
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                metrics = {}
                for m in (data.get("metrics") or {}).values():
                    metrics.update(m.get("data") or {})
                for key in (node.get("name"), node.get("rev")):  # a baseline by its branch and its commit
                    if key:
                        out.setdefault(key, {"params": params, "metrics": metrics})
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(show)
    return out


def epoch_losses(tag: str, split: str) -> list[float]:
    """Per-epoch losses (training objective) from the tag's DVCLive TSV; for "valid", epoch 0 (the
    base model, from the tag's metrics/train/metrics.json) comes first."""
    text = git("show", f"{tag}:{LOSS_TSV.format(split)}", check=False)
    losses = [float(r["loss"]) for r in csv.DictReader(io.StringIO(text), delimiter="\t")] if text else []
    if split == "valid" and losses:
        train_metrics = at(tag, TRAIN_METRICS_AT, "the metrics `train` writes")
        base = train_metrics.get("valid_loss_objective", {}).get("base")
        losses = ([base] if base is not None else []) + losses
    return losses


def trial_tags(manifest: Path = MANIFEST, partial: bool = False) -> list[str]:
    """The trials of `manifest` that have a git tag here. compare rewrites reports/ from them, so
    it refuses (one line, nothing written) when it cannot rebuild the whole report: outside a git
    repository, or with trials whose tags are not here (tags do not travel with `git clone`)."""
    require_git("compare")
    trials = [t.name for t in load_trials(manifest)]
    names = [n for n in trials if git("tag", "-l", n)]
    missing = [n for n in trials if n not in names]
    if not names or (missing and not partial):
        which = f"none of the {len(trials)} trials" if not names else f"{len(missing)} of the {len(trials)} trials"
        raise UserError(
            f"compare: {which} of {manifest} {'has a' if not names else 'have no'} git tag here "
            f"({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); reports/ is left as it is. Fetch the tags "
            f"(`git fetch --tags`; the repository that ran them shares them with `git push --tags`) "
            f"or run the trials (`make trials`){'' if not names else '; --partial reports the others'}"
        )
    return names


def committed(rev: str) -> dict:
    """{params, metrics} of a commit from its files, where `dvc exp show` has no row for it."""
    from ruamel.yaml import YAML

    params = YAML(typ="safe").load(git("show", f"{rev}:params.yaml", check=False) or "{}") or {}
    return {"params": params, "metrics": at(rev, HEADLINE_AT, "the headline `summarize` writes")}


def experiment_runs() -> list[tuple[str, str]]:
    """(name, commit) of the checked-out commit's finished experiments (`dvc exp run`), oldest
    first, after the commit itself where its outputs are committed (a baseline run)."""
    from dvc.api import exp_show

    require_git("compare")
    rows = exp_show(".")
    head = git("rev-parse", "HEAD").strip()
    runs = [("baseline", head)] if git("ls-tree", head, SUMMARY_AT, check=False).strip() else []
    exps = [
        r
        for r in rows
        if r.get("typ") in ("branch_commit", "branch_base") and r.get("Experiment") and r.get("State") in (None, "Success")
    ]
    return runs + [(r["Experiment"], r["rev"]) for r in sorted(exps, key=lambda r: str(r.get("Created") or ""))]


def default_runs(manifest: Path = MANIFEST) -> list[tuple[str, str]]:
    """What `compare` with no revisions compares: this commit's run and experiments, then the
    trials that have tags here (a commit already listed is listed once)."""
    runs = experiment_runs()
    trials = [t.name for t in load_trials(manifest)] if manifest.is_file() else []
    runs += [(n, n) for n in trials if git("tag", "-l", n)]
    seen, out = set(), []
    for name, rev in runs:
        commit = git("rev-parse", f"{rev}^{{commit}}")
        if commit not in seen:
            seen.add(commit)
            out.append((name, rev))
    if len(out) < 2:
        raise UserError(
            "compare: nothing to compare here (no finished experiment of this commit in `dvc exp show`, "
            "no trial tags); run some, e.g. `dvc exp run -n lr-high -S train.lr=0.002`, or name the "
            "revisions: `compare EXP_OR_TAG_OR_BRANCH_OR_COMMIT ...`"
        )
    return out


def resolve(revs: list[str]) -> list[tuple[str, str]]:
    """(name, commit) of each revision a user names: an experiment's name (of any baseline), a
    tag, a branch or a commit. An unknown one stops compare in one line, before anything is read."""
    require_git("compare")
    exps = {}  # experiments live under refs/exps/<baseline>/<name>
    for line in git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines():
        ref, commit = line.split()
        exps.setdefault(ref.rsplit("/", 1)[-1], commit)
    out = []
    for rev in revs:
        commit = exps.get(rev) or git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        if not commit:
            raise UserError(
                f"compare: '{rev}' is no experiment (`dvc exp list`), tag, branch or commit here; name one of those"
            )
        if not git("ls-tree", commit, SUMMARY_AT, check=False):
            raise UserError(
                f"compare: '{rev}' has no {SUMMARY_AT} (a commit without a finished run); "
                "name a run's commit, or run it first (`dvc exp run`)"
            )
        out.append((rev, commit))
    return out


def collect(runs: list[tuple[str, str]]) -> list[dict]:
    """Every run's params, figures, losses and summary; `runs` are (name, revision)."""
    show = json.loads(
        subprocess.run(["dvc", "exp", "show", "-T", "--json"], capture_output=True, text=True, check=True).stdout
    )
    rows = exp_rows(show)
    out = []
    for name, rev in runs:
        found = rows.get(rev) or rows.get(name) or committed(rev)
        # every model's figures from the run's summary.json (headline.json, what dvc exp show has,
        # holds base and best only); a run from an older version: what dvc exp show has
        try:
            summary = parse_summary(git("show", f"{rev}:{SUMMARY_AT}", check=False) or None, f"{rev}:{SUMMARY_AT}")
            # this version's verdict rules on the run's own figures (a run made earlier is judged alike)
            summary["verdicts"] = {n: V.judge(summary, n) for n in summary["verdicts"]}
            figures = C.figures(summary)
        except (UserError, KeyError, TypeError):  # a summary of another shape: what dvc exp show has
            summary, figures = {}, found["metrics"]
        out.append(
            {
                "name": name,
                "rev": rev,
                **found,
                "figures": figures,
                "train_losses": epoch_losses(rev, "train"),
                "valid_losses": epoch_losses(rev, "valid"),
                "summary": summary,
            }
        )
    return out


def extract_best_audio(runs: list[tuple[str, str]], out_dir: Path) -> dict[str, list[dict]]:
    """name -> the best-model rows of comparison_results.jsonl of the run at rev (the first sample
    of each prompt at the clip length: the same prompt and seed in every run), each with `path`:
    the clip copied from that revision's DVC outputs into `out_dir/<name>/` (the folder is replaced
    whole). A revision without evaluation results (a failed run) gets no rows."""
    from dvc.api import DVCFileSystem

    out: dict[str, list[dict]] = {}
    with atomic_dir(out_dir) as tmp:
        for name, rev in runs:
            fs = DVCFileSystem(".", rev=rev)
            if not fs.exists(RESULTS_AT):
                out[name] = []
                continue
            rows = parse_results(fs.read_text(RESULTS_AT, encoding="utf-8"), f"{rev}:{RESULTS_AT}")
            folder = re.sub(r"[^A-Za-z0-9._-]", "_", name)
            out[name] = []
            for r in (
                r for r in rows if r["model"] == "best" and r.get("length", "clip") == "clip" and r.get("sample", 0) == 0
            ):
                inside(Path(EVAL_DIR), r["file"])  # a row naming a path outside evaluation/ is refused
                dest = Path(folder) / Path(r["file"]).name
                (tmp / dest).parent.mkdir(parents=True, exist_ok=True)
                (tmp / dest).write_bytes(fs.read_bytes(f"{EVAL_DIR}/{r['file']}"))
                out[name].append({**r, "path": out_dir / dest})
    return out


def write_page(rows: list[dict], out: Path, stem: str, descriptions: dict[str, str]) -> Path:
    """reports/<stem>.html with the audio extracted beside it (<stem>_audio/)."""
    rows = sorted(rows, key=rank_key)  # the report's order: verdict, then style distance
    clips = extract_best_audio([(r["name"], r["rev"]) for r in rows], out / f"{stem}_audio")
    return write_trials_page(
        out / f"{stem}.html",
        [
            {
                "name": r["name"],
                "description": descriptions.get(r["name"], ""),
                "metrics": r["figures"],
                "rows": clips[r["name"]],
            }
            for r in rows
        ],
        title=f"{stem.capitalize()}: best adapters side by side",
    )


def per_model(figures: dict, key: str, fmt: str = "{:.3f}") -> str:
    """ "base / best / final" of one figure."""
    return " / ".join(fmt.format(figures.get(key, {}).get(n, float("nan"))) for n in ("base", "best", "final"))


def param(row: dict, key: str, missing=None):
    """The value of `section.name` in a run's params."""
    section, name = key.split(".", 1)
    return row["params"].get(section, {}).get(name, missing)


def changed_params(rows: list[dict]) -> list[str]:
    """section.key of every param whose value differs between the runs (what the experiments vary)."""
    flat = [
        {
            f"{sec}.{k}": json.dumps(v, sort_keys=True)
            for sec, d in r["params"].items()
            if isinstance(d, dict)
            for k, v in d.items()
        }
        for r in rows
    ]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if len({f.get(k) for f in flat}) > 1]


def experiments_table(rows: list[dict]) -> str:
    """One row per run: the params the runs vary, the verdicts and the figures behind them."""
    varied = changed_params(rows)
    head = [
        "run",
        *varied,
        "best epoch",
        "verdict best / final",
        "of the way to the target (best)",
        "valid loss base / best / final (real frames)",
        "style FD (musicnn) base / best / final",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=rank_key):
        m = r["figures"]
        values = [param(r, k, "-") for k in varied]
        verdict = m.get("verdict", {})
        share = m.get("style_share_pct", {}).get("best")
        cells = [
            r["name"],
            *values,
            m.get("best_epoch", "-"),
            f"{verdict.get('best', '-')} / {verdict.get('final', '-')}",
            "-" if share is None else f"{share:.0f}%",
            per_model(m, "valid_loss_real"),
            per_model(m, "style_fd", "{:.4g}"),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values) or "-"


def table(rows: list[dict]) -> str:
    head = [
        "trial",
        "rank",
        "alpha",
        "dropout",
        "lr",
        "batch",
        "grad accum",
        "epochs",
        "warmup steps",
        "clip / padding",
        "train loss per epoch (objective)",
        "valid loss per epoch from 0 = base (objective)",
        "best epoch",
        "valid loss base / best / final (real frames only)",
        "style FD (musicnn) base / best / final",
        "flagged clips base / best / final",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t, e, m = r["params"].get("train", {}), r["params"].get("encode", {}), r["figures"]
        pad = e.get("pad_to_seconds")
        clip = r["params"].get("segment", {}).get("clip_seconds", 15.0)
        padding = (f"{clip:g} s padded to {pad:g} s" if pad else f"{clip:g} s") + (
            ", masked" if t.get("mask_padding", True) else ", padding NOT masked"
        )

        cells = [
            r["name"],
            t.get("rank"),
            t.get("alpha"),
            t.get("dropout"),
            t.get("lr"),
            t.get("batch_size"),
            t.get("grad_accum"),
            t.get("epochs"),
            t.get("warmup_steps"),
            padding,
            _fmt(r["train_losses"]),
            _fmt(r["valid_losses"]),
            m.get("best_epoch", "-"),
            per_model(m, "valid_loss_real"),
            per_model(m, "style_fd", "{:.4g}"),
            per_model(m, "flagged", "{}"),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _ci(d: dict | None, fmt: str) -> str:
    if not d:
        return "-"
    return f"{fmt.format(d['delta'])} [{fmt.format(d['ci95'][0])}, {fmt.format(d['ci95'][1])}]"


def _verdict(d: dict | None, lower_is_better: bool) -> str:
    if not d:
        return "-"
    return B.verdict(B.Interval.from_dict(d), lower_is_better)


def vs_top(top: dict, other: dict) -> dict | None:
    """Paired interval of best's style_similarity: `other` trial minus the `top` one, over the
    (prompt, sample) pairs both generated (None if their prompt sets differ)."""
    a, b = top.get("per_clip", {}), other.get("per_clip", {})
    x, y = a.get("style_similarity", {}).get("best"), b.get("style_similarity", {}).get("best")
    if not x or not y or a.get("pairs") != b.get("pairs") or None in x + y:
        return None
    boot = top.get("bootstrap", {"resamples": B.RESAMPLES, "seed": 0, "level": B.LEVEL})
    return B.paired_mean_diff(x, y, boot["resamples"], boot["seed"], boot["level"]).as_dict()


# A run's place: its best adapter's worst verdict word first (a run that copies or degrades ranks
# below one that moved nothing, whatever its style distance), then the style distance.
VERDICT_ORDER = ["improved", "forgets prompts", "not closer", "inert", "degraded", "copies training audio"]


def best_words(row: dict) -> list[str]:
    return row["summary"].get("verdicts", {}).get("best", {}).get("words", [])


def rank_key(row: dict) -> tuple:
    order = [VERDICT_ORDER.index(w) for w in best_words(row) if w in VERDICT_ORDER]
    fd = row["summary"].get("set", {}).get("best", {}).get("style_fd")
    return (max(order, default=len(VERDICT_ORDER)), float("inf") if fd is None else fd)


def style_ranking(rows: list[dict]) -> str:
    """Runs ranked by best's verdict, then its musicnn style distance (lower = closer to the
    held-out target clips), each with its paired intervals against base, and best's
    style_similarity against the top run's."""
    ranked = sorted(
        (r for r in rows if r["summary"].get("set", {}).get("best", {}).get("style_fd") is not None), key=rank_key
    )
    if not ranked:
        return "No run has a musicnn style distance (run them with this version of evaluate)."
    top = ranked[0]["summary"]
    target = top.get("target", {})
    lines = [
        f"Target clips: {target.get('n', '?')} held-out real clips, heard by musicnn as "
        + ", ".join(t for t, _ in target.get("top_tags", []))
        + ". Intervals: 95% paired bootstrap over the "
        "(prompt, seed) pairs; a difference counts only where its interval excludes 0. Ranked by best's "
        "verdict (improved first, then forgets prompts, not closer, inert, degraded, copies training audio), "
        "then by style FD.",
        "",
        "| rank | run | verdict (best) | style FD base -> best (n gen / target) | best - base [95% CI] | "
        "best vs base | style_similarity best (best - base [95% CI]) | "
        "best's style_similarity - top run's [95% CI] | best's top tags |",
        "|" + "---|" * 9,
    ]
    for i, r in enumerate(ranked, 1):
        s = r["summary"]
        base, best = s["set"]["base"], s["set"]["best"]
        sim = s.get("models", {}).get("best", {})
        d_sim = sim.get("delta_vs_base", {}).get("style_similarity")
        d_top = vs_top(top, s) if i > 1 else None
        other = (
            "(top)"
            if i == 1
            else f"{_ci(d_top, '{:+.3f}')}: {_verdict(d_top, False)}"
            if d_top
            else "not paired (other prompts)"
        )
        words = ", ".join(best_words(r)) or "-"
        lines.append(
            f"| {i} | {r['name']} | {words} | {base['style_fd']:.4g} -> {best['style_fd']:.4g} "
            f"({best.get('n_generated')} / {best.get('n_target')}) | "
            f"{_ci(best.get('style_fd_vs_base'), '{:+.3g}')} | {_verdict(best.get('style_fd_vs_base'), True)} | "
            f"{sim.get('mean', {}).get('style_similarity', float('nan')):.3f} ({_ci(d_sim, '{:+.3f}')}) | "
            f"{other} | {', '.join(t for t, _ in best.get('top_tags', [])[:3])} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Valid loss per epoch of every trial, epoch 0 = the base model; markers so that one-epoch
    trials show. A trial that counted padded frames is marked: its objective is not comparable."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    markers = "osD^v<>p*h"
    for i, r in enumerate(rows):
        if r["valid_losses"]:
            padded = r["params"].get("train", {}).get("mask_padding") is False
            ax.plot(
                range(len(r["valid_losses"])),
                r["valid_losses"],
                marker=markers[i % len(markers)],
                markersize=7,
                ls=":" if padded else "-",
                label=r["name"] + (" (padded frames in the loss)" if padded else ""),
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch (0 = base model)", ylabel="valid loss (training objective)", title="Valid loss per trial")
    ax.legend(fontsize=8)
    save_png(fig, path)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora compare", description=__doc__)
    ap.add_argument(
        "revs",
        nargs="*",
        metavar="REV",
        help="experiments (their `dvc exp run -n` names), tags, branches or commits to compare; default: "
        "this commit's run and its experiments, and the trials' tags",
    )
    ap.add_argument(
        "--trials",
        action="store_true",
        help="the reference trials' report instead (reports/trials.{md,html}: what `make compare` writes)",
    )
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--json", action="store_true", help="print the collected rows as JSON instead")
    ap.add_argument(
        "--partial", action="store_true", help="with --trials: report the trials that have tags when some do not"
    )
    args = ap.parse_args(argv)
    if args.trials and args.revs:
        raise UserError("compare: name revisions or --trials, not both")
    if args.trials:
        runs = [(n, n) for n in trial_tags(args.manifest, args.partial)]
    else:
        runs = resolve(args.revs) if args.revs else default_runs(args.manifest)
    rows = collect(runs)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if args.trials:
        stem, descriptions = "trials", {t.name: t.description for t in load_trials(args.manifest)}
        report = "# The reference trainings\n\nFrom `dvc exp show -T --json` and each tag's DVCLive losses.\n\n" + table(
            rows
        )
    else:
        varied = changed_params(rows)
        stem, descriptions = "experiments", {r["name"]: ", ".join(f"{k}={param(r, k)}" for k in varied) for r in rows}
        report = (
            "# Your experiments\n\n" + ", ".join(f"`{n}`" for n, _ in runs) + ", ranked by verdict then style "
            "distance; the verdicts and intervals are each run's own (best and final against base).\n\n"
            + experiments_table(rows)
        )
    report += "\n\n## Ranked by verdict, then style (musicnn)\n\n" + style_ranking(rows) + "\n"
    with atomic_path(args.out / f"{stem}.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    plot(rows, args.out / f"{stem}_valid_loss.png")
    page = write_page(rows, args.out, stem, descriptions)
    print(report)
    print(f"page: {page}")
    return 0
