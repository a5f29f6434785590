"""Known answers for the verdicts (metrics/verdict.py): runs of the whole pipeline on the embedded
model whose outcome is known before they start, each checked for the word it must get and the
figure it must name.

Trained: an lr too small to move anything (inert), a strong lr for two epochs (closer, still far),
a strong lr for ten epochs (the held-out loss turns: overfit). Planted, because the tiny model
cannot produce them by training (measured, see the README's "Known answers"): white noise mixed
into one prompt's clips (degraded, noise named) and a training clip's own codes generated for
another prompt (near_copy, naming that training file). The stages run in this process, from the
commands dvc.yaml gives them, in one workspace whose segments, tokens and base evaluation are made
once.
"""

import contextlib
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from ruamel.yaml import YAML

from musicgen_lora.__main__ import main
from musicgen_lora.core.params import edit_params
from musicgen_lora.metrics.verdict import sentence
from musicgen_lora.model.musicgen import decode_codes
from musicgen_lora.model.tokens import load_tokens
from musicgen_lora.stages import evaluate
from musicgen_lora.stages.segment import split_sources
from musicgen_lora.tiny import corpus

from conftest import ROOT

pytestmark = pytest.mark.slow
IN_STYLE = ["bright upbeat chiptune", "dark driving chiptune", "chiptune arpeggios over a pulse bass line"]
PARAMS = {
    "segment": {"clip_seconds": 3.0, "min_clip_seconds": 1.5, "valid_fraction": 0.3},
    "train": {"epochs": 2, "grad_accum": 2, "checkpoint_every": 1000, "sample_prompts": []},
    "evaluate": {"seconds": 3.0, "prompts": IN_STYLE, "off_style_prompts": ["calm solo piano"], "samples_per_prompt": 2},
}
COMMANDS = {
    name: stage["cmd"].split()[3:]  # "python -m musicgen_lora <stage> ..."
    for name, stage in YAML(typ="safe").load(ROOT / "dvc.yaml")["stages"].items()
}


def project(root, params: dict):
    """A workspace for the stages: params.yaml with `params`, the embedded models linked in."""
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    edit_params(root / "params.yaml", params)
    (root / "assets").mkdir()
    for name in ("tiny-musicgen", "musicnn"):
        (root / "assets" / name).symlink_to(ROOT / "assets" / name)
    return root


def prepare(root):
    with contextlib.chdir(root):
        for stage in ("segment", "encode", "evaluate_base"):
            assert main(COMMANDS[stage]) == 0
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Chiptune recordings segmented, encoded and evaluated with the base model, once."""
    root = project(tmp_path_factory.mktemp("known"), PARAMS)
    corpus.write_corpus(root / "data/raw", [corpus.TARGET_STYLE], 8, 0, min_seconds=6, max_seconds=12)
    return prepare(root)


@pytest.fixture(scope="module")
def by_heart(tmp_path_factory):
    """Three training recordings of one clip each, and one long held-out recording (6 valid clips):
    a set small enough for the tiny model's LoRA to learn by heart, so its held-out loss turns."""
    root = project(tmp_path_factory.mktemp("by-heart"), {**PARAMS, "segment": {**PARAMS["segment"], "valid_fraction": 0.6}})
    names = [f"track{i}.wav" for i in range(4)]
    held = next(
        n
        for n in names  # the name segment's split holds out alone when it is the long one
        if split_sources({m: 18.5 if m == n else 3.2 for m in names}, 0.6, 0)
        == {m: "valid" if m == n else "train" for m in names}
    )
    (root / "data/raw").mkdir(parents=True)
    for i, name in enumerate(names):
        audio, _ = corpus.synth_track(corpus.TARGET_STYLE, 0, i, 18.5 if name == held else 3.2, 16000)
        sf.write(root / "data/raw" / name, audio, 16000)
        (root / "data/raw" / name).with_suffix(".txt").write_text(IN_STYLE[i % 3] + "\n")
    prepare(root)
    manifest = [json.loads(x) for x in (root / "data/segments/manifest.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in manifest if r["split"] == "train") == sorted(set(names) - {held})
    return root


def pipeline(root, train: dict) -> dict:
    """train (with these train params), evaluate and summarize; the run's summary.json."""
    edit_params(root / "params.yaml", {"train": {**PARAMS["train"], **train}})
    with contextlib.chdir(root):
        for stage in ("train", "evaluate", "summarize"):
            assert main(COMMANDS[stage]) == 0, stage
    return json.loads((root / "metrics/summary.json").read_text())


def test_an_lr_too_small_to_move_anything_is_inert(workspace):
    summary = pipeline(workspace, {"lr": 1e-9, "epochs": 1})
    best = summary["verdicts"]["best"]
    assert best["words"] == ["inert"] and "higher train.lr" in best["suggestion"]
    assert "improved" not in sentence("best", best) and summary["copies"] == []


def test_closer_but_far_says_how_far_and_what_it_still_sounds_like(workspace):
    summary = pipeline(workspace, {"lr": 0.3, "epochs": 2})
    best = summary["verdicts"]["best"]
    assert best["words"] == ["improved"], best
    share = best["style_share"]["share_pct"]
    assert 0 < share < 50, best  # measurably closer, not close
    text = sentence("best", best)
    assert f"{share:.0f}% of the way from base to your music" in text and "still heard as" in text
    assert "it worked" not in text.lower() and summary["copies"] == []
    assert (workspace / "metrics/summary.md").read_text().splitlines()[2] == f"**Verdict, {text}**"


def test_a_held_out_loss_that_turns_is_overfit_on_final(by_heart):
    summary = pipeline(by_heart, {"lr": 0.003, "epochs": 30, "grad_accum": 1})  # the loss turns near epoch 12
    epochs = json.loads((by_heart / "metrics/train/epochs.json").read_text())
    best_epoch = min(epochs[1:], key=lambda e: e["valid_loss"])["epoch"]
    assert summary["best_epoch"] == best_epoch < 30, epochs
    final = summary["verdicts"]["final"]
    assert "overfit" in final["words"] and "overfit" not in summary["verdicts"]["best"]["words"]
    assert any(f"after the best epoch ({best_epoch})" in b for b in final["because"])
    assert "fewer epochs" in final["suggestion"]
    assert summary["final_vs_best_valid_loss"]["ci95"][0] > 0 and summary["copies"] == []


def test_planted_noise_is_degraded_and_a_planted_copy_names_its_training_clip(workspace, monkeypatch):
    """Adapters that move nothing, and evaluate's generation changed: the second prompt's clips are
    training clip 3's own codes, every other prompt's get white noise mixed in."""
    with contextlib.chdir(workspace):
        index, codes, mask, _ = load_tokens(workspace / "data/tokens", "train")
    copied = 3
    real = evaluate.generate

    def generate(model, tokenizer, prompts, frames, *args, **kwargs):
        audio, out = real(model, tokenizer, prompts, frames, *args, **kwargs)
        rng = np.random.default_rng(0)
        for i, prompt in enumerate(prompts):
            if prompt != IN_STYLE[1]:
                audio[i] = 0.5 * audio[i] + 0.3 * rng.standard_normal(audio.shape[1])
            else:
                clip = codes[copied][:, mask[copied]][:, :frames]
                out[i, :, : clip.shape[1]] = clip.numpy()
                audio[i, :] = 0
                decoded = decode_codes(model, torch.from_numpy(out[i : i + 1]).long())[0].float().numpy()
                audio[i, : len(decoded)] = decoded[: audio.shape[1]]
        return audio, out

    monkeypatch.setattr(evaluate, "generate", generate)
    summary = pipeline(workspace, {"lr": 1e-9, "epochs": 1})
    best = summary["verdicts"]["best"]
    assert "degraded" in best["words"] and "copies training audio" in best["words"], best
    assert any("more noise" in b for b in best["because"]), best["because"]
    rows = [json.loads(x) for x in (workspace / "evaluation/comparison_results.jsonl").read_text().splitlines()]
    noisy = {r["prompt"] for r in rows if "noisy" in r["flags"]}
    assert noisy == set(IN_STYLE + PARAMS["evaluate"]["off_style_prompts"]) - {IN_STYLE[1]}
    assert all("noisy" not in r["flags"] for r in rows if r["model"] == "base")
    flagged = [r for r in rows if "near_copy" in r["flags"]]
    assert {(r["model"], r["prompt"]) for r in flagged} == {(m, IN_STYLE[1]) for m in ("best", "final")}
    assert len(flagged) == 4 and all(r["metrics"]["copy_clip"] == copied for r in flagged)
    # named: the recording and the clip the copied codes came from, played beside the copy
    manifest = [json.loads(x) for x in (workspace / "data/segments/manifest.jsonl").read_text().splitlines()]
    clip_id = [c["id"] for c in index["clips"] if c["split"] == "train"][copied]  # load_tokens' order
    source = next(r for r in manifest if r["id"] == clip_id)
    copies = summary["copies"]
    assert len(copies) == 4 and {c["training"]["source"] for c in copies} == {source["source"]}
    assert {c["training"]["file"] for c in copies} == {f"data/segments/{source['file']}"}
    assert all(c["longest_s"] >= 2.5 and c["training"]["run_starts_s"] == 0.0 for c in copies)
    report = (workspace / "metrics/summary.md").read_text()
    assert f"repeats {source['source']} at {source['offset_s']:g} s" in report
    page = (workspace / "metrics/report.html").read_text()
    section = page.split('<section id="copies">')[1].split("</section>")[0]
    srcs = re.findall(r'<audio[^>]* src="([^"]+)"', section)
    assert len(srcs) == 8 and f"../data/segments/{source['file']}" in srcs
    for src in srcs:
        assert sf.info(str((workspace / "metrics" / src).resolve())).duration > 1
