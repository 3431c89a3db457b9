"""The cut: after a block is drafted, verify only the leading tokens worth their verify cost.

Each position's chance of acceptance comes from the proposer's confidence there (its largest
probability), through counts per confidence bin. The cut sees only the proposer's distributions,
never the tokens drawn from them or the verifier, so every kept token's acceptance test stays exact.
"""

from __future__ import annotations

import numpy as np

# Bins of the drafter's confidence (its largest probability at a position) for the cut's
# acceptance model. Measured on the pocket pair (code suite, block 64, 1 step, greedy;
# ``benchmarks/round_costs.py``), the chance that a position is accepted once the ones before it
# were, per bin: 0.25, 0.52, 0.69, 0.82, 0.88, 0.96, 0.95, 1.00: the confidence is close to
# calibrated, and fine enough to rank where to stop.
CONFIDENCE_EDGES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def confidence_bins(confidence: np.ndarray, edges: tuple[float, ...] = CONFIDENCE_EDGES) -> np.ndarray:
    """``[K]`` int: the bin of each position's confidence (0 below ``edges[0]``, ..., ``len(edges)``)."""
    return np.searchsorted(np.asarray(edges), confidence, side="right")


def bin_midpoints(edges: tuple[float, ...] = CONFIDENCE_EDGES) -> np.ndarray:
    """``[len(edges) + 1]``: each confidence bin's middle, the acceptance a calibrated drafter has there."""
    bounds = np.array([0.0, *edges, 1.0])
    return (bounds[:-1] + bounds[1:]) / 2


# The calibration's prior: each bin's middle, the acceptance of a perfectly calibrated drafter.
CALIBRATED = bin_midpoints()


def best_cut(accept: np.ndarray, draft_s: float, verify_s: np.ndarray) -> int:
    """The number of leading draft tokens worth verifying: the most expected tokens per second.

    Args:
        accept: ``[K]``, the chance that position i is accepted once positions 0..i-1 were.
        draft_s: the round's drafting seconds (spent whatever the cut; it weighs the verify cost).
        verify_s: ``[K + 1]``, predicted seconds to verify a block of k tokens (k + 1 scored), k = 0..K.

    Returns:
        k in 1..K maximising ``(1 + sum_{i<k} prod_{j<=i} accept_j) / (draft_s + verify_s[k])``.
    """
    assert verify_s.shape == (accept.shape[0] + 1,), "verify_s must be [K + 1]"
    expected = 1.0 + np.concatenate([[0.0], np.cumsum(np.cumprod(accept))])  # [K + 1]
    rate = expected[1:] / (draft_s + verify_s[1:])  # [K], for k = 1..K
    return int(np.argmax(rate)) + 1


class Calibration:
    """Decayed counts per confidence bin: positions judged, and how many were accepted."""

    def __init__(self, memory: float, strength: float, edges: tuple[float, ...] = CONFIDENCE_EDGES) -> None:
        self.memory, self.strength, self.edges = memory, strength, edges
        self.hit = np.zeros(len(edges) + 1)
        self.tried = np.zeros(len(edges) + 1)

    @property
    def seen(self) -> bool:
        """Whether any draft has shown its confidence yet."""
        return bool(self.tried.any())

    def chances(self) -> np.ndarray:
        """``[bins]``: the estimated chance that a position in each bin is accepted once the
        positions before it were (the counts, shrunk toward the bin's middle)."""
        return (self.hit + self.strength * CALIBRATED) / (self.tried + self.strength)

    def accept(self, confidence: np.ndarray) -> np.ndarray:
        """``[K]``: each position's calibrated chance, from the confidence ``[K]`` there."""
        return self.chances()[confidence_bins(confidence, self.edges)]

    def observe(self, confidence: np.ndarray, proposed: int, accepted: int) -> None:
        """Count the positions a round judged (0..accepted): hits up to the first rejection, a miss."""
        assert len(confidence) >= proposed, "the round verified at most the block the cut saw"
        keep = 1.0 - 1.0 / self.memory
        self.hit *= keep
        self.tried *= keep
        accepted = min(accepted, proposed)
        judged = confidence_bins(confidence[: min(accepted + 1, proposed)], self.edges)
        np.add.at(self.tried, judged, 1.0)
        np.add.at(self.hit, judged[:accepted], 1.0)
