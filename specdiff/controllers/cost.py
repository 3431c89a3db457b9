"""The cost model: what a round will take in wall-clock seconds, fitted online from measured rounds.

Three fits, each updated after every round from the seconds in ``RoundStats``:

- the diffusion drafter's seconds against denoising steps used and block size, a plane
  (``PlaneFit``): it denoises its whole canvas whatever the block, but its LM head runs over the
  block only, and at a real vocabulary the head is a large part of a step;
- verifying seconds, bookkeeping (``other_s``) included, against tokens scored, K + 1 (a plain
  decoding round scores 1): a non-decreasing piecewise-linear curve (``KnotFit``), because a
  forward's cost is not a line in its width: it runs in flat stretches and steps (on a GPU the
  flat stretch is far longer), and a line through such points has the flat stretches rising;
- the n-gram lookup's seconds (no model call) against block size, a line of its own (``lookup``).

``benchmarks/round_costs.py`` prints the measured curves these fits follow. Measured seconds drift
(other processes share the machine, the KV cache grows), so the fits forget old rounds
exponentially. Everything here is pure: a fit is a frozen dataclass, ``updated`` returns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from specdiff.controllers.fits import KnotFit, LinearFit, PlaneFit
from specdiff.metrics import RoundStats
from specdiff.protocols import Proposer


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of a round, from drafting and verifying fits.

    Attributes:
        draft: the diffusion drafter's seconds against denoising steps used and block size.
        verify: verifying plus bookkeeping seconds against tokens scored (block size + 1).
        lookup: the n-gram lookup's drafting seconds against block size; kept apart from
            ``draft``, whose plane through 1, 2, ... steps says nothing about a round that runs no model.
    """

    draft: PlaneFit = field(default_factory=PlaneFit)
    verify: KnotFit = field(default_factory=KnotFit)
    lookup: LinearFit = field(default_factory=lambda: LinearFit(elasticity=0.0))

    def updated(self, stats: RoundStats, teach_draft: bool = True) -> CostModel:
        """The model after one more round.

        ``teach_draft=False`` keeps the round's drafting seconds out of the draft fit: the first
        model round after a stretch without one also encodes every token committed meanwhile (the
        whole prompt, at the start), which says nothing about the next round.
        """
        verify = self.verify.updated(stats.proposed + 1, stats.verify_s + stats.other_s)
        draft, lookup = self.draft, self.lookup
        if stats.proposer is Proposer.NGRAM:  # with or without a guess
            lookup = lookup.updated(stats.block_size, stats.draft_s)
        elif stats.proposer is Proposer.DIFFUSION and stats.proposed > 0 and teach_draft:
            draft = draft.updated(stats.denoising_steps_used, stats.block_size, stats.draft_s)
        return CostModel(draft=draft, verify=verify, lookup=lookup)

    def draft_many(self, steps: np.ndarray, blocks: np.ndarray, lookup: np.ndarray | bool = False) -> np.ndarray:
        """Predicted drafting seconds over broadcastable arrays of diffusion steps and blocks; where
        ``lookup`` (broadcastable bools) holds, the n-gram lookup's instead."""
        return np.where(lookup, self.lookup.predict_many(blocks), self.draft.predict_many(steps, blocks))

    def round_s(self, choice_proposer: Proposer, block_size: int, denoising_steps: float = 0.0) -> float:
        """Predicted seconds of a round drafting ``block_size`` tokens from ``choice_proposer``
        (PLAIN: plain decoding) with ``denoising_steps`` (the diffusion drafter's mean steps used)."""
        verify_s = self.verify.predict(block_size + 1)
        if choice_proposer is Proposer.PLAIN:
            return verify_s
        lookup = choice_proposer is Proposer.NGRAM
        return float(self.draft_many(denoising_steps, block_size, lookup)) + verify_s


# A seeded run's clock: nominal seconds, in units of one 1-token verifier forward, so that a policy
# that learns from seconds makes the same choices on every run (measured seconds never repeat).
# The ratios follow the pocket pair on a CPU: a denoising step about half a verifier forward, a
# verifier forward over K + 1 tokens slowly rising, the n-gram lookup nearly free.
NOMINAL_VERIFY = (1.0, 0.02)  # intercept, per extra token scored
NOMINAL_STEP, NOMINAL_DRAFT_TOKEN, NOMINAL_LOOKUP = 0.5, 0.005, 0.01


def nominal_seconds(stats: RoundStats) -> RoundStats:
    """``stats`` with its seconds replaced by the nominal clock's (a pure function of the round)."""
    verify = NOMINAL_VERIFY[0] + NOMINAL_VERIFY[1] * stats.proposed
    if stats.proposer is Proposer.DIFFUSION:
        draft = NOMINAL_STEP * stats.denoising_steps_used + NOMINAL_DRAFT_TOKEN * stats.block_size
    elif stats.proposer is Proposer.PLAIN:
        draft = 0.0
    else:
        draft = NOMINAL_LOOKUP
    return replace(stats, draft_s=draft, verify_s=verify, other_s=0.0)
