"""The cost model: what a round will take in wall-clock seconds, fitted online from measured rounds.

Two straight lines, each refitted after every round from the seconds in ``RoundStats``:

- drafting seconds against denoising steps used (the canvas length is fixed per drafter, and the
  block size barely matters: the drafter denoises the whole canvas whatever K is);
- verifying seconds, bookkeeping (``other_s``) included, against tokens scored, K + 1 (a plain
  decoding round scores 1).

Measured seconds drift (other processes share the machine, the KV cache grows), so the fits forget
old rounds exponentially. Everything here is pure: a fit is a frozen dataclass, ``updated`` returns
a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from specdiff.metrics import RoundStats

# Predictions never fall below this (seconds): a rate over a zero cost would be infinite.
MIN_SECONDS = 1e-6


@dataclass(frozen=True)
class LinearFit:
    """``y ~ intercept + slope * x`` by exponentially weighted least squares, one point at a time.

    The state is the decayed sufficient statistics (total weight and weighted sums of x, y, x*x,
    x*y). Until x has varied, the slope cannot be measured, so it shrinks toward a prior slope of
    ``elasticity * mean(y) / mean(x)``: elasticity 1 assumes y grows in proportion to x (drafting
    seconds per denoising step), 0 that y stays flat (verifying K tokens costs one forward on a
    parallel device). ``ridge`` is how much x-spread (weight * x^2) the data needs to outweigh it.

    Attributes:
        memory: about how many recent points the fit remembers (each update keeps ``1 - 1/memory``).
        elasticity, ridge: the slope prior, as above.
    """

    memory: float = 32.0
    elasticity: float = 0.0
    ridge: float = 0.1
    weight: float = 0.0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        assert self.memory >= 1.0, "memory must be >= 1 point"
        assert self.ridge > 0.0, "ridge must be > 0, or a fit without x-spread has no slope"

    @property
    def empty(self) -> bool:
        return self.weight == 0.0

    def updated(self, x: float, y: float) -> LinearFit:
        """The fit after one more point."""
        keep = 1.0 - 1.0 / self.memory
        return replace(
            self,
            weight=keep * self.weight + 1.0,
            sum_x=keep * self.sum_x + x,
            sum_y=keep * self.sum_y + y,
            sum_xx=keep * self.sum_xx + x * x,
            sum_xy=keep * self.sum_xy + x * y,
        )

    def coefficients(self) -> tuple[float, float]:
        """``(intercept, slope)``; ``(0, 0)`` before the first point."""
        if self.empty:
            return 0.0, 0.0
        mean_x, mean_y = self.sum_x / self.weight, self.sum_y / self.weight
        spread_xx = max(self.sum_xx - self.weight * mean_x * mean_x, 0.0)  # rounding can dip below 0
        spread_xy = self.sum_xy - self.weight * mean_x * mean_y
        prior_slope = self.elasticity * mean_y / mean_x if mean_x > 0 else 0.0
        # Costs never fall as x grows; a negative slope is timing noise.
        slope = max((spread_xy + self.ridge * prior_slope) / (spread_xx + self.ridge), 0.0)
        return mean_y - slope * mean_x, slope

    def predict(self, x: float) -> float:
        intercept, slope = self.coefficients()
        return max(intercept + slope * x, MIN_SECONDS)

    def predict_many(self, xs: np.ndarray) -> np.ndarray:
        """``predict`` over an array of any shape."""
        intercept, slope = self.coefficients()
        return np.maximum(intercept + slope * np.asarray(xs, dtype=float), MIN_SECONDS)


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of a round, from drafting and verifying fits.

    Attributes:
        draft: drafting seconds against denoising steps used.
        verify: verifying plus bookkeeping seconds against tokens scored (block size + 1).
    """

    draft: LinearFit = field(default_factory=lambda: LinearFit(elasticity=1.0))
    verify: LinearFit = field(default_factory=lambda: LinearFit(elasticity=0.0))

    def updated(self, stats: RoundStats, teach_draft: bool = True) -> CostModel:
        """The model after one more round.

        ``teach_draft=False`` keeps the round's drafting seconds out of the draft fit: the first
        round that drafts after a stretch without drafting also encodes every token committed
        meanwhile (the whole prompt, at the start), which says nothing about the next round.
        """
        verify = self.verify.updated(stats.proposed + 1, stats.verify_s + stats.other_s)
        draft = self.draft
        if stats.proposed > 0 and teach_draft:
            draft = draft.updated(stats.denoising_steps_used, stats.draft_s)
        return CostModel(draft=draft, verify=verify)

    def round_s(self, block_size: int, denoising_steps: float) -> float:
        """Predicted seconds of a round drafting ``block_size`` tokens (0: plain decoding)."""
        verify_s = self.verify.predict(block_size + 1)
        if block_size == 0:
            return verify_s
        return self.draft.predict(denoising_steps) + verify_s
