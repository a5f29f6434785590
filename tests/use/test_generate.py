"""`python -m musicgen_lora generate` on the tiny model: files, lengths, sidecars, seams, errors."""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.__main__ import main


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main(["generate", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_short_request_writes_the_length_asked_and_a_sidecar(in_root, tmp_path, capsys):
    out = tmp_path / "a.wav"
    rc, stdout, _ = run(capsys, "--prompt", "bright chiptune", "--seconds", 1.5, "--out", out)
    assert rc == 0 and str(out) in stdout
    info = sf.info(out)
    assert (info.samplerate, info.frames, info.subtype) == (16000, 24000, "PCM_16")
    side = json.loads((tmp_path / "a.wav.json").read_text())
    assert side["prompt"] == "bright chiptune" and side["seed"] == 0 and side["seconds"] == 1.5
    assert (side["window_s"], side["stride_s"], side["windows"], side["seams"]) == (30.0, 18.0, 1, [])
    assert side["model"] == "assets/tiny-musicgen" and side["adapter"] is None


def test_several_prompts_one_file_each_each_from_the_seed(in_root, tmp_path, capsys):
    rc, _, _ = run(
        capsys,
        "--prompt",
        "Bright chiptune!",
        "--prompt",
        "calm piano",
        "--seconds",
        1,
        "--seed",
        5,
        "--out-dir",
        tmp_path / "many",
    )
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert files == ["00_bright-chiptune.wav", "00_bright-chiptune.wav.json", "01_calm-piano.wav", "01_calm-piano.wav.json"]
    run(capsys, "--prompt", "calm piano", "--seconds", 1, "--seed", 5, "--out", tmp_path / "alone.wav")
    # a prompt gives the same audio whichever prompts come with it
    assert np.array_equal(sf.read(tmp_path / "alone.wav")[0], sf.read(tmp_path / "many/01_calm-piano.wav")[0])


def test_beyond_the_window_continues_and_measures_every_seam(in_root, tmp_path, capsys, tiny_adapter):
    out = tmp_path / "long.wav"
    rc, stdout, _ = run(
        capsys, "--adapter", tiny_adapter, "--prompt", "chiptune", "--seconds", 10, "--window", 4, "--out", out
    )
    assert rc == 0
    assert sf.info(out).frames == 10 * 16000
    lines = [line for line in stdout.splitlines() if "seam " in line]
    assert [re.search(r"seam (\d) at ([\d.]+) s", line).groups() for line in lines] == [
        ("1", "4.00"),
        ("2", "6.40"),
        ("3", "8.80"),
    ]  # window 4 s, stride 0.6 x 4 = 2.4 s
    assert all("LU" in line and "spectral jump" in line and "n/a" not in line for line in lines)
    assert all(
        re.search(r"s (stands out|blends in) \(jumps more than \d+% of the clip's own moments", line) for line in lines
    )  # every seam judged, not just measured
    side = json.loads((tmp_path / "long.wav.json").read_text())
    assert (side["window_s"], side["stride_s"], side["windows"]) == (4.0, 2.4, 4)
    assert [s["at_s"] for s in side["seams"]] == [4.0, 6.4, 8.8]
    assert all(isinstance(s["loudness_jump_lu"], float) and s["spectral_jump_db"] >= 0 for s in side["seams"])
    assert all(s["verdict"] in ("stands out", "blends in") and 0 <= s["loudness_percentile"] <= 100 for s in side["seams"])
    assert side["adapter"] == str(tiny_adapter) and len(side["adapter_sha256"]) == 64
    assert set(side["seam_typical"]) == {"loudness_jump_lu", "spectral_jump_db"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--adapter", "{tmp}/no_such_adapter"], "no_such_adapter: no adapter_config.json"),
        (["--prompt", "second"], "--out names one file but 2 prompts were given; use --out-dir"),
        (["--window", 90], "--window 90 s is more than this decoder's 4096 positions hold"),
        (["--seconds", 0], "--seconds must be in [0.1, 3600]"),
        (["--seconds", "1e-9"], "--seconds must be in [0.1, 3600]"),
        (["--seconds", 100000], "--seconds must be in [0.1, 3600]"),
        (["--seconds", "nan"], "--seconds must be in"),
        (["--window", "nan"], "--window must be a number of seconds more than 0"),
        (["--seed", 2**64], "--seed must be in [0, 2**32)"),
        (["--seed", -1], "--seed must be in [0, 2**32)"),
        (["--model", "{tmp}/no_model"], "no_model': no such folder"),
    ],
)
def test_errors_are_one_line_and_exit_1(in_root, tmp_path, capsys, args, message):
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in args]
    rc, _, err = run(capsys, "--prompt", "chiptune", "--out", tmp_path / "x.wav", *args)
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.wav").exists()


def test_out_must_be_a_file_and_out_dir_a_folder(in_root, tmp_path, capsys):
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, "--prompt", "a", "--out", tmp_path / "folder.wav")
    assert rc == 1 and "is a folder" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "--prompt", "a", "--out-dir", tmp_path / "file")
    assert rc == 1 and "is a file" in err and len(err.strip().splitlines()) == 1


def test_a_pipeline_output_is_not_overwritten_unless_forced(tmp_path, capsys, monkeypatch):
    """evaluation/best_model is a stage's DVC-tracked output: generate refuses to write into it."""
    import shutil

    from conftest import ROOT

    shutil.copy(ROOT / "dvc.yaml", tmp_path)
    shutil.copy(ROOT / "params.yaml", tmp_path)
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "evaluation" / "best_model" / "00_x.wav"
    rc, _, err = run(capsys, "--prompt", "a", "--seconds", 0.5, "--out", "evaluation/best_model/00_x.wav")
    assert rc == 1 and "inside evaluation/best_model" in err and "--force" in err and not target.exists()
    rc, _, _ = run(capsys, "--prompt", "a", "--seconds", 0.5, "--out", "evaluation/best_model/00_x.wav", "--force")
    assert rc == 0 and target.exists()


def test_two_writers_of_one_out_leave_a_matching_wav_and_sidecar(in_root, tmp_path):
    """Two generate runs with the same --out and other seeds: each writes through its own temp
    name, and the wav and its sidecar come from the same run."""
    import subprocess
    import sys

    def start(seed, out):  # the command line a user runs (relaunched with the pinned numerics)
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "musicgen_lora",
                "generate",
                "--prompt",
                "chiptune",
                "--seconds",
                "1",
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    out = tmp_path / "same.wav"
    procs = [start(seed, out) for seed in (1, 2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    side = json.loads((tmp_path / "same.wav.json").read_text())
    alone = tmp_path / f"alone{side['seed']}.wav"
    assert start(side["seed"], alone).wait(timeout=300) == 0
    assert np.array_equal(sf.read(out)[0], sf.read(alone)[0])
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_full_disk_is_one_line(in_root, tmp_path, capsys, monkeypatch):
    """libsndfile reports a full disk as "System error."; generate says which file and what to do."""
    import errno

    import musicgen_lora.core.audio as audio

    def full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"RIFF")
        raise sf.LibsndfileError(2, "")  # what libsndfile raises when a write fails

    monkeypatch.setattr(audio.sf, "write", full)
    monkeypatch.setattr(audio.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    rc, _, err = run(capsys, "--prompt", "a", "--seconds", 0.5, "--out", tmp_path / "x.wav")
    last = err.strip().splitlines()[-1]  # after the progress bar
    assert rc == 1 and "Traceback" not in err and last.startswith("generate: cannot write"), err
    assert "x.wav: No space left on device" in last and "free some space" in last
    assert not list(tmp_path.glob("*x.wav*")) and errno.ENOSPC
