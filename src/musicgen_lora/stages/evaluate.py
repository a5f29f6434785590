"""Stage `evaluate`: generate the fixed prompt set with base, best and final models and measure it.

Two DVC stages share this module. `evaluate base` depends only on the model, the tokens and
the evaluate params, so changing train or LoRA params never regenerates base audio; it also
measures the training clips once, to calibrate the flag thresholds, and the valid clips (the
target: real audio held out from training) that the style measures compare against. `evaluate
adapters` loads the base model once, attaches both adapters, merges each in turn for fast
generation (`merged`), and writes `comparison_results.jsonl` (one row per prompt, sample and
model, base rows included). Every model generates on `runtime.kernels.fast_generation`'s kernels.

Each prompt is generated `samples_per_prompt` times, each (prompt, sample) with the same seed for
every model, so best-vs-base differences come in pairs and get bootstrap intervals (summarize).
Style is measured by musicnn, a tagger trained on real music (`metrics.tagger_metrics`). A run
whose tokens were padded past the clip length (`encode.pad_to_seconds`) is also generated at the
padded length by base and best (`<model>_model/padded/`, rows with `length: padded`), so what
training on padding taught shows where the padding was (`metrics.past_length`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tqdm import tqdm

from ..core import params as P
from ..core.audio import write_wav
from ..core.stream import load_mono
from ..core.artifacts import ResultRow, read_manifest, read_reference
from ..core.tracked import verify_tracked
from ..core.files import atomic_dir, atomic_path, inside, read_jsonl, slug, write_json, write_jsonl
from ..metrics import bootstrap as B
from ..metrics import clip as M
from ..metrics import style as S
from ..metrics import tagger_metrics as TM
from ..metrics.copying import COPY_FLAG, CopyCheck, TrainingIndex, neighbour_limit, run_limit
from ..metrics.flags import calibrate_thresholds, flags
from ..metrics.musicnn import Tagger
from ..metrics.past_length import past_length_metrics
from ..model import melody
from ..model.delay import forward_loss, loss_inputs
from ..model.families import audio_channels, is_melody
from ..model.lora import load_adapters, merged
from ..model.musicgen import (
    check_generation_length,
    codec_info,
    decode_codes,
    generate,
    load_config,
    load_model,
    model_device,
    resolve_device,
)
from ..model.tokens import load_chroma, load_tokens
from ..runtime.kernels import fast_generation

log = logging.getLogger(__name__)

REFERENCE_CLIPS = 24  # training / valid clips measured for calibration and style reference
TARGET_CLIPS_SHOWN = 3  # target clips the run page plays beside the models' clips
PROFILES = "musicnn.safetensors"  # per model directory: each clip's tags and embedding, in row order


@torch.no_grad()
def valid_losses(model, tokenizer, tokens_dir: Path, pad_id: int, start_id: int) -> list[float]:
    """Loss of each valid clip over real frames only (padding always masked here, so a model that
    learned to predict padding silence gets no credit for it); the model's valid loss is the mean."""
    _, codes, mask, captions = load_tokens(tokens_dir, "valid")
    chroma = load_chroma(tokens_dir, "valid")  # melody models: each clip conditioned on its chroma, as in train
    losses = []
    for i in range(len(captions)):
        inputs = loss_inputs(
            tokenizer,
            captions[i : i + 1],
            codes[i : i + 1],
            mask[i : i + 1],
            True,
            audio_channels(model.config),
            None if chroma is None else chroma[i : i + 1],
        )
        losses.append(float(forward_loss(model, inputs, pad_id, start_id)))
    return losses


@dataclass(frozen=True)
class Files:
    """What the two stages read and write, as dvc.yaml names them (`main`'s arguments)."""

    tokens: Path
    out: Path  # base: its audio folder; adapters: the evaluation folder
    base_rows: Path
    reference: Path  # the stem of reference.json / reference.safetensors
    segments: Path | None = None  # base only
    results: Path | None = None  # adapters only, and the two below
    set_metrics: Path | None = None
    adapters: dict[str, Path] = field(default_factory=dict)


@dataclass
class Evaluation:
    """What every generated set of one evaluation needs: the model (base, or an adapter merged
    in), its tokenizer, the evaluate params, the codec, the tagger, the reference measures and the
    flag thresholds. One object, so the steps below take it instead of a dozen arguments."""

    model: object
    tokenizer: object
    ep: P.EvaluateParams
    gp: P.GenerationParams
    info: object  # model.musicgen.CodecInfo
    tagger: Tagger
    ref: dict
    th: P.FlagThresholds | None = None

    def generate_set(
        self, frames: int, tmp: Path, out_name: str, name: str, loss: float, samples: int, padded: dict | None = None
    ) -> tuple[list[ResultRow], list[np.ndarray]]:
        """Generate every prompt `samples` times into `tmp` (`tmp/padded` for the padded set); one
        row per clip, measured. Sample s of prompt i has its own seed, evaluate.seed + s * P + i (P
        prompts), whatever batch it shares (`model/sampling.py`): sample 0 keeps the seeds of a
        one-sample evaluation. Melody models also generate each clip-length prompt on the
        reference melody (under melody/), with the same seed."""
        model, ep, gp, ref, sr = self.model, self.ep, self.gp, self.ref, self.info.sample_rate
        sub = "padded/" if padded else ""
        tune = None if padded else ref.get("melody_chroma")
        (tmp / sub).mkdir(exist_ok=True)
        rows, clips, n = [], [], len(ep.all_prompts)
        with fast_generation(model, ep.cpu_prepack):
            for s in range(samples):
                for b0 in tqdm(
                    range(0, n, ep.batch_size), desc=f"generate {name} {sub or ''}{s + 1}/{samples}", unit="batch"
                ):
                    prompts, seed = ep.all_prompts[b0 : b0 + ep.batch_size], ep.seed + s * n + b0
                    audio, codes = generate(
                        model, self.tokenizer, prompts, frames, gp.guidance_scale, gp.temperature, gp.top_k, seed
                    )
                    guided = (
                        None
                        if tune is None
                        else generate(
                            model,
                            self.tokenizer,
                            prompts,
                            frames,
                            gp.guidance_scale,
                            gp.temperature,
                            gp.top_k,
                            seed,
                            torch.from_numpy(tune),
                        )[0]
                    )
                    for j, (prompt, clip, clip_codes) in enumerate(zip(prompts, audio, codes)):
                        fname = f"{b0 + j:02d}_{s}_{slug(prompt)}.wav"
                        write_wav(tmp / sub / fname, clip, sr)
                        m = self.clip_measures(clip, clip_codes, padded)
                        if guided is not None:  # written under melody/, measured against the reference's chroma
                            (tmp / "melody").mkdir(exist_ok=True)
                            write_wav(tmp / "melody" / fname, guided[j], sr)
                            m.update(melody.similarity(model, clip, guided[j], sr, tune))
                        rows.append(
                            ResultRow(
                                prompt,
                                name,
                                s,
                                seed + j,
                                "padded" if padded else "clip",
                                f"{out_name}/{sub}{fname}",
                                round(len(clip) / sr, 3),
                                loss,
                                flags(m, self.th),
                                m,
                                made_on(model, len(prompts)),
                            )
                        )
                        clips.append(clip)
        return rows, clips

    def clip_measures(self, clip: np.ndarray, codes: np.ndarray, padded: dict | None) -> dict:
        """One generated clip's measures: the signal's, its tokens' health, its verbatim runs of
        training codes (metrics/copying.py) and, at the padded length, what is past the clip."""
        ep, ref, sr = self.ep, self.ref, self.info.sample_rate
        m = M.clip_metrics(clip, sr, ep.silence_threshold_dbfs)
        m.update(token_health(codes, ref))
        if "copy" in ref:
            m.update(ref["copy"].measure(codes))
        if padded:
            m.update(
                {
                    k: round(v, 5)
                    for k, v in past_length_metrics(
                        clip,
                        sr,
                        codes,
                        self.info.frame_rate,
                        padded["clip_seconds"],
                        ref["silence_codes"].tolist(),
                        ep.silence_threshold_dbfs,
                    ).items()
                }
            )
        return m

    def valid_losses(self, tokens_dir: Path) -> list[float]:
        """The model's loss on each valid clip (real frames only)."""
        return valid_losses(
            self.model, self.tokenizer, tokens_dir, self.info.pad_id, self.model.config.decoder.decoder_start_token_id
        )

    def generate_measured(
        self, tmp: Path, out_name: str, name: str, loss: float, frames: int, padded: dict | None, padded_frames: int | None
    ) -> tuple[list[ResultRow], dict, np.ndarray]:
        """The prompt set at the clip length, measured (rows, set figures, musicnn embeddings), then
        one sample of it at the padded length where there is one."""
        rows, clips = self.generate_set(frames, tmp, out_name, name, loss, self.ep.samples_per_prompt)
        figures, emb = measure_style(rows, clips, self.info.sample_rate, tmp, self.ref, self.tagger, in_style(rows, self.ep))
        if padded:
            rows += self.generate_set(padded_frames, tmp, out_name, name, loss, 1, padded)[0]
        return rows, figures, emb


def open_evaluation(mp: P.ModelParams, ep: P.EvaluateParams, gp: P.GenerationParams) -> Evaluation:
    """The base model (seeded), its codec facts and the tagger; the reference comes after."""
    torch.manual_seed(ep.seed)
    model, tokenizer = load_model(mp, resolve_device(mp), ep.half_precision)
    return Evaluation(model, tokenizer, ep, gp, codec_info(model.config), Tagger.load(TM.TAGGER), {})


def made_on(model, batch: int) -> dict:
    dtype = getattr(model, "generation_dtype", None) or torch.float32
    return {"device": model_device(model).type, "dtype": str(dtype).removeprefix("torch."), "batch": batch}


def token_health(codes: np.ndarray, reference: dict) -> dict:
    """Codec-token health of generated codes (K, T) against the training set's code distribution."""
    hist = S.code_histogram(codes, reference["train_code_hist"].shape[1])
    return {
        "code_entropy_bits": S.code_entropy(codes, reference["train_code_hist"].shape[1]),
        "code_js_divergence": float(np.mean([S.js_divergence(h, r) for h, r in zip(hist, reference["train_code_hist"])])),
        "silence_code_share": S.silence_code_share(codes, reference["silence_codes"].tolist()),
    }


def profiles(tagger: Tagger, clips: list[np.ndarray], sr: int) -> TM.Profiles:
    return TM.Profiles.stack([TM.clip_profile(tagger, c, sr) for c in clips])


def target_profiles(ref: dict) -> TM.Profiles:
    return TM.Profiles(ref["valid_musicnn_tags"], ref["valid_musicnn_emb"])


def in_style(rows: list[ResultRow], ep: P.EvaluateParams) -> np.ndarray:
    """Which rows answer an in-style prompt (evaluate.prompts): the style figures are theirs."""
    return np.array([r.prompt not in ep.off_style_prompts for r in rows], dtype=bool)


def measure_style(
    rows: list[ResultRow], clips: list[np.ndarray], sr: int, tmp: Path, ref: dict, tagger: Tagger, mask: np.ndarray
) -> tuple:
    """musicnn measures per clip (into each row's metrics; each clip's tags and embedding into
    `tmp/musicnn.safetensors`) and the set's figures over the in-style clips (`mask`): an
    off-style prompt is asked not to sound like the target. Returns (set figures, embeddings)."""
    prof, target = profiles(tagger, clips, sr), target_profiles(ref)
    for row, m, emb in zip(rows, TM.clip_measures(prof, target, tagger.tags), prof.embeddings):
        row.metrics.update(m)
        if "copy" in ref:
            row.metrics.update(ref["copy"].nearest(emb))
            if ref["copy"].is_copy(row.metrics):
                row.flags.append(COPY_FLAG)
    save_file(
        {"tags": prof.tags.astype(np.float32), "embeddings": prof.embeddings.astype(np.float32)},
        str(tmp / PROFILES),
        metadata={"files": json.dumps([r.file for r in rows])},
    )
    styled = [c for c, keep in zip(clips, mask) if keep]
    mfcc = np.stack([S.mfcc_stats(c, sr) for c in styled]) if styled else None
    enough = len(styled) >= 2 and len(ref["valid_mfcc"]) >= 2  # a covariance needs two rows on each side
    fd_mfcc = round(S.frechet_distance(mfcc, ref["valid_mfcc"]), 2) if enough else None
    subset = TM.Profiles(prof.tags[mask], prof.embeddings[mask])
    return {"style_fd_mfcc": fd_mfcc, **TM.set_measures(subset, target, tagger.tags)}, prof.embeddings


def build_reference(
    model, seg_dir: Path, tokens_dir: Path, info, ep: P.EvaluateParams, tagger: Tagger
) -> tuple[dict, dict, dict]:
    """Measure training clips (for calibrated thresholds and the copy check) and valid clips (the
    style target). Returns (reference arrays, calibrated thresholds, {copy, listen}: the copy
    check's figures and the target clips the page plays)."""
    sr = info.sample_rate
    manifest = read_manifest(seg_dir)
    index, codes, mask, _ = load_tokens(tokens_dir, "train")
    # clip_metrics needs MIN_CLIP_S of audio: a shorter last piece (segment.min_clip_seconds below it) is not measured
    train_rows = [r for r in manifest if r.split == "train" and r.duration_s >= M.MIN_CLIP_S][:REFERENCE_CLIPS]
    valid_rows = [r for r in manifest if r.split == "valid"][:REFERENCE_CLIPS]
    measured: dict[str, dict] = {}  # a recording's last clip may also be among train_rows: measured once

    def measure(r) -> dict:
        if r.id not in measured:
            measured[r.id] = M.clip_metrics(
                load_mono(inside(seg_dir, r.file), sr)[: int(r.duration_s * sr)], sr, ep.silence_threshold_dbfs
            )
        return measured[r.id]

    train_metrics = [measure(r) for r in train_rows]
    endings = {r.source: r for r in manifest if r.split == "train"}  # each recording's last clip: how it ends
    calibrated = calibrate_thresholds(
        train_metrics,
        ep.thresholds(),
        endings=[measure(r) for r in list(endings.values())[:REFERENCE_CLIPS] if r.duration_s >= M.MIN_CLIP_S],
    )
    valid_audio = [load_mono(inside(seg_dir, r.file), sr)[: int(r.duration_s * sr)] for r in valid_rows]
    target = profiles(tagger, valid_audio, sr)
    ref = {
        "train_code_hist": np.mean([S.code_histogram(c.numpy(), index["codec"]["codebook_size"]) for c in codes], axis=0),
        "silence_codes": np.array(index["silence_codes"]),
        "valid_mfcc": np.stack([S.mfcc_stats(a, sr) for a in valid_audio]),
        "valid_musicnn_tags": target.tags,
        "valid_musicnn_emb": target.embeddings,
    }
    if is_melody(model.config):  # the melody reference: the first valid clip
        ref["melody_chroma"] = melody.reference_chroma(model, valid_audio[0], sr)
    ref["copy"], copy_ref = training_copies(model, seg_dir, tokens_dir, index, codes, mask, info, ref, tagger, manifest)
    # the first target clips, to listen to beside the models' (the run page), with what musicnn hears
    firsts = [i for i, r in enumerate(valid_rows) if r.source not in {x.source for x in valid_rows[:i]}]
    listen = [
        {
            "file": (seg_dir / valid_rows[i].file).as_posix(),
            "source": valid_rows[i].source,
            "offset_s": valid_rows[i].offset_s,
            "top_tags": TM.top_tags(target.tags[i : i + 1], tagger.tags, 3),
        }
        for i in firsts[:TARGET_CLIPS_SHOWN]
    ]  # one clip of each recording
    return ref, asdict(calibrated), {"copy": copy_ref, "listen": listen}


def training_copies(
    model, seg_dir: Path, tokens_dir: Path, index: dict, codes, mask, info, ref: dict, tagger: Tagger, manifest
) -> tuple[CopyCheck, dict]:
    """The copy check (metrics/copying.py) over every training clip: its codes hashed, the musicnn
    embedding of what a verbatim copy of it sounds like (its codes through the codec: the round
    trip, not the recording, which a codec that colours sound puts far from any copy; measured on
    the tiny model: a copy 0.26-0.34 from its recording, 0 from its round trip), and what clips
    that cannot copy score (the held-out clips' longest verbatim run)."""
    check = copy_check(codes, mask, info.frame_rate, ref)
    by_id = {r.id: r for r in manifest}
    train = [by_id[c["id"]] for c in index["clips"] if c["split"] == "train"]  # the token index's order
    ref["train_musicnn_emb"] = check.train_emb = profiles(
        tagger, round_trips(model, codes, mask), info.sample_rate
    ).embeddings
    check.nn_limit = neighbour_limit(check.train_emb, [r.source for r in train])
    _, vcodes, vmask, _ = load_tokens(tokens_dir, "valid")
    valid_runs = [check.measure(c[:, m].numpy())["copy_longest_s"] for c, m in zip(vcodes, vmask)]
    return check, {
        "nn_limit": check.nn_limit,
        "valid_longest_s": max(valid_runs, default=0.0),
        "frame_rate": info.frame_rate,
        "train_clips": [{"source": r.source, "offset_s": r.offset_s, "file": (seg_dir / r.file).as_posix()} for r in train],
    }


def round_trips(model, codes, mask) -> list[np.ndarray]:
    """Each clip's real frames decoded (mono: stereo's channels averaged), one clip at a time."""
    out = []
    with torch.no_grad():
        for c, m in zip(codes, mask):
            audio = decode_codes(model, c[None, :, m]).float().cpu().numpy()[0]
            out.append(audio.mean(-1) if audio.ndim == 2 else audio)
    return out


def copy_check(codes, mask, frame_rate: float, ref: dict, copy_ref: dict | None = None) -> CopyCheck:
    """The training codes (real frames of each train clip, in the token index's order) hashed."""
    silence = np.asarray(ref["silence_codes"]).astype(np.int64)
    index = TrainingIndex.build([c[:, m].numpy() for c, m in zip(codes, mask)], silence)
    copy_ref = copy_ref or {}
    return CopyCheck(
        index, silence, frame_rate, ref.get("train_musicnn_emb"), copy_ref.get("nn_limit"), copy_ref.get("run_limit_s")
    )


def padded_length(tokens_dir: Path, config) -> tuple[dict | None, int | None]:
    """({clip_seconds, pad_to_seconds}, frames) when encode padded the clips more than 0.5 s past
    their length (the least the past-length measures need), else (None, None). A padded length
    the decoder cannot generate is reported and skipped: it must not stop the evaluation."""
    index = json.loads((tokens_dir / "index.json").read_text(encoding="utf-8"))
    clip_s, pad_s = index.get("clip_seconds"), index.get("pad_to_seconds")
    if not (clip_s and pad_s and pad_s > clip_s + 0.5):
        return None, None
    try:
        return {"clip_seconds": clip_s, "pad_to_seconds": pad_s}, check_generation_length(
            config, pad_s, "encode.pad_to_seconds"
        )
    except P.ParamsError as exc:
        log.warning(f"evaluate: no evaluation at the padded length: {exc}")
        return None, None


def run_base(files: Files, mp: P.ModelParams, ep: P.EvaluateParams, gp: P.GenerationParams) -> None:
    config = load_config(mp)
    frames = check_generation_length(config, ep.seconds)  # before the weights load
    padded, padded_frames = padded_length(files.tokens, config)
    ev = open_evaluation(mp, ep, gp)
    ev.ref, calibrated, extra = build_reference(ev.model, files.segments, files.tokens, ev.info, ep, ev.tagger)
    losses = ev.valid_losses(files.tokens)
    loss, ev.th = float(np.mean(losses)), P.FlagThresholds(**calibrated)
    with atomic_dir(files.out) as tmp:
        rows, dist, ev.ref["base_musicnn_emb"] = ev.generate_measured(
            tmp, files.out.name, "base", loss, frames, padded, padded_frames
        )
    copy_ref = extra["copy"]
    base_runs = [r.metrics.get("copy_longest_s", 0.0) for r in rows]
    copy_ref.update(
        base_longest_s=max(base_runs, default=0.0),
        run_limit_s=run_limit([copy_ref["valid_longest_s"], max(base_runs, default=0.0)]),
    )
    with atomic_path(files.reference.with_suffix(".safetensors")) as tmp:
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in ev.ref.items() if k != "copy"}, str(tmp))
    write_json(
        files.reference.with_suffix(".json"),
        {
            "thresholds": calibrated,
            "base": {**dist, "valid_losses": [round(x, 6) for x in losses]},
            "base_valid_loss": loss,
            "target": {
                "top_tags": TM.top_tags(ev.ref["valid_musicnn_tags"], ev.tagger.tags),
                "n": len(ev.ref["valid_mfcc"]),
                "clips": extra["listen"],
            },
            "padded": padded,
            "copy": copy_ref,
        },
    )
    write_jsonl(files.base_rows, (asdict(r) for r in rows))
    print(f"evaluate base: valid loss {loss:.4f}; {len(rows)} clips in {files.out}")


def copy_twin(twin_rows: list[ResultRow], twin_dir: Path, out_dir: Path, name: str) -> list[ResultRow]:
    """Adapter `name` has the same weights as the one evaluated into `twin_dir`: merging and
    generating from the same seeds would give the same audio, so copy it and its rows (the
    clip-length ones: only best is generated at the padded length)."""
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(twin_dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("padded"))
    return [
        replace(r, model=name, file=f"{out_dir.name}/{Path(r.file).name}", flags=list(r.flags), metrics=dict(r.metrics))
        for r in twin_rows
        if r.length == "clip"
    ]


def run_adapters(files: Files, mp: P.ModelParams, ep: P.EvaluateParams, gp: P.GenerationParams) -> None:
    config = load_config(mp)
    frames = check_generation_length(config, ep.seconds)  # before the weights load
    summary = read_reference(files.reference.with_suffix(".json"))
    padded = summary.get("padded")  # evaluate base decided: base and best share the padded evaluation
    padded_frames = padded and check_generation_length(config, padded["pad_to_seconds"], "encode.pad_to_seconds")
    ev = open_evaluation(mp, ep, gp)
    ev.ref, ev.th = (
        load_reference(files.reference, summary, files.tokens, ev.info),
        P.FlagThresholds(**summary["thresholds"]),
    )
    peft_model = load_adapters(ev.model, files.adapters)
    all_rows = [ResultRow(**r) for r in read_jsonl(files.base_rows)]
    distances = {"base": summary["base"]}
    done: dict[str, tuple[str, list[ResultRow]]] = {}  # adapter weights digest -> (name, rows)
    for name in files.adapters:
        out_dir = files.out / f"{name}_model"
        digest = hashlib.sha256((files.adapters[name] / "adapter_model.safetensors").read_bytes()).hexdigest()
        if digest in done:  # final is best (valid loss still falling at the end): same weights, same audio
            twin, twin_rows = done[digest]
            rows, distances[name] = copy_twin(twin_rows, files.out / f"{twin}_model", out_dir, name), distances[twin]
        else:
            with merged(peft_model, name) as merged_model:
                rows, distances[name] = evaluate_adapter(
                    replace(ev, model=merged_model),
                    files.tokens,
                    out_dir,
                    name,
                    frames,
                    padded if name == padded_for(files.adapters) else None,
                    padded_frames,
                )
            done[digest] = (name, rows)
        all_rows += rows
        print(
            f"evaluate {name}: valid loss {rows[0].valid_loss:.4f}"
            + (f" (same weights as {done[digest][0]})" if done[digest][0] != name else "")
        )
    write_jsonl(files.results, (asdict(r) for r in all_rows))
    write_json(files.set_metrics, set_metrics_record(distances, summary, padded, ep))


def set_metrics_record(distances: dict, summary: dict, padded: dict | None, ep: P.EvaluateParams) -> dict:
    """Set-level figures, one per model (not copied onto every clip), and how the intervals are drawn."""
    return {
        "models": distances,
        "target": summary["target"],
        "padded": padded,
        "prompts": {"in_style": ep.prompts, "off_style": ep.off_style_prompts},
        "bootstrap": {"seed": ep.seed, "resamples": B.RESAMPLES, "level": B.LEVEL},
    }


def padded_for(adapters: dict) -> str:
    """The adapter generated at the padded length too (beside base): best, where there is one."""
    return "best" if "best" in adapters else next(iter(adapters))


def load_reference(ref_path: Path, summary: dict, tokens_dir: Path, info) -> dict:
    """What `evaluate base` measured (arrays), with the copy check rebuilt over the training codes."""
    ref = {k: v for k, v in load_file(str(ref_path.with_suffix(".safetensors"))).items()}
    if summary.get("copy"):
        _, codes, mask, _ = load_tokens(tokens_dir, "train")
        ref["copy"] = copy_check(codes, mask, info.frame_rate, ref, summary["copy"])
    return ref


def evaluate_adapter(
    ev: Evaluation, tokens_dir: Path, out_dir: Path, name: str, frames: int, padded: dict | None, padded_frames: int | None
) -> tuple[list[ResultRow], dict]:
    """One merged adapter: its valid losses, its generated set measured into `out_dir`, and its
    set figures with the style distance's interval against base."""
    losses = ev.valid_losses(tokens_dir)
    with atomic_dir(out_dir) as tmp:
        rows, dist, emb = ev.generate_measured(
            tmp, out_dir.name, name, float(np.mean(losses)), frames, padded, padded_frames
        )
    mask = in_style([r for r in rows if r.length == "clip"], ev.ep)
    fd = TM.style_fd_interval(ev.ref["base_musicnn_emb"][mask], emb[mask], ev.ref["valid_musicnn_emb"], ev.ep.seed)
    return rows, {**dist, "valid_losses": [round(x, 6) for x in losses], "style_fd_vs_base": fd and fd.as_dict(4)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="musicgen_lora evaluate", description=__doc__)
    ap.add_argument("which", choices=["base", "adapters"])
    ap.add_argument("--segments", type=Path)
    ap.add_argument("--tokens", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="base: audio dir; adapters: evaluation dir")
    ap.add_argument("--base-rows", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True, help="stem of reference .json/.safetensors")
    ap.add_argument("--adapter", action="append", default=[], help="NAME=DIR (adapters mode)")
    ap.add_argument("--results", type=Path)
    ap.add_argument("--set-metrics", type=Path, help="adapters mode: set-level figures per model (JSON)")
    args = ap.parse_args(argv)
    mp, ep, gp = P.load("model", "evaluate", "generation")
    for tracked in (args.segments, args.tokens):  # inputs as their stages wrote them, not a corrupt checkout
        if tracked is not None:
            verify_tracked(tracked)
    adapters = {name: Path(folder) for name, folder in (a.split("=", 1) for a in args.adapter)}
    files = Files(
        args.tokens, args.out, args.base_rows, args.reference, args.segments, args.results, args.set_metrics, adapters
    )
    (run_base if args.which == "base" else run_adapters)(files, mp, ep, gp)
    return 0
