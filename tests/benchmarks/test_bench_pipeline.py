"""bench.pipeline: stage wall times read back from a workspace's output modification times."""

import os

from bench.pipeline import workspace_stage_times

DVC_YAML = """stages:
  a:
    cmd: a
    outs: [a_out]
  b:
    cmd: b
    deps: [a_out]
    outs: [b_out]
  c:
    cmd: c
    deps: [b_out]
    metrics: [c.json]
"""


def _project(tmp_path, mtimes: dict[str, list[float]]):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  a: {}\n  b: {}\n  c: {}\n")
    for out, times in mtimes.items():
        for i, t in enumerate(times):
            path = tmp_path / out / f"{i}.bin" if out.endswith("_out") else tmp_path / out
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
            os.utime(path, (t, t))
    return tmp_path


def test_stage_times_follow_the_order_outputs_were_finished(tmp_path):
    project = _project(tmp_path, {"a_out": [1000, 1010], "b_out": [1015, 1030], "c.json": [1040]})
    times = workspace_stage_times(project)
    assert times["order"] == ["a", "b", "c"]
    assert times["stage_s"] == {"a": 10.0, "b": 20.0, "c": 10.0} and times["wall_s"] == 40.0


def test_a_partial_rerun_is_not_taken_for_a_full_one(tmp_path):
    # b and c re-ran an hour after a: b did not take an hour
    project = _project(tmp_path, {"a_out": [1000, 1010], "b_out": [4615, 4630], "c.json": [4640]})
    assert workspace_stage_times(project) is None


def test_outputs_older_than_their_inputs_are_rejected(tmp_path):
    project = _project(tmp_path, {"a_out": [1000, 1050], "b_out": [1015, 1030], "c.json": [1060]})
    assert workspace_stage_times(project) is None
