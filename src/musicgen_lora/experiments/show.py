"""`python -m musicgen_lora show`: this commit's experiments in a terminal, one line each.

`dvc exp show --only-changed` lists every stage dependency's hash and every metric of every
file, so with a handful of experiments it is wider than any terminal. This table holds what
tells them apart: the params they vary (short names where unambiguous), each run's verdict and
the figures behind it. It reads what `compare` reads and writes nothing.
"""

from __future__ import annotations

import argparse

from ..core.errors import UserError
from .compare import changed_params, collect, experiment_runs, param

HEAD = ("verdict best / final", "way", "style FD best", "loss best", "flagged best")


def short_names(keys: list[str]) -> list[str]:
    """`train.lr` -> `lr` where no other varied key ends the same way."""
    tails = [k.split(".", 1)[1] for k in keys]
    return [t if tails.count(t) == 1 else k for k, t in zip(keys, tails)]


def cells(row: dict, varied: list[str]) -> list[str]:
    m = row["figures"]
    verdict, share = m.get("verdict", {}), m.get("style_share_pct", {}).get("best")
    best = lambda key, fmt: "-" if m.get(key, {}).get("best") is None else fmt.format(m[key]["best"])  # noqa: E731
    return [
        row["name"],
        *("null" if (v := param(row, k, "-")) is None else str(v) for k in varied),
        f"{verdict.get('best', '-')} / {verdict.get('final', '-')}",
        "-" if share is None else f"{share:.0f}%",
        best("style_fd", "{:.4g}"),
        best("valid_loss_real", "{:.4f}"),
        best("flagged", "{}"),
    ]


def render(rows: list[dict]) -> str:
    """The aligned table: numbers right-aligned, words left-aligned."""
    varied = changed_params(rows)
    table = [["run", *short_names(varied), *HEAD]] + [cells(r, varied) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    numeric = [
        all(c.replace(".", "").replace("-", "").replace("%", "").replace("e", "").isdigit() or c == "-" for c in col[1:])
        for col in zip(*table)
    ]
    return "\n".join(
        "  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w, n) in enumerate(zip(r, widths, numeric))).rstrip()
        for r in table
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora show", description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    runs = experiment_runs()
    if not [name for name, _ in runs if name != "baseline"]:
        raise UserError(
            "show: this commit has no finished experiments (`dvc exp show` lists none); run some, "
            "e.g. `dvc exp run -n lr-high -S train.lr=0.002`, then show again"
        )
    print(render(collect(runs)))
    print("way: share of the way from base to your music (style); `compare` writes the full report and a page to listen")
    return 0
