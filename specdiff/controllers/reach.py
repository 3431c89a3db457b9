"""The acceptance model: how far a block's draft is accepted, estimated from decayed counts.

Pure functions over count arrays; ``Adaptive`` keeps the counts (per regime, per drafting setting,
per draft position) and asks these for the expected committed tokens of every block size.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np


def block_grid(canvas_length: int) -> tuple[int, ...]:
    """The block sizes Adaptive weighs: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and 1.5x them)
    up to the canvas, and the canvas itself. A coarse grid, so neighbouring sizes cannot thrash."""
    sizes = {canvas_length}
    power = 1
    while power <= canvas_length:
        sizes.update(k for k in (power, power + power // 2) if k <= canvas_length)
        power *= 2
    return tuple(sorted(sizes))


def reach_estimates(reached: np.ndarray, proposed: np.ndarray, prior: float, strength: float) -> np.ndarray:
    """Smoothed chance that a block's first i + 1 draft tokens are all accepted, per drafting setting.

    Args:
        reached, proposed: ``[R, P]`` (decayed) counts per drafting setting r and draft position i:
            rounds that accepted positions 0..i, and rounds that proposed position i.
        prior: the chance assumed for position 0 before any count.
        strength: the prior's weight, in rounds.

    Returns:
        ``[R, P]``, non-increasing along P: estimates of P(positions 0..i all accepted).

    Why reach and not the chance of position i given the earlier ones: every round that proposes
    position i says whether it was reached, while the conditional is judged only after a run of
    acceptances, so deep positions would keep the stale evidence of a long-gone easy stretch.
    Counts are thin deep in the block and for settings tried a few times, so they are shrunk twice:
    pooled over settings (``pooled_reach``), then each setting toward the pooled estimate
    (``shrunk_reach``).
    """
    assert reached.shape == proposed.shape and reached.ndim == 2, "counts must be [R, P]"
    return shrunk_reach(reached, proposed, pooled_reach(reached.sum(0), proposed.sum(0), prior, strength), strength)


def pooled_reach(reached: np.ndarray, proposed: np.ndarray, prior: float, strength: float) -> np.ndarray:
    """``[P]``: reach estimates from counts ``[P]`` pooled over settings, position i shrunk toward
    position i - 1 times the last step's ratio (geometric extrapolation; position 0 toward ``prior``)."""
    depth = int(np.flatnonzero(proposed)[-1]) + 1 if proposed.any() else 0
    pooled = np.empty(len(proposed))  # [P]
    last, ratio = 1.0, prior  # the estimate of the position before, and its ratio to the one before that
    for i, (hit, tried) in enumerate(zip(reached[:depth].tolist(), proposed[:depth].tolist(), strict=True)):
        estimate = (hit + strength * last * ratio) / (tried + strength)
        estimate = last if estimate > last else estimate  # (not min(): this loop is the hot spot)
        ratio, last = (estimate / last if last > 0 else 0.0), estimate
        pooled[i] = estimate
    pooled[depth:] = extrapolate(last, ratio, len(proposed) - depth)
    return pooled


def shrunk_reach(reached: np.ndarray, proposed: np.ndarray, pooled: np.ndarray, strength: float) -> np.ndarray:
    """``[R, P]``: each setting's counts ``[R, P]`` shrunk toward the ``pooled`` estimates ``[P]``.

    Past the deepest position a setting proposed, the pooled counts describe other settings' drafts:
    the setting's own estimates are extrapolated instead (optimistic for a setting tried once, which
    then gets tried deeper), blended with the pooled ones by the row's evidence at its deepest
    position: counts faded to almost nothing leave a row at the pooled estimates, which its own
    extrapolation would otherwise stretch far past where the pooled evidence stops.
    """
    estimates = np.minimum.accumulate((reached + strength * pooled) / (proposed + strength), axis=1)
    row_depths = np.where(proposed.any(1), proposed.shape[1] - np.argmax(proposed[:, ::-1] > 0, axis=1), 0)
    for row, counts, row_depth in zip(estimates, proposed, row_depths.tolist(), strict=True):
        if 0 < row_depth < len(row):
            before = row[row_depth - 2] if row_depth >= 2 else 1.0
            row_ratio = row[row_depth - 1] / before if before > 0 else 0.0
            evidence = counts[row_depth - 1]
            own = extrapolate(row[row_depth - 1], row_ratio, len(row) - row_depth)
            blended = (evidence * own + strength * pooled[row_depth:]) / (evidence + strength)
            row[row_depth:] = np.minimum(blended, row[row_depth - 1])
    return estimates


def extrapolate(last: float, ratio: float, length: int) -> np.ndarray:
    """``[length]``: ``last * ratio ** (1..length)``, the reach of positions nobody proposed."""
    return last * ratio ** np.arange(1, length + 1)


def expected_committed(reach: np.ndarray) -> np.ndarray:
    """Expected tokens a round commits, per block size.

    Args:
        reach: ``[R, P]``, per setting the chance that draft positions 0..i are all accepted.

    Returns:
        ``[R, P + 1]``: column K is ``1 + sum_{i<K} reach_i``, the verifier's token plus the expected
        accepted tokens of a block of K (column 0: plain decoding, 1 token).
    """
    zeros = np.zeros((reach.shape[0], 1))
    return 1.0 + np.concatenate([zeros, np.cumsum(reach, axis=-1)], axis=-1)


def regime_of(accepted: int, proposed: int, edges: tuple[int, ...]) -> int:
    """The acceptance regime a drafting round leaves behind, ``2 * bucket + full``: the bucket of its
    accepted count by ``edges`` (ascending; 0 below ``edges[0]``, ..., ``len(edges)`` at or above
    ``edges[-1]``), and whether the whole block was accepted. A fully accepted short block is its
    own regime: its run of acceptances was cut by the block, not by the drafter, so it may be the
    start of a long one (a policy drafting short blocks would otherwise never see a long run)."""
    return 2 * bisect_right(edges, accepted) + int(accepted >= proposed)


class ReachCounts:
    """Decayed counts of how far drafts were accepted: per regime, drafting setting and position.

    Rows are ``regime * settings + setting``; column i counts rounds that proposed position i
    (``proposed``) and rounds whose accepted run reached past it (``reached``). ``families`` groups
    settings whose estimates pool together (one proposer's settings): a proposer borrowing another's
    reach would look as good as it at no cost once its own counts had faded.
    """

    def __init__(self, regimes: int, settings: int, positions: int, families: list[list[int]],
                 prior: float, strength: float) -> None:
        self.regimes, self.settings, self.positions = regimes, settings, positions
        self.families, self.prior, self.strength = families, prior, strength
        self.reached = np.zeros((regimes * settings, positions))
        self.proposed = np.zeros((regimes * settings, positions))

    def fade(self, keep: float) -> None:
        self.reached *= keep
        self.proposed *= keep

    def add(self, regime: int, setting: int, proposed: np.ndarray, reached: np.ndarray) -> None:
        """Count one round's evidence ``[n]`` (weights and expected reaches from position 0)."""
        row = regime * self.settings + setting
        n = min(len(proposed), self.positions)  # a round never drafts past the positions kept
        self.proposed[row, :n] += proposed[:n]
        self.reached[row, :n] += reached[:n]

    def add_run(self, regime: int, setting: int, judged: int, reach: int) -> None:
        """Count a run judged over positions ``0..judged-1``, reached up to ``reach``."""
        row = regime * self.settings + setting
        self.proposed[row, :judged] += 1.0
        self.reached[row, : min(reach, judged)] += 1.0

    def expected_tokens(self, regime: int) -> tuple[np.ndarray, np.ndarray]:
        """``[R, P + 1]`` expected committed tokens per setting and block size (0..P), twice: in
        ``regime``, and over every regime's counts together. Both shrink toward the estimates pooled
        over every regime and every setting of the same family, computed once per family."""
        settings, positions, strength = self.settings, self.positions, self.strength
        reached = self.reached.reshape(self.regimes, settings, positions)
        proposed = self.proposed.reshape(self.regimes, settings, positions)
        in_regime, overall = np.empty((settings, positions)), np.empty((settings, positions))
        for rows in self.families:
            family_reached, family_proposed = reached[:, rows].sum(0), proposed[:, rows].sum(0)  # [F, P]
            pooled = pooled_reach(family_reached.sum(0), family_proposed.sum(0), self.prior, strength)
            if self.regimes == 1:  # the one regime is every round (a batch's counts): one estimate is both
                in_regime[rows] = overall[rows] = shrunk_reach(family_reached, family_proposed, pooled, strength)
                continue
            # The regime's rows and the overall rows shrink toward the same estimates: one call.
            both = shrunk_reach(np.concatenate([reached[regime, rows], family_reached]),
                                np.concatenate([proposed[regime, rows], family_proposed]), pooled, strength)
            in_regime[rows], overall[rows] = both[: len(rows)], both[len(rows) :]
        return expected_committed(in_regime), expected_committed(overall)
