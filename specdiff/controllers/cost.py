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


@dataclass(frozen=True)
class NominalClock:
    """A seeded run's clock: nominal seconds, in units of one 1-token verifier forward, so that a
    policy that learns from seconds makes the same choices on every run (measured seconds never
    repeat). A pair carries its own (``SpeculativeDecoder(nominal_clock=...)``); the default's ratios
    follow the pocket pair on a CPU: a denoising step about half a verifier forward, a verifier
    forward over K + 1 tokens slowly rising, the n-gram lookup nearly free. A clock whose verify
    slope is far below the pair's real one makes a seeded policy draft blocks that do not pay: the
    smol pair in float32 (a forward over 8 / 16 tokens costs 1.73x / 2.23x a 1-token one, where the
    default clock says 1.14x / 1.30x) sampled at 0.7 ran chat at 0.91x plain decoding on the
    default clock, 1.13x on its own (``benchmarks/nominal_clock.py``).

    Attributes:
        verify_base, verify_per_token: a verifier forward, and each token it scores past the first.
        step, draft_token: a denoising step of the drafter, and its head per proposed token.
        lookup: an n-gram lookup round's drafting.
    """

    verify_base: float = 1.0
    verify_per_token: float = 0.02
    step: float = 0.5
    draft_token: float = 0.005
    lookup: float = 0.01

    def seconds(self, proposer: Proposer, steps_used: int, block_size: int, tokens: int,
                rows: int = 1) -> tuple[float, float]:
        """A round's nominal (drafting, verifying) seconds: ``tokens`` are what the verify slope prices
        in each row (a single row's draft tokens; a batch's tokens scored a row), ``rows`` the rows."""
        verify = self.verify_base + self.verify_per_token * rows * tokens
        if proposer is Proposer.DIFFUSION:
            return self.step * steps_used + self.draft_token * block_size * rows, verify
        return (0.0 if proposer is Proposer.PLAIN else self.lookup * rows), verify

    def __call__(self, stats: RoundStats) -> RoundStats:
        """``stats`` with its seconds replaced by the nominal ones (a pure function of the round)."""
        draft, verify = self.seconds(stats.proposer, stats.denoising_steps_used, stats.block_size, stats.proposed)
        return replace(stats, draft_s=draft, verify_s=verify, other_s=0.0)


nominal_seconds = NominalClock()  # the default clock, as a function of a round
