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

from musicgen_lora.deps import PACKAGE, code_deps, imports_of, module_name, modules_run, regenerate

PIPELINE = ("core", "model", "metrics", "runtime", "report", "stages")  # may import only each other
NOT_FOR_THE_PIPELINE = ("tiny", "experiments")
# Layers point down: a package may import only packages of a lower rank (and itself; a stage never
# another stage). The command line (__main__, validate, deps) sits on top.
LAYERS = {
    "runtime": 0,
    "core": 1,
    "model": 2,
    "metrics": 2,
    "report": 3,
    "stages": 4,
    "use": 4,
    "experiments": 5,
    "tiny": 5,
    "": 6,
}


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
    return sorted(str(f.relative_to(ROOT)) for f in files if not any(f == p or p in f.parents for p in paths))


@pytest.mark.parametrize("stage", sorted(stage_modules()))
def test_every_module_a_stage_runs_is_one_of_its_deps(stage):
    files, deps = stage_modules()[stage]
    assert any(f.parent.name == "stages" for f in files)
    missing = uncovered(files, deps)
    assert not missing, f"dvc.yaml stage {stage} runs {missing} but does not list them in deps"


def test_the_check_catches_a_dep_taken_away():
    files, deps = stage_modules()["train"]
    missing = uncovered(files, [d for d in deps if not d.startswith("src/musicgen_lora/model/")])
    assert "src/musicgen_lora/model/delay.py" in missing and "src/musicgen_lora/model/lora.py" in missing


def test_dvc_yaml_code_deps_are_the_import_graph():
    """`python -m musicgen_lora deps --write` would change nothing: each stage lists exactly the files
    its command runs (no folder it never imports, so an unrelated edit re-runs nothing)."""
    text = (ROOT / "dvc.yaml").read_text()
    assert regenerate(text) == text, "dvc.yaml's code deps are stale: run `python -m musicgen_lora deps --write`"
    stages = YAML(typ="safe").load(text)["stages"]
    for name, stage in stages.items():
        assert [d for d in stage["deps"] if d.startswith("src/")] == code_deps(stage["cmd"].split()[3]), name


def test_an_edit_re_runs_only_the_stages_that_run_the_file():
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]

    def users(path):
        return {name for name, stage in stages.items() if path in stage["deps"]}

    assert users("src/musicgen_lora/report/html.py") == {"summarize"}  # the page renderer
    for template in ("report/page.html.j2", "report/base.html.j2", "report/style.css"):  # read by the run page
        assert users(f"src/musicgen_lora/{template}") == {"summarize"}, template
    assert users("src/musicgen_lora/report/trials.html.j2") == set()  # compare's page, no stage's
    assert users("src/musicgen_lora/model/card.md.j2") == {"train"}  # the adapters' model card
    assert users("src/musicgen_lora/stages/train.py") == {"train"}
    assert users("src/musicgen_lora/model/lora.py") == {"train", "evaluate_base", "evaluate"}
    assert "encode" not in users("src/musicgen_lora/metrics/musicnn.py")  # encode never tags audio
    assert users("src/musicgen_lora/core/params.py") == set(stages)


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else ""


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _layer(path)
        for name in sorted(imports_of(path)):
            parts = name.split(".")
            there = parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""
            if there == here and here == "stages" and parts[2:3] and path.stem not in ("__init__", parts[2]):
                bad.append(f"{module_name(path)} imports the stage {name}")
            elif there != here and LAYERS[there] >= LAYERS[here]:
                bad.append(f"{module_name(path)} ({here or 'command line'}) imports {name} ({there or 'command line'})")
    return bad


def test_layers_only_point_down():
    """runtime < core < model, metrics < report < stages, use < experiments, tiny < the command
    line: nothing imports a layer above (or beside) its own; no stage imports another."""
    assert set(LAYERS) - {""} == {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert upward_imports() == []


def test_the_layer_check_catches_an_upward_import():
    bad = PACKAGE / "core" / "_upward_probe.py"
    bad.write_text("from ..model import musicgen\nfrom ..stages import segment\n")
    try:
        found = upward_imports()
    finally:
        bad.unlink()
    assert any("core._upward_probe" in b and "model.musicgen" in b for b in found), found
    assert any("core._upward_probe" in b and "stages.segment" in b for b in found), found


def test_pipeline_code_never_imports_builders_benchmarks_or_trials():
    for sub in PIPELINE:
        for path in (PACKAGE / sub).rglob("*.py"):
            bad = [n for n in imports_of(path) if n.split(".")[1:2] and n.split(".")[1] in NOT_FOR_THE_PIPELINE]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_the_product_in_the_package():
    """The bench (bench/) and the test workspace (tests/workspace.py) live outside the package; nothing
    in it imports them or reads the test suite."""
    assert not (PACKAGE / "bench").exists() and not (PACKAGE / "tiny" / "workspace.py").exists()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        absolute = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        absolute |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        outside = {m for m in absolute | names if m.split(".")[0] in ("bench", "tests", "conftest", "workspace")}
        text = path.read_text(encoding="utf-8")
        assert not outside and '"tests"' not in text and "'tests'" not in text, (path.relative_to(ROOT), outside)
