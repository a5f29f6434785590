"""The CPU numerical path, pinned so that tokens, adapters and audio do not depend on the machine.

torch (its vectorised ATen kernels), MKL (matmuls) and oneDNN (convolutions) each pick code for
the widest vector instructions the CPU has, and AVX-512 and AVX2 code round differently: the same
data and params gave other tokens on another x86 machine. `numerics.cpu_isa: avx2` (the default)
caps all three at AVX2, which every x86 machine of the last decade has: ATEN_CPU_CAPABILITY,
MKL's conditional numerical reproducibility (MKL_CBWR) and ONEDNN_MAX_CPU_ISA. `native` lets each
use the widest path: faster, and machine-dependent. Measured costs are in bench/README.md.

Each library reads its variable once, at first use, so a relaunched process uses each once
(`settle`) before `launch.scrub` takes the variables back out of its environment.
"""

from __future__ import annotations

PINS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "native": {},
}


def pinned_vars(cpu_isa: str) -> dict[str, str]:
    return dict(PINS[cpu_isa])


def settle() -> str:
    """Make torch, MKL and oneDNN read their ISA variables now; returns torch's capability."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    with torch.no_grad():
        x = torch.ones(64, 64)
        (x @ x).sum()  # MKL sgemm
        torch.nn.functional.conv1d(torch.ones(1, 4, 64), torch.ones(4, 4, 3))  # oneDNN
    return capability
