"""model.tokens: training's clip-by-clip reader gives what the whole-split loader gives."""

import json
import subprocess
import sys

import torch
from safetensors.torch import save_file

from musicgen_lora.model.tokens import INDEX, TokenSplit, load_chroma, load_tokens, shard_name


def write_shards(folder, shards: int, clips: int, frames: int = 500, chroma: bool = False) -> None:
    gen, rows = torch.Generator().manual_seed(0), []
    for s in range(shards):
        tensors = {
            "codes": torch.randint(0, 2048, (clips, 4, frames), generator=gen, dtype=torch.int16),
            "frame_mask": torch.rand(clips, frames, generator=gen) < 0.9,
        }
        if chroma:
            tensors["chroma"] = torch.rand(clips, frames, 12, generator=gen)
        save_file(tensors, str(folder / shard_name(s)))
        rows += [
            {
                "id": f"{s}-{i}",
                "split": "valid" if i % 3 == 0 else "train",
                "caption": f"c{s}-{i}",
                "shard": shard_name(s),
                "row": i,
            }
            for i in range(clips)
        ]
    (folder / INDEX).write_text(
        json.dumps(
            {
                "codec": {"num_codebooks": 4},
                "frames": frames,
                "shards": [shard_name(s) for s in range(shards)],
                "clips": rows,
            }
        )
    )


def test_clip_by_clip_equals_the_whole_split(tmp_path):
    write_shards(tmp_path, shards=2, clips=5, frames=20, chroma=True)
    for split in ("train", "valid"):
        _, codes, mask, captions = load_tokens(tmp_path, split)
        chroma, clips = load_chroma(tmp_path, split), TokenSplit(tmp_path, split)
        assert clips.captions == captions and len(clips) == len(codes)
        for i in range(len(clips)):
            item = clips.clip(i)
            assert item["codes"].dtype == codes.dtype and torch.equal(item["codes"], codes[i])
            assert item["frame_mask"].dtype == torch.bool and torch.equal(item["frame_mask"], mask[i])
            assert torch.equal(item["chroma"], chroma[i])
    write_shards(tmp_path, shards=1, clips=3, frames=20)  # no chroma stored: none given
    assert "chroma" not in TokenSplit(tmp_path, "train").clip(0)


HELD = """
import os, sys
from pathlib import Path
from musicgen_lora.model.tokens import TokenSplit, load_tokens
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
TokenSplit(Path(sys.argv[1]), "train").clip(0)  # first use: lazy imports and library set-up (~4-10 MB)
before = rss()
if sys.argv[2] == "clips":
    clips = TokenSplit(Path(sys.argv[1]), "train")
    for i in range(len(clips)):  # an epoch: each clip read, batched and dropped
        clips.clip(i)
else:
    held = load_tokens(Path(sys.argv[1]), "train")
print(rss() - before)
"""


def test_reading_an_epoch_holds_no_clip_it_has_passed(tmp_path):
    # 8 shards x 256 clips x 4 x 500 int16: 8 MB on disk, 22 MB as the train split's long codes
    write_shards(tmp_path, shards=8, clips=256)
    grown = {
        how: int(
            subprocess.run(
                [sys.executable, "-c", HELD, str(tmp_path), how], capture_output=True, text=True, check=True
            ).stdout
        )
        for how in ("clips", "whole")
    }
    assert grown["whole"] > 20_000, grown  # kB: the measure sees a split held whole
    assert grown["clips"] < grown["whole"] / 4, grown
