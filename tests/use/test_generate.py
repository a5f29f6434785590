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
    rc, _, _ = run(capsys, "--prompt", "Bright chiptune!", "--prompt", "calm piano", "--seconds", 1, "--seed", 5,
                   "--out-dir", tmp_path / "many")
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert files == ["00_bright-chiptune.wav", "00_bright-chiptune.wav.json", "01_calm-piano.wav",
                     "01_calm-piano.wav.json"]
    run(capsys, "--prompt", "calm piano", "--seconds", 1, "--seed", 5, "--out", tmp_path / "alone.wav")
    # a prompt gives the same audio whichever prompts come with it
    assert np.array_equal(sf.read(tmp_path / "alone.wav")[0], sf.read(tmp_path / "many/01_calm-piano.wav")[0])


def test_beyond_the_window_continues_and_measures_every_seam(in_root, tmp_path, capsys, tiny_adapter):
    out = tmp_path / "long.wav"
    rc, stdout, _ = run(capsys, "--adapter", tiny_adapter, "--prompt", "chiptune", "--seconds", 10, "--window", 4,
                        "--out", out)
    assert rc == 0
    assert sf.info(out).frames == 10 * 16000
    lines = [line for line in stdout.splitlines() if "seam " in line]
    assert [re.search(r"seam (\d) at ([\d.]+) s", line).groups() for line in lines] == \
        [("1", "4.00"), ("2", "6.40"), ("3", "8.80")]  # window 4 s, stride 0.6 x 4 = 2.4 s
    assert all("LU" in line and "spectral jump" in line and "n/a" not in line for line in lines)
    side = json.loads((tmp_path / "long.wav.json").read_text())
    assert (side["window_s"], side["stride_s"], side["windows"]) == (4.0, 2.4, 4)
    assert [s["at_s"] for s in side["seams"]] == [4.0, 6.4, 8.8]
    assert all(isinstance(s["loudness_jump_lu"], float) and s["spectral_jump_db"] >= 0 for s in side["seams"])
    assert side["adapter"] == str(tiny_adapter) and len(side["adapter_sha256"]) == 64
    assert set(side["seam_typical"]) == {"loudness_jump_lu", "spectral_jump_db"}


@pytest.mark.parametrize("args, message", [
    (["--adapter", "{tmp}/no_such_adapter"], "no_such_adapter: no adapter_config.json"),
    (["--prompt", "second"], "--out names one file but 2 prompts were given; use --out-dir"),
    (["--window", 90], "--window 90 s is more than this decoder's 4096 positions hold"),
    (["--seconds", 0], "--seconds must be more than 0"),
    (["--model", "{tmp}/no_model"], "cannot load model"),
])
def test_errors_are_one_line_and_exit_1(in_root, tmp_path, capsys, args, message):
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in args]
    rc, _, err = run(capsys, "--prompt", "chiptune", "--out", tmp_path / "x.wav", *args)
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.wav").exists()
