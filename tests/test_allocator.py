"""Every `python -m musicgen_lora` command runs under mimalloc, unless the user opts out."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicgen_lora import allocator

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (allocator.SWITCH, "LD_PRELOAD", "MIMALLOC_PURGE_DELAY")}
    return subprocess.run([sys.executable, *cmd], cwd=ROOT, env={**base, "MIMALLOC_VERBOSE": "1", **env},
                          capture_output=True, text=True, timeout=300)


def test_cli_relaunches_under_mimalloc_keeping_freed_memory():
    out = run(["-m", "musicgen_lora", "validate"])
    assert out.returncode == 0 and "params.yaml: ok" in out.stdout, out.stderr
    assert "mimalloc: process init" in out.stderr
    assert f"option 'purge_delay': {allocator.PURGE_DELAY_MS}" in out.stderr


def test_users_own_mimalloc_options_are_kept():
    out = run(["-m", "musicgen_lora", "validate"], MIMALLOC_PURGE_DELAY="250")
    assert out.returncode == 0 and "option 'purge_delay': 250" in out.stderr


def test_opt_out_keeps_the_system_allocator():
    out = run(["-m", "musicgen_lora", "validate"], **{allocator.SWITCH: "system"})
    assert out.returncode == 0 and "params.yaml: ok" in out.stdout
    assert "mimalloc" not in out.stderr


def test_installed_library_preloads_and_torch_computes_on_it():
    lib = allocator.library()
    assert lib is not None and lib.is_file() and lib.name.startswith("libmimalloc.so.")
    code = ("import torch; from musicgen_lora.allocator import active; x = torch.ones(512, 512); "
            "print(active(), int((x @ x).sum()))")
    on = run(["-c", code], LD_PRELOAD=str(lib))
    off = run(["-c", code])
    assert on.stdout.split() == ["mimalloc", str(512**3)], on.stderr
    assert off.stdout.split() == ["system", str(512**3)], off.stderr


def test_freed_memory_is_kept_for_reuse_until_released():
    env = allocator.preload_env({k: v for k, v in os.environ.items() if k != allocator.SWITCH})
    assert env is not None
    code = """
import torch
from musicgen_lora.allocator import active, release
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e9
base = rss()
blocks = [torch.ones(2_000_000 + 1000 * i) for i in range(100)]  # 0.8 GB in 8 MB tensors
live = rss()
del blocks
kept = rss()
print(active(), release(), round(live - base, 2), round(kept - base, 2), round(rss() - base, 2))
"""
    out = run(["-c", code], **env)
    name, released, live, kept, after = out.stdout.split()
    assert (name, released) == ("mimalloc", "True"), out.stderr
    assert float(live) > 0.7 and float(kept) > 0.7  # freed, yet kept for the next step
    assert float(after) < 0.2  # release() returned it to the OS
