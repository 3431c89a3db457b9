"""Shared test helpers: the tiny shape, the reference output, and a chi-square check."""

from __future__ import annotations

import torch

from specdiff.training.tiny import TinyShape

SHAPE = TinyShape()  # vocab 512, sliding window 16
CANVAS = 16


def reference_greedy(verifier, prompt: list[int], max_new_tokens: int, eos: list[int] | None = None) -> list[int]:
    """The verifier's own greedy ``generate()``: the output speculative decoding must equal."""
    out = verifier.model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return out[0, len(prompt):].tolist()


def chi2_pvalue(observed: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """Pearson's chi-square test of counts against probabilities (cells with zero probability dropped)."""
    n = observed.sum()
    keep = expected_probs > 0
    assert observed[~keep].sum() == 0, "a cell with zero probability was observed"
    expected = expected_probs[keep].double() * n
    stat = ((observed[keep].double() - expected) ** 2 / expected).sum()
    dof = int(keep.sum()) - 1
    return float(1.0 - torch.special.gammainc(torch.tensor(dof / 2.0), stat / 2.0))


class Interrupt(Exception):
    """Raised by ``stop_after``: a sweep stopped mid-run, as a kill would stop it."""


def stop_after(n: int):
    """An ``on_row`` hook that interrupts a sweep once ``n`` rows are durable."""
    seen = []

    def on_row(row):
        seen.append(row)
        if len(seen) == n:
            raise Interrupt

    return on_row
