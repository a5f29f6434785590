"""summarize on a small synthetic evaluation: intervals, checks that say "better" only where the
interval excludes zero, the report in words, and the padded-length comparison."""

import json

import numpy as np
from safetensors.numpy import save_file
import soundfile as sf

from musicgen_lora.core.files import write_jsonl
from musicgen_lora.metrics import comparison as C
from musicgen_lora.stages import summarize

SR = 16000
PROMPTS = ["bright chiptune", "dark chiptune", "calm piano", "ambient pad", "lofi beat", "string quartet"]
N = 2 * len(PROMPTS)  # clip-length pairs: 2 samples per prompt (verdicts need bootstrap.MIN_PAIRS)


def rows_for(model: str, rng, style_shift: float, length: str = "clip", silence: float = 0.0) -> list[dict]:
    rows = []
    for s in range(2):
        for i, prompt in enumerate(PROMPTS):
            sub = "padded/" if length == "padded" else ""
            m = {
                "style_similarity": 0.5 + 0.05 * i + style_shift + rng.normal(0, 0.01),
                "tag_kl": 0.8 + 0.1 * i + rng.normal(0, 0.05),  # no real change: noise only
                "code_js_divergence": 0.5 - style_shift / 2,
                "silence_code_share": 0.0,
                "integrated_loudness_lufs": -20.0,
                "loudness_slope_lu_per_s": 0.1,
                "loudness_thirds_delta_lu": 1.0 - 10 * silence,
                "tail_drop_lu": 0.0,
                "silence_ratio": 0.0,
                "spectral_flatness": 0.1,
                "loudness_curve_lufs": [-20.0] * 26,
                "top_tags": ["techno", "fast", "beat"],
            }
            if length == "padded":
                m.update(
                    {
                        "past_silence_code_share": silence + rng.uniform(0, 0.002),
                        "within_silence_code_share": 0.0,
                        "past_loudness_change_lu": -20 * silence + rng.normal(0, 0.1),
                        "past_silence_ratio": silence,
                    }
                )
            rows.append(
                {
                    "prompt": prompt,
                    "model": model,
                    "sample": s,
                    "seed": s * len(PROMPTS) + i,
                    "length": length,
                    "file": f"{model}_model/{sub}{i:02d}_{s}.wav",
                    "duration_s": 3.0,
                    "valid_loss": {"base": 5.0, "best": 4.5, "final": 4.5}[model],
                    "flags": [],
                    "metrics": m,
                    "made_on": {"device": "cpu", "dtype": "float32", "batch": 1},
                }
            )
    return rows[: len(PROMPTS)] if length == "padded" else rows


def test_summary_intervals_checks_and_report(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train"
    train.mkdir()
    (train / "epochs.json").write_text(
        json.dumps([{"epoch": 0, "valid_loss": 5.0, "train_loss": None}, {"epoch": 1, "valid_loss": 4.5, "train_loss": 4.8}])
    )
    (train / "metrics.json").write_text(
        json.dumps(
            {"best_epoch": 1, "mask_padding": False, "valid_loss_objective": {"base": 5.0, "best": 4.5, "final": 4.5}}
        )
    )
    rows = rows_for("base", rng, 0.0) + rows_for("best", rng, 0.2) + rows_for("final", rng, 0.2)
    rows += rows_for("base", rng, 0.0, "padded") + rows_for("best", rng, 0.2, "padded", silence=0.3)
    write_jsonl(tmp_path / "results.jsonl", rows)
    ev = tmp_path / "evaluation"
    for r in rows:
        (ev / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        sf.write(ev / r["file"], 0.1 * rng.standard_normal(SR), SR)
    tags = [["techno", 0.6], ["electronic", 0.5]]
    base_losses = list(5 + rng.normal(0, 0.3, 10))
    sets = {
        "base": {
            "style_fd_mfcc": 400.0,
            "style_fd": 30.0,
            "n_generated": N,
            "n_target": 12,
            "top_tags": tags,
            "valid_losses": base_losses,
        },
        "best": {
            "style_fd_mfcc": 300.0,
            "style_fd": 20.0,
            "n_generated": N,
            "n_target": 12,
            "top_tags": tags,
            "valid_losses": [x - 0.5 for x in base_losses],
            "style_fd_vs_base": {"delta": -10.0, "ci95": [-14.0, -6.0], "n": N},
        },
    }
    sets["final"] = {**sets["best"], "style_fd_vs_base": {"delta": -1.0, "ci95": [-4.0, 2.0], "n": N}}
    (tmp_path / "sets.json").write_text(
        json.dumps(
            {
                "models": sets,
                "target": {
                    "top_tags": [["piano", 0.7]],
                    "n": 12,
                    "clips": [
                        {
                            "file": str(tmp_path / "segments/clips/000007.wav"),
                            "source": "song.flac",
                            "offset_s": 15.0,
                            "top_tags": [["piano", 0.8], ["classical", 0.5]],
                        }
                    ],
                },
                "padded": {"clip_seconds": 3.0, "pad_to_seconds": 6.0},
                "prompts": None,  # no off-style prompts: all count
                "bootstrap": {"seed": 0, "resamples": 500, "level": 0.95},
            }
        )
    )
    (ev / "reference.json").write_text(
        json.dumps(
            {
                "thresholds": {
                    "noisy_flatness": 0.3,
                    "decaying_slope_lu_per_s": -0.5,
                    "silent_tail_drop_lu": -10.0,
                    "mostly_silent_ratio": 0.5,
                    "silence_threshold_dbfs": -60.0,
                },
                "base": {},
                "base_valid_loss": 5.0,
                "target": {},
                "padded": None,
                "copy": {},
            }
        )
    )
    save_file({"valid_musicnn_emb": rng.normal(size=(12, 8))}, str(ev / "reference.safetensors"))
    out = tmp_path / "metrics"
    summary = summarize.run(
        train,
        tmp_path / "results.jsonl",
        tmp_path / "sets.json",
        ev,
        out / "summary.json",
        out / "headline.json",
        out / "summary.md",
        out / "plots",
        out / "report.html",
    )

    best = summary["checks"]["best_vs_base"]
    assert best["valid_loss"] == "better" and best["style_fd"] == "better" and best["style_similarity"] == "better"
    assert best["tag_kl"] == "no measurable difference"  # noise only: the interval contains 0
    assert summary["checks"]["final_vs_base"]["style_fd"] == "no measurable difference"
    d = summary["models"]["best"]["delta_vs_base"]["style_similarity"]
    assert d["n"] == N and d["ci95"][0] <= d["delta"] <= d["ci95"][1] and d["ci95"][0] > 0
    vl = summary["models"]["best"]["delta_vs_base"]["valid_loss"]
    assert vl["n"] == 10 and abs(vl["delta"] + 0.5) < 1e-9  # over the valid clips, not the generated ones
    assert summary["models"]["base"]["clips"] == N  # padded rows are not in the clip-length means
    assert len(summary["per_clip"]["pairs"]) == N and len(summary["per_clip"]["style_similarity"]["best"]) == N
    assert "valid_losses" not in summary["set"]["best"]

    headline = json.loads((out / "headline.json").read_text())
    assert headline["style_fd"] == {"base": 30.0, "best": 20.0}
    assert C.figures(summary)["style_fd"] == {"base": 30.0, "best": 20.0, "final": 20.0}
    assert headline["verdict"]["best"] == "improved" and headline["verdict"]["final"] == "improved"
    floor = summary["target"]["self_fd"]["mean"]  # two halves of the 12 target embeddings
    assert headline["style_share_pct"]["best"] == round(100 * 10 / (30 - floor), 1)
    assert C.figures(summary)["checks"] == {"better": 4, "worse": 0, "no_measurable_difference": 1}

    md = (out / "summary.md").read_text()
    assert md.splitlines()[2].startswith("**Verdict, best: improved (style_fd closer to your music: -10 [-14, -6]")
    assert "of the way from base to your music" in md.splitlines()[2]
    assert "piano 0.70" in md and "techno 0.60" in md  # target's and the models' top tags, in words
    assert "no measurable difference" in md and "[95% CI]" in md and f"n = {N} generated vs 12 target" in md
    assert "## Past the real-audio length" in md and "learned to predict the padding" in md
    assert "measurably quieter" in md
    for png in ("loss.png", "loudness.png", "spectrograms.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    page = (out / "report.html").read_text()  # every clip-length clip (prompt x sample), verdicts in words
    assert page.count("<audio") == 3 * N + 1 and "padded/" not in page and "(sample 1, seed " in page
    assert "Your music, and what musicnn hears" in page and 'src="../segments/clips/000007.wav"' in page
    assert "song.flac at 15 s: piano 0.80, classical 0.50" in page
    assert "best vs base: tag_kl: <b>no measurable difference</b>" in page
    assert '<section id="verdict"><h2>Verdict</h2><ul><li><strong>best: improved</strong>' in page
