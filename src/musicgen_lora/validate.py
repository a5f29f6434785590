"""`python -m musicgen_lora validate`: check the whole params.yaml, then the values only the
model's own config can bound (it sits above core and model, so core/params.py never imports a model)."""

from __future__ import annotations

import argparse

from .core.params import ParamsError, load, problems
from .model.lora import lora_config
from .model.musicgen import check_generation_length, load_config


def main(argv: list[str]) -> int:
    """Check the whole params.yaml and print every problem, one line each (exit 2 if any)."""
    argparse.ArgumentParser(prog="musicgen_lora validate", description=main.__doc__).parse_args(argv)
    found = problems()
    if found:
        raise ParamsError("\n".join(found))
    mp, tp, ep = load("model", "train", "evaluate")
    config = load_config(mp)
    check_generation_length(config, ep.seconds)
    lora_config(tp, config)  # targets that exist, a rank the decoder's width allows
    print("params.yaml: ok")
    return 0
