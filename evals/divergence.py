"""Where a method's greedy output parts from the verifier's own, and whether that is a near-tie.

In float32 every method must equal plain greedy ``generate()`` token for token. In bfloat16 a
K-token forward and K 1-token forwards round differently, so greedy paths may part, but only
where the reference's top logits lie within bfloat16's resolution of each other. The bench
records, for each run that parts from ``ar``, the first position that differs and the reference's
logit margin there between its token and the method's, in units of the logits' spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pandas as pd

# A divergence within this many spacings of the dtype at the two logits is rounding, not an error:
# a full-sequence forward, K-token forwards and 1-token forwards each round differently.
NEAR_TIE_SPACINGS = 2
# Significand bits after the leading one: the spacing of representable values near x is 2^(e - bits).
MANTISSA_BITS = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23, torch.float64: 52}


@dataclass(frozen=True)
class Divergence:
    """The first position where ``ours`` parts from ``reference``, and the reference's view of it.

    ``margin``: the reference logit of its own token minus that of ours (>= 0 up to rounding);
    ``spacings``: the margin in units of the dtype's spacing at those logits. Where one output is a
    prefix of the other, the one that stopped there chose the end-of-sequence token.
    """

    position: int
    margin: float
    spacings: float


def first_difference(reference: list[int], ours: list[int]) -> int | None:
    """The first index where the two token lists differ (a length difference counts), else None."""
    for i, (a, b) in enumerate(zip(reference, ours, strict=False)):
        if a != b:
            return i
    return None if len(reference) == len(ours) else min(len(reference), len(ours))


def spacing(value: float, dtype: torch.dtype) -> float:
    """The gap between adjacent representable numbers of ``dtype`` at ``value``."""
    exponent = math.floor(math.log2(max(abs(value), 1e-30)))
    return 2.0 ** (exponent - MANTISSA_BITS[dtype])


@torch.no_grad()
def divergence(model: Any, prompt_ids: torch.Tensor, reference: list[int], ours: list[int],
               eos_id: int | None) -> Divergence | None:
    """How ``ours`` parts from ``reference`` (both continuations of ``prompt_ids``, ``[1, T]``, of the
    same length unless one stopped at ``eos_id``), judged by one full forward of ``model`` over the
    prompt and the shared prefix; None if the two are equal."""
    position = first_difference(reference, ours)
    if position is None:
        return None
    if position >= min(len(reference), len(ours)) and eos_id is None:
        return Divergence(position, math.nan, math.nan)  # stopped early without an EOS id: nothing to weigh
    reference, ours = reference + [eos_id], ours + [eos_id]  # a shorter output chose EOS where it stopped
    prefix = torch.tensor([reference[:position]], dtype=torch.long, device=prompt_ids.device)
    ids = torch.cat([prompt_ids, prefix], dim=1)
    logits = model(ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
    theirs, mine = logits[reference[position]].item(), logits[ours[position]].item()
    step = spacing(max(abs(theirs), abs(mine)), model.dtype)
    return Divergence(position, theirs - mine, (theirs - mine) / step)


def add_divergences(runs: pd.DataFrame, outputs: dict[tuple[str, int, str], list[int]], prompt_ids: dict[str, Any],
                    model: Any, eos_id: int) -> pd.DataFrame:
    """``runs`` with, per run, where its output first parts from ``ar``'s on the same prompt and
    repeat (``first_divergence``, -1: identical) and the reference's logit margin there, raw and in
    units of the verifier dtype's spacing (``specdiff.evals.divergence``)."""
    found = [divergence(model, prompt_ids[r.prompt_id], outputs[r.prompt_id, r.repeat, "ar"],
                        outputs[r.prompt_id, r.repeat, r.method], eos_id) for r in runs.itertuples()]
    runs = runs.copy()
    runs["first_divergence"] = [-1 if d is None else d.position for d in found]
    runs["divergence_margin"] = [float("nan") if d is None else d.margin for d in found]
    runs["divergence_spacings"] = [float("nan") if d is None else d.spacings for d in found]
    return runs
