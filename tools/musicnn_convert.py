#!/usr/bin/env python3
"""Convert musicnn's TensorFlow 1.x checkpoints to safetensors and record reference outputs.

Standalone on purpose (it does not import musicgen_lora): it runs once, in a throwaway
virtualenv that has TensorFlow, librosa and the musicnn wheel (installed with --no-deps);
`make musicnn` builds that venv, runs this script and removes the venv again.  The outputs
are committed, so the project itself never needs TensorFlow or librosa:

  assets/musicnn/<model>.safetensors     float32 weights, PyTorch layouts, readable names
  assets/musicnn/tags.json               the 50 tag names of each model
  assets/musicnn/reference_outputs.safetensors
                                         the ORIGINAL model's outputs (musicnn.extractor) on
                                         assets/musicnn/reference_clips/*.wav: per 3 s patch the
                                         tag probabilities and the 'penultimate' embedding, plus
                                         one clip's log-mel network input
  assets/musicnn/PROVENANCE.md, LICENSE  where all of it came from; musicnn's ISC license

Usage: python tools/musicnn_convert.py --wheel /path/to/musicnn-0.1.0-py3-none-any.whl
"""
import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
import librosa
import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file

import musicnn
from musicnn import configuration as mconfig
from musicnn.extractor import batch_data, extractor

MODELS = ("MTT_musicnn", "MSD_musicnn")
N_FRAMES = 187
FRONTEND_CLIP = "strings"  # the clip whose log-mel input is stored too (kept small)

# TF variable scope -> (readable name, kind).  The scopes are numbered in the order in
# which musicnn.models.build_musicnn creates its layers (checked against the shapes below).
LAYERS = [
    ("batch_normalization", "input_bn", "bn"),
    ("conv2d", "timbral74.conv", "conv2d"), ("batch_normalization_1", "timbral74.bn", "bn"),
    ("conv2d_1", "timbral77.conv", "conv2d"), ("batch_normalization_2", "timbral77.bn", "bn"),
    ("conv2d_2", "temporal128.conv", "conv2d"), ("batch_normalization_3", "temporal128.bn", "bn"),
    ("conv2d_3", "temporal64.conv", "conv2d"), ("batch_normalization_4", "temporal64.bn", "bn"),
    ("conv2d_4", "temporal32.conv", "conv2d"), ("batch_normalization_5", "temporal32.bn", "bn"),
    ("conv2d_5", "midend1.conv", "conv1d"), ("batch_normalization_6", "midend1.bn", "bn"),
    ("conv2d_6", "midend2.conv", "conv1d"), ("batch_normalization_7", "midend2.bn", "bn"),
    ("conv2d_7", "midend3.conv", "conv1d"), ("batch_normalization_8", "midend3.bn", "bn"),
    ("batch_normalization_9", "backend.pool_bn", "bn"),
    ("dense", "backend.dense", "dense"), ("batch_normalization_10", "backend.dense_bn", "bn"),
    ("dense_1", "backend.out", "dense"),
]
EXPECTED = {  # torch-layout weight shapes of musicnn (num_filt_midend=64, num_units_backend=200)
    "timbral74.conv.weight": (204, 1, 7, 38), "timbral77.conv.weight": (204, 1, 7, 67),
    "temporal128.conv.weight": (51, 1, 128, 1), "temporal64.conv.weight": (51, 1, 64, 1),
    "temporal32.conv.weight": (51, 1, 32, 1), "midend1.conv.weight": (64, 561, 7),
    "midend2.conv.weight": (64, 64, 7), "midend3.conv.weight": (64, 64, 7),
    "backend.pool_bn.weight": (1506,), "backend.dense.weight": (200, 1506), "backend.out.weight": (50, 200),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def single_key(meta: dict) -> dict:
    """safetensors metadata as one JSON string: several keys are written in a random order (file bytes would churn)."""
    return {"musicnn": json.dumps(meta, sort_keys=True)}


def convert(ckpt_prefix: str) -> tuple[dict, list]:
    """Read one checkpoint; return {readable name: float32 array in torch layout} and the skipped TF names."""
    reader = tf.compat.v1.train.NewCheckpointReader(ckpt_prefix)
    shapes = reader.get_variable_to_shape_map()
    used, out = set(), {}
    for scope, name, kind in LAYERS:
        def get(var):
            used.add(f"{scope}/{var}")
            return np.asarray(reader.get_tensor(f"{scope}/{var}"), dtype=np.float32)
        if kind == "bn":  # tf.compat.v1.layers.batch_normalization: eps 1e-3, moving stats
            out[f"{name}.weight"], out[f"{name}.bias"] = get("gamma"), get("beta")
            out[f"{name}.running_mean"], out[f"{name}.running_var"] = get("moving_mean"), get("moving_variance")
            continue
        k, b = get("kernel"), get("bias")
        if kind == "conv2d":    # TF (kh=time, kw=freq, in, out) -> torch (out, in, kh, kw)
            k = k.transpose(3, 2, 0, 1)
        elif kind == "conv1d":  # TF (7, width, 1, out) applied over all of 'width' -> torch conv1d (out, width, 7)
            assert k.shape[2] == 1
            k = k[:, :, 0, :].transpose(2, 1, 0)
        else:                   # dense: TF (in, out) -> torch Linear (out, in)
            k = k.T
        out[f"{name}.weight"], out[f"{name}.bias"] = np.ascontiguousarray(k), b
    for key, shape in EXPECTED.items():
        assert out[key].shape == shape, (key, out[key].shape, shape)
    skipped = sorted(set(shapes) - used)
    assert all(s.endswith(("/Adam", "/Adam_1")) or s in ("beta1_power", "beta2_power") for s in skipped), skipped
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True, help="the musicnn wheel that was installed (for provenance)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "musicnn")
    args = ap.parse_args()
    out, clips_dir = args.out, args.out / "reference_clips"
    clips = sorted(clips_dir.glob("*.wav"))
    assert clips, f"no reference clips in {clips_dir} (make them with tools/musicnn_clips.py)"
    pkg = Path(musicnn.__file__).resolve().parent
    dist = importlib.metadata.distribution("musicnn")
    assert dist.version == "0.1.0", dist.version
    out.mkdir(parents=True, exist_ok=True)

    tags, skipped_all, ckpt_files = {}, {}, []
    for model in MODELS:
        weights, skipped = convert(str(pkg / model) + "/")
        save_file(weights, str(out / f"{model}.safetensors"),
                  metadata=single_key({"source": f"musicnn {dist.version} wheel, {model}/ TF checkpoint", "bn_eps": 0.001,
                                       "format": "float32, PyTorch layouts (conv2d OIHW, H=time W=mel; conv1d OIW; Linear OI)"}))
        skipped_all[model] = skipped
        tags[model] = list(mconfig.MTT_LABELS if model.startswith("MTT") else mconfig.MSD_LABELS)
        assert len(tags[model]) == 50
        for f in sorted((pkg / model).iterdir()):
            if f.name.startswith("."):
                ckpt_files.append((f"{model}/{f.name}", f.stat().st_size, sha256(f)))
        print(f"{model}: {len(weights)} tensors, {sum(v.size for v in weights.values())} parameters")
    (out / "tags.json").write_text(json.dumps(tags, indent=1) + "\n")

    # The original model, through musicnn's own code path (librosa front end + TF graph + checkpoint restore).
    ref, summary, clip_meta = {}, [], {}
    for clip in clips:
        name = clip.stem
        clip_meta[name] = sha256(clip)
        for model in MODELS:
            # musicnn 0.1.0's extractor runs BATCH_SIZE (1) patches per session call and, for every call
            # after the first, appends the first call's 'penultimate' again (it unpacks the new value into
            # `backend_`).  One call for all patches sidesteps that; the tags must not change.
            mconfig.BATCH_SIZE = 1
            taggram_1, _ = extractor(str(clip), model=model, input_length=3, input_overlap=False,
                                     extract_features=False)
            mconfig.BATCH_SIZE = 4096
            taggram, labels, feats = extractor(str(clip), model=model, input_length=3, input_overlap=False,
                                               extract_features=True)
            mconfig.BATCH_SIZE = 1
            assert taggram.shape[1] == 50 and feats["penultimate"].shape == (taggram.shape[0], 200)
            assert np.isfinite(taggram).all(), (name, model)
            assert np.abs(taggram - taggram_1).max() < 1e-5, (name, model, np.abs(taggram - taggram_1).max())
            ref[f"{name}/{model}/probs"] = np.asarray(taggram, np.float32)
            ref[f"{name}/{model}/penultimate"] = np.asarray(feats["penultimate"], np.float32)
            mean = taggram.mean(axis=0)
            top = ", ".join(f"{labels[i]} {mean[i]:.2f}" for i in np.argsort(-mean)[:5])
            summary.append(f"| {name} | {model} | {taggram.shape[0]} | {top} |")
        if name == FRONTEND_CLIP:
            _, logmel = batch_data(str(clip), N_FRAMES, N_FRAMES)
            ref[f"{name}/logmel"] = np.asarray(logmel, np.float32)
    # safetensors.numpy writes an array's buffer as is: a Fortran-ordered one (logmel is mel.T) would be garbled.
    ref = {k: np.ascontiguousarray(v) for k, v in ref.items()}
    save_file(ref, str(out / "reference_outputs.safetensors"),
              metadata=single_key({"clips_sha256": clip_meta, "models": MODELS, "n_frames": N_FRAMES,
                                   "patch_hop_frames": N_FRAMES,
                                   "call": "musicnn.extractor.extractor(clip, model, input_length=3, input_overlap=False)"}))

    (out / "LICENSE").write_text(dist.read_text("LICENSE.md").rstrip() + "\n")
    whl = args.wheel
    lines = [
        "# musicnn weights: provenance",
        "",
        "Generated by `tools/musicnn_convert.py` (`make musicnn`); do not edit by hand.",
        "",
        f"- Source: PyPI wheel `{whl.name}` (musicnn {dist.version}, ISC license, Jordi Pons / Music Technology Group, UPF),"
        f" sha256 `{sha256(whl)}`.",
        f"- Converted on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} with Python {platform.python_version()},"
        f" TensorFlow {tf.__version__}, numpy {np.__version__}, librosa {librosa.__version__}.",
        "- Converted: the TF1 checkpoints `MTT_musicnn` (MagnaTagATune) and `MSD_musicnn` (Million Song Dataset),"
        " the musicnn architecture with 64 mid-end filters and 200 back-end units. Every model variable was copied"
        " as float32 into `<model>.safetensors`, transposed to PyTorch layouts (names: see the safetensors keys);"
        " the Adam slots and `beta1_power`/`beta2_power` (training-only state) were left out."
        " The vgg checkpoints of the wheel were not converted.",
        "- `tags.json`: the label lists of musicnn's `configuration.py` (`MTT_LABELS`, `MSD_LABELS`).",
        "- `LICENSE`: the wheel's `LICENSE.md`.",
        "- `reference_outputs.safetensors`: `musicnn.extractor.extractor(clip, model, input_length=3,"
        " input_overlap=False, extract_features=True)` on each clip of `reference_clips/` (rendered by"
        " `tools/musicnn_clips.py`), with `configuration.BATCH_SIZE` raised so that all patches go through one"
        " session call: with the default (1) the extractor of musicnn 0.1.0 returns the first patch's 'penultimate'"
        " features for every patch (a bug: later values are unpacked into another name); the script checks that the"
        " tag probabilities equal those of the default batch size within 1e-5."
        " Stored: keys `<clip>/<model>/probs` (patches x 50, sigmoid outputs) and"
        f" `<clip>/<model>/penultimate` (patches x 200), and `{FRONTEND_CLIP}/logmel` (frames x 96, the network input"
        " of musicnn.extractor.batch_data).",
        "- Versions pinned on purpose, to run musicnn's code as it ran in 2019: numpy < 2 because musicnn computes"
        " `np.log10(10000 * mel16 + 1)` on a float16 array, which numpy 1.x promotes to float32 but numpy 2 keeps in"
        " float16, where it overflows to inf for any mel value above 6.55 (loud tonal audio) and the model's outputs"
        " become meaningless; librosa 0.8.1 because librosa >= 0.9 changed the STFT's default centre padding from"
        " 'reflect' (what musicnn was trained with) to zeros; TensorFlow 2.15 because its tf.compat.v1.layers still"
        " work (Keras 2).",
        "",
        "Checkpoint files (inside the wheel):",
        "",
        *[f"- `{n}` ({size} bytes) sha256 `{h}`" for n, size, h in ckpt_files],
        "",
        "Reference clips (sha256):",
        "",
        *[f"- `reference_clips/{n}.wav` `{h}`" for n, h in clip_meta.items()],
        "",
        "Original model's mean tag probabilities (top 5):",
        "",
        "| clip | model | patches | top-5 tags |",
        "| --- | --- | --- | --- |",
        *summary,
        "",
    ]
    (out / "PROVENANCE.md").write_text("\n".join(lines))
    print("\n".join(summary))


if __name__ == "__main__":
    sys.exit(main())
