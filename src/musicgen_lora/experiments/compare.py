"""`python -m musicgen_lora compare`: the cross-trial report, from `dvc exp show -T --json`.

Params and summary metrics come from DVC (not from files on disk); per-epoch losses from the
DVCLive TSVs committed at each tag. Writes `reports/trials.md` (a table in the shape of
experiments/TRIALS.md) and `reports/trials_valid_loss.png` (valid loss of every trial).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.files import atomic_path  # noqa: E402
from .trials import MANIFEST, git, load_trials  # noqa: E402

LOSS_TSV = "metrics/train/plots/metrics/{}/loss.tsv"


def exp_rows(show: list) -> dict[str, dict]:
    """name -> {params, metrics} for every row of `dvc exp show --json` (tags are rows of their own)."""
    out = {}

    def visit(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data:
                params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
                metrics = {}
                for m in (data.get("metrics") or {}).values():
                    metrics.update(m.get("data") or {})
                out.setdefault(node.get("name") or node.get("rev"), {"params": params, "metrics": metrics})
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(show)
    return out


def epoch_losses(tag: str, split: str) -> list[float]:
    text = git("show", f"{tag}:{LOSS_TSV.format(split)}", check=False)
    return [float(r["loss"]) for r in csv.DictReader(io.StringIO(text), delimiter="\t")] if text else []


def collect(manifest: Path = MANIFEST) -> list[dict]:
    names = [t.name for t in load_trials(manifest) if git("tag", "-l", t.name)]
    show = json.loads(subprocess.run(["dvc", "exp", "show", "-T", "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    rows = exp_rows(show)
    return [{"name": n, **rows.get(n, {"params": {}, "metrics": {}}), "train_losses": epoch_losses(n, "train"),
             "valid_losses": epoch_losses(n, "valid")} for n in names]


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values) or "-"


def table(rows: list[dict]) -> str:
    head = ["trial", "rank", "alpha", "dropout", "lr", "batch", "grad accum", "epochs", "warmup steps",
            "clip / padding", "train loss per epoch", "valid loss per epoch", "best epoch",
            "valid loss base / best / final", "style FD base / best / final", "flags best / final"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t, e, m = r["params"].get("train", {}), r["params"].get("encode", {}), r["metrics"]
        models = m.get("models", {})
        pad = e.get("pad_to_seconds")
        clip = r["params"].get("segment", {}).get("clip_seconds", 15.0)
        padding = (f"{clip:g} s padded to {pad:g} s" if pad else f"{clip:g} s") + \
            (", masked" if t.get("mask_padding", True) else ", padding NOT masked")

        def per_model(key):
            return " / ".join(f"{models.get(n, {}).get('mean', {}).get(key, float('nan')):.3f}"
                              for n in ("base", "best", "final"))

        flags = " / ".join(str(models.get(n, {}).get("flags", {}) or "none") for n in ("best", "final"))
        cells = [r["name"], t.get("rank"), t.get("alpha"), t.get("dropout"), t.get("lr"), t.get("batch_size"),
                 t.get("grad_accum"), t.get("epochs"), t.get("warmup_steps"), padding, _fmt(r["train_losses"]),
                 _fmt(r["valid_losses"]), m.get("best_epoch", "-"), per_model("valid_loss"),
                 per_model("style_fd_mfcc"), flags]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        if r["valid_losses"]:
            ax.plot(range(1, len(r["valid_losses"]) + 1), r["valid_losses"], "o-", label=r["name"])
    ax.set(xlabel="epoch", ylabel="valid loss (real frames only)", title="Valid loss per trial")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora compare", description=__doc__)
    ap.add_argument("--manifest", type=Path, default=MANIFEST)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--json", action="store_true", help="print the collected rows as JSON instead")
    args = ap.parse_args(argv)
    rows = collect(args.manifest)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    report = "# The reference trainings\n\nFrom `dvc exp show -T --json` and each tag's DVCLive losses.\n\n" + \
        table(rows) + "\n"
    with atomic_path(args.out / "trials.md") as tmp:
        tmp.write_text(report, encoding="utf-8")
    plot(rows, args.out / "trials_valid_loss.png")
    print(report)
    return 0
