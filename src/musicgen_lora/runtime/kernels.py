"""Prepacked linears for generation on CPU, swapped into a model for the length of a `with` block.

`PackedLinear` is a Linear whose weight oneDNN has reordered once into its blocked layout (the
same ops torch.compile's CPU freezing uses). Each generated step multiplies 16 rows (8 prompts
x 2 for guidance) by every decoder weight, and MKL's sgemm re-packs the weight on every such
call. It costs no memory (each weight is moved into the packed layout and back). Only weights of
at least `PACK_MIN_WEIGHTS` are packed: under the pinned AVX2 path (runtime/numerics.py) the
prepacked kernel is 1.2x faster for 16 rows x 1024 x 1024 and 1.5x for 2048 x 2048, but up to
2x *slower* for the tiny model's 128-wide layers (the primitive's fixed cost per call), which
therefore keep the stock Linear.

Packing changes results only in the last bits (outputs differ by ~1e-6), so training and
encoding keep the stock layers; generation, which samples, uses it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import warnings

import torch
from torch import nn

# in x out weights from which packing pays: measured at 16 and 2 rows under the AVX2 cap,
# 256 x 1024 and 512 x 512 gain 3-7%, 384 x 384 and below lose 5-40% (bench/README.md)
PACK_MIN_WEIGHTS = 1 << 18


class PackedLinear(nn.Module):
    """`linear` with its weight moved into oneDNN's blocked layout. One copy, not two: the
    Linear's weight is emptied while packed, and `unpack` puts it back bit for bit. Keeps
    `weight` and `bias` as attributes (peft reads `weight.dtype`)."""

    def __init__(self, linear: nn.Linear, rows_hint: int):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.weight.data = self.weight.data.new_empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def unpack(self) -> None:
        self.weight.data = self.packed.to_dense()
        self.packed = None


@functools.cache
def prepack_supported() -> bool:
    """Whether this torch has oneDNN's private prepacked-linear ops and they compute a Linear.
    Checked once per process; where they are missing or wrong, generation keeps the stock
    Linear (the same numbers, slower) and says so once."""
    try:
        linear = nn.Linear(8, 4)
        x = torch.randn(3, 8)
        with torch.no_grad():
            packed = PackedLinear(nn.Linear(8, 4), 3)
            packed.bias = linear.bias
            packed.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 3)
            ok = torch.allclose(packed(x), linear(x), atol=1e-5)
    except (AttributeError, RuntimeError, TypeError) as exc:
        ok, why = False, f"{type(exc).__name__}: {exc}".splitlines()[0]
    else:
        why = "results differ from nn.Linear"
    if not ok:
        warnings.warn(
            f"kernels: oneDNN prepacked linears unavailable ({why}); generating on stock Linear layers", stacklevel=2
        )
    return ok


def can_prepack(module: nn.Module) -> bool:
    p = next(module.parameters(), None)
    return (
        p is not None
        and p.device.type == "cpu"
        and p.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and prepack_supported()
    )


@contextlib.contextmanager
def swapped(root: nn.Module, replace, undo=None):
    """Children `c` of modules under `root` for which `replace(c)` is not None are replaced by
    it until the block ends; then `undo(replacement)` runs, if given, before `c` goes back."""
    done = []
    try:
        for parent in list(root.modules()):
            for name, child in list(parent.named_children()):
                new = replace(child)
                if new is not None:
                    done.append((parent, name, child, new))
                    setattr(parent, name, new)
        yield root
    finally:
        for parent, name, child, new in reversed(done):
            if undo is not None:
                undo(new)
            setattr(parent, name, child)


@contextlib.contextmanager
def fast_generation(model, prepack: bool, rows_hint: int = 16, min_weights: int = PACK_MIN_WEIGHTS):
    """MusicGen `model` (plain or peft-wrapped) with its decoder linears of at least `min_weights`
    weights prepacked, when `prepack` and the decoder is fp32 on CPU; as it is otherwise."""
    pack = prepack and can_prepack(model.decoder)
    # A weight tied to another module stays where it is: packing moves it out of both.
    uses = collections.Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))

    def linear(m):
        big = type(m) is nn.Linear and m.weight.numel() >= min_weights
        return PackedLinear(m, rows_hint) if pack and big and uses[id(m.weight)] == 1 else None

    with torch.no_grad(), swapped(model.decoder, linear, PackedLinear.unpack):
        yield model
