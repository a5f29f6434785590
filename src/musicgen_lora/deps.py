"""`python -m musicgen_lora deps [--write | --check]`: each dvc.yaml stage's code deps are
exactly the files its command runs, found from the import graph.

A stage's command `python -m musicgen_lora <command>` runs `__main__`, the command's module (the
CLI's own table says which) and every in-package module they import, transitively (imports
inside functions included), plus the `__init__.py` of each package on the way. Those files,
listed one by one, replace the stage's `src/` deps; its other deps (data, assets, adapters) stay
as written. So editing a page template re-runs summarize alone, and editing core/params.py
re-runs exactly the stages that import it. tests/test_dvc_graph.py fails when dvc.yaml differs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from ruamel.yaml import YAML

PACKAGE = Path(__file__).resolve().parent
SRC = PACKAGE.parent
ROOT = SRC.parent
PACKAGE_DATA = ("*.html", "*.css", "*.j2")  # files a module reads beside its code (templates)


def module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """In-package modules `path` imports, anywhere in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import params`
    return {n for n in found if n.split(".")[0] == "musicgen_lora" and module_file(n)}


def modules_run(entry: str) -> set[Path]:
    """Files executed by `python -m musicgen_lora` running module `entry`."""
    todo, seen = ["musicgen_lora.__main__", entry], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
            path = module_file(".".join(parts[:i]))
            if path and path not in seen:
                seen.add(path)
                todo += sorted(imports_of(path))
    return seen


def data_read(files: set[Path]) -> set[Path]:
    """The package data (templates, stylesheets) those modules read: a data file beside a module
    whose string constants name it, and what those files name in turn (`{% extends "base.html.j2" %}`)."""
    names = {
        f: {
            n.value
            for n in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        for f in files
    }
    todo = [d for f in files for pattern in PACKAGE_DATA for d in f.parent.glob(pattern) if d.name in names[f]]
    found: set[Path] = set()
    while todo:
        data = todo.pop()
        if data not in found:
            found.add(data)
            text = data.read_text(encoding="utf-8")
            todo += [d for pattern in PACKAGE_DATA for d in data.parent.glob(pattern) if d.name in text]
    return found


def code_deps(command: str) -> list[str]:
    """The files (relative to the project root) that `python -m musicgen_lora <command>` runs,
    with the package data (templates) they read."""
    from .__main__ import COMMANDS

    files = modules_run(f"musicgen_lora.{COMMANDS[command].module}")
    return sorted((p.relative_to(ROOT).as_posix() for p in files | data_read(files)))


def stage_command(cmd: str) -> str:
    words = cmd.split()
    if words[:3] != ["python", "-m", "musicgen_lora"]:
        raise ValueError(f"a stage command must start with `python -m musicgen_lora` (got {cmd!r})")
    return words[3]


def regenerate(text: str) -> str:
    """dvc.yaml's text with every stage's `src/` deps replaced by its code deps. Edited as text,
    line by line inside each stage's `deps:` list, so comments, commands and layout stay as written."""
    stages = YAML(typ="safe").load(text)["stages"]
    out: list[str] = []
    stage, in_deps = None, False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        item = line.startswith("    - ") or line.startswith("    #")
        if in_deps and not item:  # the list ended: its code deps go after its last other dep
            out += [f"    - {d}\n" for d in code_deps(stage_command(stages[stage]["cmd"]))]
            in_deps = False
        if line.startswith("  ") and not line.startswith("   ") and stripped[:-1] in stages:
            stage = stripped[:-1]
        elif stage and line.startswith("    deps:"):
            in_deps = True
        if not (in_deps and line.startswith("    - src/")):
            out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora deps", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    mode.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml's code deps are not the imports'")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = ap.parse_args(argv)
    text = args.dvc_yaml.read_text(encoding="utf-8")
    new = regenerate(text)
    if args.write:
        if new != text:
            args.dvc_yaml.write_text(new, encoding="utf-8")
        print(f"{args.dvc_yaml}: code deps {'rewritten' if new != text else 'already current'}")
        return 0
    if args.check and new != text:
        print(
            f"{args.dvc_yaml}: code deps differ from the imports; run `python -m musicgen_lora deps --write`",
            file=sys.stderr,
        )
        return 1
    if not args.check:
        sys.stdout.write(new)
    return 0
