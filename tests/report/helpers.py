"""A fake run for the page tests (short synthesized clips, rows, losses, training samples; no
model) and headless Chromium driven from the command line (`--dump-dom`, `--screenshot`), with
the probe (selftest.js) put into a copy of the page it opens: the pages never carry it."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.metrics.plots import plot_losses

PROMPTS = ["bright upbeat chiptune", "dark driving chiptune", "calm solo piano"]
MODELS = ["base", "best", "final"]
SR = 16000
SELFTEST_JS = Path(__file__).with_name("selftest.js")


def tone(path: Path, freq: float, seconds: float = 1.0) -> None:
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.3 * np.sin(2 * np.pi * freq * t) * np.exp(-t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.astype(np.float32), SR, subtype="PCM_16")


def fake_run(root: Path) -> dict:
    """evaluation/ (3 prompts x 3 models), metrics/train/samples/ (epochs 0-2, 2 prompts), rows,
    epochs and a summary in the shapes the pipeline writes them."""
    eval_dir, rows = root / "evaluation", []
    for m, model in enumerate(MODELS):
        for i, prompt in enumerate(PROMPTS):
            file = f"{model}_model/{i:02d}_{prompt.replace(' ', '-')}.wav"
            tone(eval_dir / file, 220.0 * (i + 1) + 55 * m)
            metrics = {
                "loudness_slope_lu_per_s": -0.1 * i,
                "tail_drop_lu": 1.5 + m,
                "spectral_flatness": 0.01 * (m + 1),
                "code_js_divergence": 0.5 - 0.1 * m,
                "loudness_curve_lufs": [-20.0, -21.0],
            }
            if (model, i) == ("base", 1):
                metrics = {"spectral_flatness": 0.2}  # keys may be missing
            rows.append(
                {
                    "prompt": prompt,
                    "model": model,
                    "seed": 10 + i,
                    "file": file,
                    "duration_s": 1.0,
                    "valid_loss": 5.5 - 0.3 * m,
                    "flags": ["decaying"] if (model, i) == ("final", 2) else [],
                    "metrics": metrics,
                }
            )
    epochs = [
        {"epoch": 0, "valid_loss": 5.5, "train_loss": None},
        {"epoch": 1, "valid_loss": 5.2, "train_loss": 5.4},
        {"epoch": 2, "valid_loss": 4.9, "train_loss": 5.0},
    ]
    summary = {
        "best_epoch": 2,
        "valid_loss_objective": {"base": 5.5, "best": 4.9, "final": 4.9},
        "checks": {
            "best_vs_base": {"valid_loss": "better", "style_fd": "no measurable difference"},
            "final_vs_base": {"valid_loss": "worse"},
        },
        "models": {
            m: {
                "mean": {"valid_loss": 5.5 - 0.3 * k, "code_js_divergence": 0.5 - 0.1 * k},
                "clips": 3,
                "flags": {"decaying": 1} if m == "final" else {},
                "flagged_clips": int(m == "final"),
            }
            for k, m in enumerate(MODELS)
        },
        "set": {m: {"style_fd": 50.0 + k, "style_fd_mfcc": 100.0 - k} for k, m in enumerate(MODELS)},
    }
    samples = root / "metrics/train/samples"
    sample_prompts = PROMPTS[:2]
    for e in epochs:
        d = samples / f"epoch_{e['epoch']}"
        for j in range(2):
            tone(d / f"{j:02d}.wav", 330.0 + 110 * j + 20 * e["epoch"], 0.5)
        (d / "index.json").write_text(
            json.dumps(
                {**e, "prompts": sample_prompts, "files": ["00.wav", "01.wav"], "seed": 0, "seconds": 0.5, "sample_rate": SR}
            )
        )
    (samples / "index.json").write_text(json.dumps({"prompts": sample_prompts, "epochs": [0, 1, 2]}))
    loss = root / "metrics/plots/loss.png"  # drawn as summarize draws it, shown on the page
    plot_losses(epochs, loss, "training objective: real frames")
    return {
        "rows": rows,
        "eval_dir": eval_dir,
        "epochs": epochs,
        "summary": summary,
        "samples": samples,
        "loss": loss,
        "page": root / "metrics/report.html",
    }


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def browser_expected() -> bool:
    """True where a browser check must run: chromium is installed, or this is CI."""
    return bool(shutil.which("chromium") or shutil.which("chromium-browser")) or in_ci()


def fake_headline(k: int) -> dict:
    """A trial's metrics/headline.json, as `dvc exp show` gives it to `compare`."""
    return {
        "best_epoch": k,
        "loss_objective": 5.0 - 0.1 * k,
        "checks": {"better": k, "worse": 0, "no_measurable_difference": 5 - k},
        "valid_loss_real": {m: 5.5 - 0.1 * k - 0.2 * i for i, m in enumerate(MODELS)},
        "style_fd": {m: 100.0 + k for m in MODELS},
        "flagged": {m: k % 2 for m in MODELS},
    }


def chromium() -> str:
    """The browser, or a skip (one line) outside CI and a failure in CI."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if in_ci():
        pytest.fail("CI: chromium is missing; .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium not installed (Debian: apt-get install chromium); browser test skipped")


def _run(exe: str, args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def with_probe(page: Path) -> Path:
    """A copy of `page` beside it (so its relative links resolve the same) with selftest.js first in
    its <head>, before anything that could log an error."""
    text = page.read_text(encoding="utf-8")
    assert text.count("<head>") == 1, f"no single <head> in {page}"
    copy = page.with_name(f"{page.stem}.selftest{page.suffix}")
    copy.write_text(text.replace("<head>", f"<head>\n<script>\n{SELFTEST_JS.read_text()}</script>", 1), encoding="utf-8")
    return copy


def probe(exe: str, page: Path, profile: Path) -> tuple[dict, list[str]]:
    """Open `page` with the probe added (a copy, removed after); return the probe's summary and the
    console lines Chromium logged (any console message at all)."""
    copy = with_probe(page)
    try:
        proc = _run(exe, ["--virtual-time-budget=15000", "--dump-dom", copy.resolve().as_uri()], profile)
    finally:
        copy.unlink()
    found = re.search(r'<pre id="selftest">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no selftest output (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


def screenshot(exe: str, page: Path, out: Path, profile: Path, size: tuple[int, int] = (1280, 2000)) -> Path:
    _run(
        exe,
        ["--virtual-time-budget=5000", f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.resolve().as_uri()],
        profile,
    )
    assert out.is_file() and out.stat().st_size > 10_000, f"no screenshot at {out}"
    return out
