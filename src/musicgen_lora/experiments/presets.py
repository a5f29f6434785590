"""`python -m musicgen_lora preset NAME`: apply a ready override set from experiments/presets.yaml
to params.yaml (the values a real checkpoint needs and the tiny default does not have)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ruamel.yaml import YAML

from ..core.errors import UserError
from ..core.params import PARAMS_FILE, edit_params, problems, read_params
from ..model.families import check_available

PRESETS = Path("experiments/presets.yaml")


def load_presets(path: Path = PRESETS) -> dict[str, dict]:
    if not path.exists():
        raise UserError(f"{path}: not found (run from the project root)")
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))["presets"]


def checkpoint_hint(name: str) -> str:
    """Whether the checkpoint a preset names is on this machine, and how to get it if not."""
    try:
        check_available(name, None)
    except UserError as exc:
        return str(exc).removeprefix("params.yaml: ")
    return f"{name} is on this machine"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora preset", description=__doc__)
    ap.add_argument("names", nargs="*", metavar="NAME", help="presets to apply, in order (none: list them)")
    args = ap.parse_args(argv)
    presets = load_presets()
    if not args.names:
        for name, p in presets.items():
            print(f"{name:18} {p['description']}")
        return 0
    unknown = [n for n in args.names if n not in presets]
    if unknown:
        raise UserError(f"preset: unknown {unknown} (known: {', '.join(presets)})")
    current = read_params()
    changes: dict[str, dict] = {}
    for name in args.names:
        for key, value in presets[name]["params"].items():
            section, field = key.split(".", 1)
            changes.setdefault(section, {})[field] = value
    edit_params(PARAMS_FILE, changes, note=f"preset {' + '.join(args.names)}")
    for section, values in changes.items():
        for field, value in values.items():
            if current[section][field] != value:
                print(f"params.yaml: {section}.{field}: {current[section][field]!r} -> {value!r}")
    for line in problems():
        print(line)
    name = changes.get("model", {}).get("name")
    if name and name != "tiny":
        print(f"the checkpoint: {checkpoint_hint(name)}")
    print(
        "now set evaluate.prompts and train.sample_prompts (what the page plays after every epoch) to prompts "
        "in your style, then `python -m musicgen_lora validate` and commit"
    )
    return 0
