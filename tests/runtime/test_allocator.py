"""Commands that run models run under mimalloc (unless the user opts out); nothing else does, and no
child process inherits the preload."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from musicgen_lora.runtime import allocator, launch, numerics

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD is Linux's")
ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (allocator.SWITCH, "LD_PRELOAD", "MIMALLOC_PURGE_DELAY")}
    return subprocess.run([sys.executable, *cmd], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=300)


ENV = ["-m", "musicgen_lora", "env"]  # runs as the model commands do, and reports the allocator


def report(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_model_commands_relaunch_under_mimalloc_keeping_freed_memory():
    info = report(run(ENV))
    assert info["allocator"] == "mimalloc"
    assert info["launched_with"]["MIMALLOC_PURGE_DELAY"] == allocator.PURGE_DELAY_MS


@pytest.mark.parametrize(
    "argv,relaunched",
    [
        (["validate"], False),
        (["compare", "--help"], False),
        (["corpus", "--help"], False),
        (["trials", "--help"], False),
        (["--help"], False),
        (["metrics", "--help"], True),
        (["train", "--help"], True),
        (["--debug", "encode", "--help"], True),
    ],
)
def test_only_commands_that_compute_relaunch(monkeypatch, capsys, argv, relaunched):
    from musicgen_lora import __main__ as cli_module

    calls = []
    monkeypatch.setattr(cli_module, "relaunch", lambda argv, changes: calls.append(changes))
    monkeypatch.setattr(sys, "argv", ["musicgen_lora", *argv])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit):
        cli_module.cli()
    assert bool(calls) == relaunched


def test_users_own_mimalloc_options_are_kept():
    assert report(run(ENV, MIMALLOC_PURGE_DELAY="250"))["launched_with"]["MIMALLOC_PURGE_DELAY"] == "250"


def test_opt_out_keeps_the_system_allocator():
    assert report(run(ENV, **{allocator.SWITCH: "system"}))["allocator"] == "system"


def test_child_processes_inherit_no_preload_and_no_pinned_numerics():
    """The relaunched process runs on mimalloc with the pinned ISA, and what it starts (git, dvc,
    queue workers) sees the environment the user had."""
    base = {k: v for k, v in os.environ.items() if k not in (allocator.SWITCH, "LD_PRELOAD")}
    changes = {**allocator.preload_vars(base), **numerics.pinned_vars("avx2")}
    assert "LD_PRELOAD" in changes
    code = (
        "import subprocess, torch; from musicgen_lora.runtime.allocator import active; "
        "from musicgen_lora.runtime.launch import scrub; scrub(); "
        "print(active(), torch.backends.cpu.get_cpu_capability(), "
        "int((torch.ones(64, 64) @ torch.ones(64, 64))[0, 0])); "
        "print(subprocess.run(['env'], capture_output=True, text=True).stdout)"
    )
    out = run(["-c", code], **launch.relaunch_env(base, changes))
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["mimalloc", "AVX2", "64"], out.stderr
    child = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    leaked = {k for k in child if k in (*changes, launch.MARK)}
    assert not leaked, leaked


def test_installed_library_preloads_and_torch_computes_on_it():
    lib = allocator.library()
    assert lib is not None and lib.is_file() and lib.name.startswith("libmimalloc.so.")
    code = (
        "import torch; from musicgen_lora.runtime.allocator import active; x = torch.ones(512, 512); "
        "print(active(), int((x @ x).sum()))"
    )
    on = run(["-c", code], LD_PRELOAD=str(lib))
    off = run(["-c", code])
    assert on.stdout.split() == ["mimalloc", str(512**3)], on.stderr
    assert off.stdout.split() == ["system", str(512**3)], off.stderr


def test_freed_memory_is_kept_for_reuse_until_released():
    base = {k: v for k, v in os.environ.items() if k != allocator.SWITCH}
    env = launch.relaunch_env(base, allocator.preload_vars(base))
    code = """
import torch
from musicgen_lora.runtime.allocator import active, release
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
