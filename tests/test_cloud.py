"""cloud/experiment.sky.yaml: a SkyPilot task whose keys SkyPilot knows and whose commands are the
README's. (SkyPilot itself is ~460 MB: `make sky-check` loads the file with `sky.Task.from_yaml`
in a throwaway environment; here, its own task schema, saved.)"""

import json
import re

from ruamel.yaml import YAML

from conftest import ROOT

TASK = ROOT / "cloud/experiment.sky.yaml"
# SkyPilot 0.14.1's own task and resources schemas (sky.utils.schemas, saved by hand from a throwaway
# venv: both have additionalProperties false, so an unknown key is an error there)
SCHEMA = json.loads((ROOT / "tests/data/skypilot-0.14.1-task-schema.json").read_text())
JSON_TYPES = {"object": dict, "string": str, "integer": int, "array": list, "boolean": bool, "number": (int, float)}


def typed(value, schema: dict) -> bool:
    types = schema.get("type")
    if types is None:
        return True  # anyOf / oneOf: left to `make sky-check`
    return isinstance(value, tuple(JSON_TYPES[t] for t in ([types] if isinstance(types, str) else types) if t in JSON_TYPES))


def commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_task_file_is_a_skypilot_task():
    task = YAML(typ="safe").load(TASK.read_text())
    for part, schema in ((task, SCHEMA["task"]), (task["resources"], SCHEMA["resources"])):
        assert schema["additionalProperties"] is False
        assert set(part) <= set(schema["properties"]), set(part) - set(schema["properties"])
        assert all(typed(v, schema["properties"][k]) for k, v in part.items())
    gpus = task["resources"]["accelerators"]
    assert isinstance(gpus, dict) and all(isinstance(n, int) and n >= 1 for n in gpus.values())
    assert all(isinstance(v, str) for v in task["envs"].values())  # SkyPilot passes envs as strings
    assert task["workdir"] == "."
    assert "make install" in task["setup"]


def test_its_commands_are_the_readmes():
    task = YAML(typ="safe").load(TASK.read_text())
    run = commands(task["run"])
    assert run[:2] == ["set -e", "source .venv/bin/activate"]
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Experiments on cloud GPUs.*?```\n(.*?)```", readme, re.S)
    assert block, "README: the cloud section's command block is missing"
    assert run[2:] == commands(block.group(1))
    assert run[2:] == ["dvc pull", 'dvc exp run --pull -n "$EXP_NAME" $EXP_ARGS', 'dvc exp push origin "$EXP_NAME"']
    # every variable the commands use is declared, so `sky launch --env` can set it
    used = set(re.findall(r"\$\{?(\w+)", task["run"]))
    assert used <= set(task["envs"])
