"""make gpu-check: one line and exit 0 without CUDA; its measurements run (tiny model, CPU)."""

import json

import torch

from bench import gpu_check


def test_without_cuda_it_says_so_and_measures_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "results.json")]) == 0
    assert capsys.readouterr().out.strip() == (
        "gpu-check: no CUDA device on this machine: nothing measured (run it where `nvidia-smi` lists a GPU)"
    )
    assert not (tmp_path / "results.json").exists()


def test_its_measurements_run_on_the_cpu(capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path / "results.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["device"] == "cpu"
    for precision in ("fp32", "bf16"):
        for batch in (1, 4):
            assert result["training"][f"batch{batch}_{precision}"]["step_s"] > 0
            assert 0 < result["training"][f"batch{batch}_{precision}"]["mfu"] < 2
        for arm in ("base", "unmerged", "merged"):
            assert result["generation_8_prompts"][f"{arm}_{precision}"]["s_per_frame"] > 0
    assert not (tmp_path / "results.json").exists()  # a CPU run never writes GPU figures


def test_its_pipeline_copies_this_project():
    """The pipeline check copies the project it sits in (bench/ at the root), not a folder above it."""
    from conftest import ROOT

    assert gpu_check.ROOT == ROOT and (gpu_check.ROOT / "dvc.yaml").is_file()
