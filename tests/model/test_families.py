"""Every MusicGen family through the pipeline's own path.

Each family is a shape-true tiny random checkpoint (the released classes, 32 kHz EnCodec, 4
codebooks of 2048 per channel, tiny widths) built once, saved with `save_pretrained` and loaded by
`from_pretrained` through `load_model`: segment -> encode -> one optimizer step -> evaluate base
and adapter (generation). Plus: stereo codes and labels against transformers' own stereo code,
melody conditioning, the loading report, and the LoRA adapter size of every released shape.
"""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from transformers import MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration, T5Config

from bench.families import CAPTION, FAMILIES, RANK, SR, build, mp, run_family, write_corpus
from musicgen_lora.core import params as P
from musicgen_lora.core.errors import UserError
from musicgen_lora.model import configs, families, melody, stereo
from musicgen_lora.model.delay import decoder_input_ids, delay_pattern_labels, forward_loss, loss_inputs
from musicgen_lora.model.lora import lora_config
from musicgen_lora.model.musicgen import decode_codes, encode_audio, generate, load_config, load_model
from musicgen_lora.stages import encode, evaluate, train


def lora_bytes(hidden: int, layers: int, rank: int, melody: bool) -> int:
    """fp32 bytes of LoRA on q,k,v,out of self- (and, except melody, cross-) attention and fc1/fc2
    (ffn 4x hidden) of every decoder layer: rank x (in + out) per wrapped Linear."""
    attention = (4 if melody else 8) * rank * 2 * hidden
    ffn = 2 * rank * (hidden + 4 * hidden)
    return 4 * layers * (attention + ffn)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build(root / name, *shape) for name, shape in FAMILIES.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def runs(checkpoints, corpus, tmp_path_factory):
    """Every family through the pipeline on the CPU; the device each stage loaded its model on is
    recorded."""
    out, seen = {}, []
    with pytest.MonkeyPatch.context() as patch:
        for module in (encode, train, evaluate):

            def load(params, device=None, *args, _real=module.load_model, _stage=module.__name__.split(".")[-1], **kwargs):
                model, tokenizer = _real(params, device, *args, **kwargs)
                # encode moves EnCodec alone (codec_only): where the codec went is what it used
                used = model.audio_encoder if kwargs.get("codec_only") else model
                seen.append((_stage, str(device), str(next(used.parameters()).device)))
                return model, tokenizer

            patch.setattr(module, "load_model", load)
        for name, path in checkpoints.items():
            root = tmp_path_factory.mktemp(name)
            patch.chdir(root)  # train keeps its checkpoints under models/checkpoints
            out[name] = run_family(path, corpus, root)
    return out, seen


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_through_segment_encode_train_generate(runs, checkpoints, name):
    roots, _ = runs
    root, (hidden, layers, is_stereo, is_melody) = roots[name], FAMILIES[name]
    channels = 2 if is_stereo else 1
    manifest = [json.loads(line) for line in (root / "seg/manifest.jsonl").read_text().splitlines()]
    clips = {r["source"]: sf.read(root / "seg" / r["file"], always_2d=True)[0] for r in manifest}
    assert {c.shape for c in clips.values()} == {(3 * SR, channels)}  # clips keep two channels for stereo
    if is_stereo:  # the stereo source keeps its channels apart, a mono source is duplicated
        assert not np.allclose(clips["s0.wav"][:, 0], clips["s0.wav"][:, 1], atol=1e-3)
        assert np.array_equal(clips["s1.wav"][:, 0], clips["s1.wav"][:, 1])

    index = json.loads((root / "tok/index.json").read_text())
    shard = load_file(root / "tok" / index["shards"][0])
    assert index["codec"]["num_codebooks"] == 4 * channels and shard["codes"].shape == (6, 4 * channels, 150)
    assert ("chroma" in shard) == is_melody
    if is_melody:  # one one-hot chroma frame per 4096 samples (the feature extractor's hop)
        assert shard["chroma"].shape == (6, 3 * SR // 4096 + 1, 12) and (shard["chroma"].sum(-1) == 1).all()

    metrics = json.loads((root / "metrics/metrics.json").read_text())
    assert metrics["optimizer_steps"] == 1
    assert json.loads((root / "metrics/environment.json").read_text())["device"] == "cpu"
    card = (root / "best/README.md").read_text()  # its snippet loads the base with the family's class
    assert f"model = {'MusicgenMelody' if is_melody else 'Musicgen'}ForConditionalGeneration.from_pretrained(" in card
    assert ("audio[0].T.numpy()" in card) == is_stereo  # the snippet writes both channels
    adapter = root / "best/adapter_model.safetensors"
    tensors = load_file(adapter)
    assert sum(4 * t.numel() for t in tensors.values()) == lora_bytes(hidden, layers, RANK, is_melody)
    assert 0 < adapter.stat().st_size - lora_bytes(hidden, layers, RANK, is_melody) < 300 * len(tensors)  # header

    rows = [json.loads(line) for line in (root / "eval/results.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["base", "base", "best", "best"]
    for r in rows:
        audio, sr = sf.read(root / "eval" / r["file"], always_2d=True)
        assert sr == SR and audio.shape == (int(2.5 * 50) * 640, channels)  # stereo files for a stereo model
        assert np.isfinite(r["metrics"]["integrated_loudness_lufs"])  # clip metrics on the mid channel
        if is_melody:  # generated without and with the reference melody, both compared with it
            assert (root / "eval" / r["file"]).parent.joinpath("melody", (root / r["file"]).name).exists()
            for key in ("melody_chroma_cosine", "melody_chroma_cosine_unconditioned"):
                assert 0.0 <= r["metrics"][key] <= 1.0 + 1e-6
        else:
            assert "melody_chroma_cosine" not in r["metrics"]


def test_every_stage_loads_the_model_on_the_chosen_device(runs):
    _, seen = runs
    per_family = ["encode", "train", "evaluate", "evaluate"]  # evaluate base, then adapters
    assert seen == [(stage, "cpu", "cpu") for _ in FAMILIES for stage in per_family]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_small_and_stereo_run_on_the_gpu(checkpoints, corpus, tmp_path, monkeypatch):
    """Where there is a GPU: the same path with model.device cuda (and half-precision generation)."""
    for name in ("small", "stereo"):
        root = tmp_path / name
        root.mkdir()
        monkeypatch.chdir(root)
        run_family(checkpoints[name], corpus, root, device="cuda")
        assert json.loads((root / "metrics/environment.json").read_text())["device"].startswith("cuda")
        rows = [json.loads(line) for line in (root / "eval/results.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and all(np.isfinite(r["valid_loss"]) for r in rows)


# --- stereo: transformers' interleaving ------------------------------------------------------


@pytest.fixture(scope="module")
def stereo_model(checkpoints):
    return load_model(mp(checkpoints["stereo"]), "cpu")


def test_stereo_codes_are_transformers_interleaving(stereo_model):
    """encode_audio's codes equal those transformers' own stereo path builds for an audio prompt
    (left channel's codebooks at even indices, right's at odd)."""
    model, _ = stereo_model
    audio = torch.randn(2, 2, SR // 2) * 0.1
    ours = encode_audio(model, audio)
    theirs = model._prepare_audio_encoder_kwargs_for_generation(audio, {})["decoder_input_ids"]
    assert ours.shape == (2, 8, 25) and torch.equal(ours, theirs.reshape(2, 8, -1))
    left, right = stereo.split(ours)
    assert torch.equal(left, encode_audio(model, audio[:, :1])[:, ::2])  # mono input is duplicated
    assert torch.equal(right, encode_audio(model, audio[:, 1:])[:, 1::2])


def test_stereo_generation_keeps_the_channel_order(stereo_model):
    """The codes generate returns decode, channel for channel, to the audio transformers' generate
    wrote: left from the even codebooks."""
    model, tokenizer = stereo_model
    audio, codes = generate(model, tokenizer, [CAPTION], 10, 3.0, 1.0, 50, seed=0)
    assert audio.shape == (1, 10 * 640, 2) and codes.shape == (1, 8, 10)
    decoded = decode_codes(model, torch.from_numpy(codes))
    assert torch.allclose(decoded, torch.from_numpy(audio), atol=1e-5)


def test_stereo_continuation_keeps_both_channels(stereo_model):
    """`generate --seconds` beyond one window: each window's codes keep both channels, interleaved."""
    from musicgen_lora.model.continuation import Windows, generate_codes

    model, tokenizer = stereo_model
    codes = generate_codes(model, tokenizer, [CAPTION], Windows(total=14, window=8, stride=6), 3.0, 1.0, 50, seed=0)
    assert codes.shape == (1, 8, 14)
    assert decode_codes(model, codes).shape == (1, 14 * 640, 2)


def test_stereo_labels_follow_transformers_delay_pattern(stereo_model):
    """Teacher-forcing inputs equal what generate feeds back: both channels' codebook k delayed k steps."""
    model, _ = stereo_model
    pad = model.config.decoder.pad_token_id
    codes = torch.randint(0, 2048, (1, 8, 6))
    labels = delay_pattern_labels(codes, torch.ones(1, 6, dtype=torch.bool), True, channels=2)
    assert labels.shape == (1, 6 + 3, 8)
    _, pattern = model.decoder.build_delay_pattern_mask(torch.full((8, 1), pad), pad, max_length=1 + 6 + 3)
    expected = pattern.clone()
    for j in range(8):
        expected[j, 1 + j // 2 : 1 + j // 2 + 6] = codes[0, j]
    assert torch.equal(decoder_input_ids(labels, pad, pad), expected[:, :-1])


def test_stereo_trains_where_mono_codes_failed(stereo_model):
    """The issue's failure: mono codes (4 codebooks) given to the 8-codebook decoder fold two
    clips into one and the text condition no longer lines up (mat1 and mat2 shapes cannot be
    multiplied). Interleaved stereo codes give a finite loss."""
    model, tokenizer = stereo_model
    pad = model.config.decoder.pad_token_id
    audio = torch.randn(2, 2, SR // 2) * 0.1
    mono = model.audio_encoder.encode(audio[:, :1]).audio_codes[0]
    with pytest.raises(RuntimeError):
        forward_loss(model, loss_inputs(tokenizer, [CAPTION] * 2, mono, torch.ones(2, 25, dtype=torch.bool), True), pad, pad)
    batch = loss_inputs(
        tokenizer, [CAPTION] * 2, encode_audio(model, audio), torch.ones(2, 25, dtype=torch.bool), True, channels=2
    )
    assert torch.isfinite(forward_loss(model, batch, pad, pad))


# --- melody ----------------------------------------------------------------------------------


def test_melody_loads_with_its_own_class_and_conditions_on_chroma(checkpoints):
    model, tokenizer = load_model(mp(checkpoints["melody"]), "cpu")
    assert isinstance(model, MusicgenMelodyForConditionalGeneration)
    pad = model.config.decoder.pad_token_id
    clip = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(SR) / SR)
    chroma = melody.chroma(model.chroma_extractor, [clip], SR)
    assert chroma.shape == (1, SR // 4096 + 1, 12) and chroma[0, :, 9].all()  # A4: pitch class A (C = 0)
    codes = torch.randint(0, 2048, (1, 4, 20), generator=torch.Generator().manual_seed(0))
    batch = loss_inputs(tokenizer, [CAPTION], codes, torch.ones(1, 20, dtype=torch.bool), True, chroma=chroma)
    steps = decoder_input_ids(batch["labels"], pad, pad)
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=steps)
        tuned = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=steps,
            input_features=chroma,
        )
        assert torch.isfinite(forward_loss(model, batch, pad, pad))
    # the chroma reaches the decoder's predictions (without it transformers conditions on a null chroma)
    assert (tuned.logits[:, -steps.shape[1] :] - plain.logits[:, -steps.shape[1] :]).abs().max() > 1e-5
    assert melody.chroma_cosine(chroma[0], chroma[0]) == pytest.approx(1.0)


def test_stereo_melody_trains_and_generates(tmp_path):
    """musicgen-stereo-melody's layout: interleaved stereo codes, chroma conditioning, stereo audio."""
    model, tokenizer = load_model(mp(build(tmp_path / "stereo-melody", 32, 2, True, True)), "cpu")
    assert isinstance(model, MusicgenMelodyForConditionalGeneration) and families.channel_codebooks(model.config) == 4
    pad = model.config.decoder.pad_token_id
    audio = torch.randn(1, 2, SR // 2) * 0.1
    chroma = melody.chroma(model.chroma_extractor, audio.mean(1).numpy(), SR)
    batch = loss_inputs(
        tokenizer,
        [CAPTION],
        encode_audio(model, audio),
        torch.ones(1, 25, dtype=torch.bool),
        True,
        channels=2,
        chroma=chroma,
    )
    assert torch.isfinite(forward_loss(model, batch, pad, pad))
    out, codes = generate(model, tokenizer, [CAPTION], 5, 3.0, 1.0, 50, seed=0, melody=chroma[0])
    assert out.shape == (1, 5 * 640, 2) and codes.shape == (1, 8, 5)


# --- never on silently random weights ---------------------------------------------------------


def test_melody_checkpoint_through_the_plain_class_is_refused(checkpoints):
    """What the pipeline did before: cross-attention MISSING, audio_enc_to_dec_proj UNEXPECTED."""
    path = checkpoints["melody"]
    _, info = MusicgenForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    with pytest.raises(UserError) as err:
        families.check_loading(str(path), MusicgenForConditionalGeneration, info)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "missing" in message and "encoder_attn" in message and "audio_enc_to_dec_proj" in message


def test_checkpoint_missing_a_weight_is_one_error(checkpoints, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints["small"], broken)
    weights = load_file(broken / "model.safetensors")
    key = next(k for k in weights if "layers.0.self_attn.k_proj" in k)
    save_file({k: v for k, v in weights.items() if k != key}, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError) as err:
        load_model(mp(broken), "cpu")
    assert "\n" not in str(err.value) and "1 weights missing" in str(err.value) and key in str(err.value)


@pytest.mark.parametrize("model_type", ["t5", "foo"])
def test_untrainable_checkpoint_type_fails_at_load_in_one_line(tmp_path, model_type):
    T5Config(num_layers=1).save_pretrained(tmp_path)
    if model_type != "t5":
        cfg = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": model_type}))
    for load in (load_config, load_model):
        with pytest.raises(UserError) as err:
            load(mp(tmp_path))
        assert "\n" not in str(err.value) and str(tmp_path) in str(err.value) and model_type in str(err.value)


# --- LoRA adapter size per family -----------------------------------------------------------


def lora_params_on_meta(config, rank: int) -> int:
    with torch.device("meta"):
        model = families.model_class(config)(config)
        peft = get_peft_model(model, lora_config(P.project_params("train", rank=rank, alpha=2.0 * rank), config))
    return sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)


# released shape -> its adapter at rank 32, fp32 (MB = 1e6 bytes)
RELEASED_MB = {
    "facebook/musicgen-small": 81.8,
    "facebook/musicgen-medium": 245.4,
    "facebook/musicgen-large": 327.2,
    "facebook/musicgen-melody": 169.9,
    "facebook/musicgen-melody-large": 226.5,
}


@pytest.mark.parametrize("name", list(RELEASED_MB))
def test_released_adapter_size_matches_the_formula(name):
    """layers x per-layer LoRA params x 4 bytes, from the released configs built on the meta
    device (no weights); stereo checkpoints have the same decoder layers, so the same adapter."""
    hidden, layers, _ = configs.RELEASED[name]
    config = configs.released_config(name)
    assert (config.decoder.hidden_size, config.decoder.num_hidden_layers) == (hidden, layers)
    expected = lora_bytes(hidden, layers, 32, "melody" in name)
    assert 4 * lora_params_on_meta(config, 32) == expected
    assert round(expected / 1e6, 1) == RELEASED_MB[name]
    if "melody" not in name:
        assert 4 * lora_params_on_meta(configs.released_config(name, stereo=True), 32) == expected


@pytest.mark.parametrize(
    "name,needle",
    [
        ("facebook/musicgen-small", "is not on this machine; download it once with `hf download facebook/musicgen-small`"),
        ("{tmp}/no_such_dir", "no such folder"),
        ("{tmp}/empty", "the folder has no config.json"),
    ],
)
def test_a_checkpoint_not_on_this_machine_is_one_line_at_once(tmp_path, monkeypatch, capsys, name, needle):
    """No hub wait, no traceback: validate (and every stage) says what is missing and how to get it."""
    from ruamel.yaml import YAML

    from musicgen_lora.__main__ import main

    from conftest import ROOT

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    y = YAML()
    data = y.load((ROOT / "params.yaml").read_text())
    data["model"]["name"] = name.replace("{tmp}", str(tmp_path))
    with open(tmp_path / "params.yaml", "w") as f:
        y.dump(data, f)
    monkeypatch.chdir(tmp_path)
    rc = main(["validate"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and needle in err and len(err.splitlines()) == 1, err
