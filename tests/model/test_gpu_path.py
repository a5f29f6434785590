"""The GPU path's defects that the CPU can show (issue: the GPU path, correct by construction):
weights load in float32 whatever the checkpoint's config says, training forwards build no
key/value cache, and ranks under a launcher share the cores instead of each taking all."""

import json
import shutil

import numpy as np
import pytest
import torch

from musicgen_lora.core.params import project_params
from musicgen_lora.model import musicgen
from musicgen_lora.model.delay import forward_loss
from musicgen_lora.tiny.bootstrap import lm_batch

from conftest import ROOT


def test_a_half_precision_config_still_loads_float32_weights(tmp_path):
    """transformers 5 loads with dtype "auto": a checkpoint whose config says float16 would give
    half weights, fp16 training without a scaler and a lossy merge."""
    ckpt = tmp_path / "half"
    shutil.copytree(ROOT / "assets/tiny-musicgen", ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["dtype"] = config["torch_dtype"] = "float16"
    for sub in ("text_encoder", "audio_encoder", "decoder"):
        config[sub]["dtype"] = config[sub]["torch_dtype"] = "float16"
    (ckpt / "config.json").write_text(json.dumps(config))
    model, _ = musicgen.load_model(project_params("model", name=str(ckpt)), "cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_training_forwards_build_no_cache(tiny):
    model, tokenizer = tiny
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(kwargs.get("use_cache")), with_kwargs=True)
    try:
        codes = torch.randint(0, 256, (1, 4, 20))
        forward_loss(model, lm_batch(model, tokenizer, codes, ["chiptune"], [0], [0], 20), 256, 256)
    finally:
        hook.remove()
    assert seen == [False]


def test_ranks_under_a_launcher_share_the_cores(monkeypatch):
    """Every rank taking every core oversubscribes the host N times (torchrun's OMP_NUM_THREADS=1
    was overridden); a real checkpoint's ranks now split the cores this process may use. The tiny
    model keeps its fixed 2 threads (its numbers must not depend on the machine)."""
    from musicgen_lora.model.configs import small_config, tiny_config

    cores = musicgen.cpu_threads(small_config())
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert musicgen.cpu_threads(small_config()) == max(1, cores // 2)
    assert musicgen.cpu_threads(tiny_config(8)) == musicgen.SMALL_MODEL_THREADS
    assert musicgen.cpu_threads(small_config(), fixed=3) == 3


def test_encode_moves_only_the_codec(monkeypatch):
    """encode needs EnCodec alone: T5 and the decoder stayed on the GPU for nothing (+2.4 GB on
    musicgen-small, ~13 GB on large)."""
    moved = []
    real_to = torch.nn.Module.to

    def spy(self, *args, **kwargs):
        moved.append(type(self).__name__)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    model, _ = musicgen.load_model(project_params("model"), "cpu", codec_only=True)
    assert moved == ["EncodecModel"]
    codes = musicgen.encode_audio(model, torch.zeros(1, 16000))
    assert codes.shape[:2] == (1, model.config.decoder.num_codebooks)
    moved.clear()
    musicgen.load_model(project_params("model"), "cpu")
    assert moved == ["MusicgenForConditionalGeneration"]


@pytest.mark.parametrize("dtype, agree", [(torch.bfloat16, 0.5), (torch.float16, 0.8)], ids=["bf16", "fp16"])
def test_half_precision_generation_casts_the_lm_once_and_keeps_the_codec_float32(tiny, dtype, agree):
    """evaluate.half_precision: the LM's weights in bf16 (fp16 on a T4/V100) for the call (autocast
    alone would re-cast every frozen weight at every step), the codec float32, float32 audio out,
    and the float32 weights back bit for bit afterwards (CPU autocast is real bf16 and fp16). With
    guidance the null-text rows (an all-masked text) run in half precision too: finite, and the
    codes mostly those of float32 (measured: bf16 84-90%, fp16 100%)."""
    model, tokenizer = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    def note(key, dtypes):
        return lambda module, args: seen.setdefault(key, dtypes(module)) and None  # a pre-hook returning None

    hook = model.decoder.register_forward_pre_hook(note("decoder", lambda m: m.lm_heads[0].weight.dtype))
    decode = model.audio_encoder.decoder.register_forward_pre_hook(
        note("codec", lambda m: {p.dtype for p in m.parameters()})
    )
    model.generation_dtype = dtype
    try:
        audio, codes = musicgen.generate(model, tokenizer, ["chiptune", "calm piano"], 25, 3.0, 1.0, 250, 0)
        del model.generation_dtype
        ref, ref_codes = musicgen.generate(model, tokenizer, ["chiptune", "calm piano"], 25, 3.0, 1.0, 250, 0)
    finally:
        hook.remove(), decode.remove()
    assert seen["decoder"] == dtype and seen["codec"] == {torch.float32}
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and audio.shape == ref.shape
    assert codes.shape == ref_codes.shape
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == before[k].dtype for k in before)
    assert np.mean(codes == ref_codes) >= agree, np.mean(codes == ref_codes)


def test_the_host_copy_is_handed_back_after_the_move_to_a_gpu(monkeypatch):
    """from_pretrained builds float32 weights on the host; the move to the GPU frees them, and
    mimalloc (which keeps freed memory an hour) is told to return them: 2.4-13 GB a process."""
    released, moved = [], []
    monkeypatch.setattr(musicgen, "release", lambda: released.append(True))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: moved.append(args) or self)
    musicgen.load_model(project_params("model", name=musicgen.TINY_NAME), "cuda")
    assert moved == [(torch.device("cuda"),)] and released == [True]
    monkeypatch.undo()
    monkeypatch.setattr(musicgen, "release", lambda: released.append(True))
    musicgen.load_model(project_params("model", name=musicgen.TINY_NAME), "cpu")
    assert released == [True]  # on the CPU the weights stay where they were built: nothing to return
