"""The DVC graph cannot drift from the code: every module a stage runs is one of its deps.

A stage whose deps miss a module it imports reports "up to date" over stale outputs, the
silent kind of defect. Each stage's command (`python -m musicgen_lora <command>`) is resolved to
its module through the CLI's own table; the modules it runs are the transitive in-package
imports (function-level imports included) of that module and of the command line, plus the
`__init__.py` of every package on the way.
"""

import ast
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from musicgen_lora.__main__ import COMMANDS

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "musicgen_lora"
PIPELINE = ("core", "model", "metrics", "runtime", "report", "stages")  # may import only each other
NOT_FOR_THE_PIPELINE = ("bench", "tiny", "experiments")


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


def stage_modules() -> dict[str, tuple[set[Path], list[str]]]:
    """stage -> (files it runs, its deps)."""
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[:3] == ["python", "-m", "musicgen_lora"], f"stage {name}: {stage['cmd']}"
        out[name] = (modules_run(f"musicgen_lora.{COMMANDS[words[3]].module}"), stage["deps"])
    return out


def uncovered(files: set[Path], deps: list[str]) -> list[str]:
    paths = [ROOT / d for d in deps]
    return sorted(str(f.relative_to(ROOT)) for f in files
                  if not any(f == p or p in f.parents for p in paths))


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_module_a_stage_runs_is_one_of_its_deps(stage):
    files, deps = stage_modules()[stage]
    assert any(f.parent.name == "stages" for f in files)
    missing = uncovered(files, deps)
    assert not missing, f"dvc.yaml stage {stage} runs {missing} but does not list them in deps"


def test_the_check_catches_a_dep_taken_away():
    files, deps = stage_modules()["train"]
    missing = uncovered(files, [d for d in deps if d != "src/musicgen_lora/model"])
    assert "src/musicgen_lora/model/delay.py" in missing and "src/musicgen_lora/model/lora.py" in missing


def test_pipeline_code_never_imports_builders_benchmarks_or_trials():
    for sub in PIPELINE:
        for path in (PACKAGE / sub).rglob("*.py"):
            bad = [n for n in imports_of(path) if n.split(".")[1:2] and n.split(".")[1] in NOT_FOR_THE_PIPELINE]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_nothing_in_the_package_reads_the_test_suite():
    for path in PACKAGE.rglob("*.py"):
        imported = imports_of(path) | {n.id for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                                       if isinstance(n, ast.Name)}
        text = path.read_text(encoding="utf-8")
        assert "conftest" not in imported and '"tests"' not in text and "'tests'" not in text, path.relative_to(ROOT)
