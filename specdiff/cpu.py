"""What this CPU does fast: whether bfloat16 matrix products beat float32 ones here.

bfloat16 pays only where the CPU multiplies it natively (AVX-512 BF16 or AMX): there a batched
SmolLM2 forward runs about 2x faster than in float32. Elsewhere torch emulates it: on an AVX2-only
EPYC here `python -c "from specdiff.cpu import bfloat16_speedup; print(bfloat16_speedup())"` printed
0.032 (bfloat16 31x slower), and the drafter recipe's distillation in bfloat16 wrote about 15
verifier tokens a second against 47.7 in float32. Measured, not read off CPU flags: the flags say
what the hardware has, not what torch's kernels use.
"""

from __future__ import annotations

import time
from functools import cache


def _matmul_seconds(dtype, repeats: int = 5) -> float:
    """The best of ``repeats`` timings of one ``[64, 576] x [576, 1536]`` product (a SmolLM2
    projection at batch 64) in ``dtype``, after one warm-up product."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 576, generator=gen).to(dtype)
    w = torch.randn(576, 1536, generator=gen).to(dtype)
    a @ w
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ w
        best = min(best, time.perf_counter() - t0)
    return best


@cache
def bfloat16_speedup() -> float:
    """float32's time for the probe product over bfloat16's (above 1: bfloat16 is faster here).
    A few milliseconds on a CPU with native bfloat16, about a second without; cached per process."""
    import torch

    return _matmul_seconds(torch.float32) / _matmul_seconds(torch.bfloat16)


def fast_dtype() -> str:
    """``"bfloat16"`` where this CPU multiplies it at least 1.2x faster than float32, else ``"float32"``."""
    return "bfloat16" if bfloat16_speedup() >= 1.2 else "float32"


# A dtype setting meaning "whichever of float32 and bfloat16 is faster on this CPU" (not transformers'
# "auto", which means the checkpoint's own dtype).
FASTEST = "fastest"


def resolve_dtype(name: str) -> str:
    """``name`` itself, or for ``FASTEST`` this CPU's ``fast_dtype()``."""
    return fast_dtype() if name == FASTEST else name
