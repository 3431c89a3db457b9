"""Controllers: small policies that pick each round's block size and denoising steps.

A controller sees every finished round's ``RoundStats`` through ``observe`` and answers ``choose``
before the next round. A choice with ``block_size == 0`` means "no draft this round": the verifier
decodes one token alone (plain decoding). A controller may also have ``cut``: once a block is
drafted, the decoder shows it the drafter's confidence in each position and verifies only the
leading tokens it keeps (``RoundStats.block_size`` is the block chosen, ``proposed`` what was kept).
A choice of 0 denoising steps drafts from the drafter's context lookup without running its model
(only for a drafter that has one: ``reset`` is told the fewest steps the drafter runs).

Policies: ``Fixed`` (the same choice every round), ``Heuristic`` (transformers' +2/-1 schedule) and
``Adaptive`` (the decoder's default: expected committed tokens per second from an acceptance model
and a cost model fitted online, see ``specdiff.cost``). A controller only picks sizes; which tokens
are committed is the acceptance rule's business, so no policy can change the output.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from specdiff.cost import CostModel
from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats


@dataclass(frozen=True)
class Choice:
    """What the next round runs: ``block_size`` draft tokens from ``denoising_steps`` steps."""

    block_size: int
    denoising_steps: int
    recycle_canvas: bool = False


class Controller(Protocol):
    def reset(self, canvas_length: int, min_steps: int = 1) -> None:
        """Called at the start of each generation with the drafter's canvas length and the fewest
        denoising steps it can run (0: it can propose its context lookup's guess without denoising)."""

    def choose(self) -> Choice:
        """The next round's block size and denoising steps."""

    def observe(self, stats: RoundStats) -> None:
        """Learn from a finished round."""

    # Optional (the decoder calls it when a controller has it and the draft carries confidence):
    # def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
    #     """How many of the drafted block's leading tokens to verify (1..K), from the drafter's
    #     confidence ``[K]`` in each position; called between ``choose`` and ``observe``."""


def check_block_and_steps(block_size: int, denoising_steps: int, canvas_length: int, min_steps: int = 1) -> None:
    """Refuse a block size or step count the drafter cannot run, naming the fix."""
    if not 1 <= block_size <= canvas_length:
        raise SpecdiffError(
            f"block_size must be between 1 and the drafter's canvas length {canvas_length} "
            f"(got {block_size}); pick a block size in that range"
        )
    check_steps(denoising_steps, min_steps)


def check_steps(denoising_steps: int, min_steps: int = 1, name: str = "denoising_steps") -> None:
    """Refuse a step count below 0, or 0 (the context lookup's guess) for a drafter without a lookup
    (``min_steps`` 1); ``name`` is what the message calls the value (an option's flag, say)."""
    if denoising_steps == 0 and min_steps > 0:
        raise SpecdiffError(
            f"{name} 0 proposes the drafter's context lookup guess, and this drafter has no "
            "context lookup; use 1 or more steps, or a diffusion drafter with context_seed on"
        )
    if denoising_steps < 0:
        raise SpecdiffError(f"{name} must be >= 0 (got {denoising_steps})")


@dataclass
class Fixed:
    """The same block size and denoising steps every round."""

    block_size: int = 16
    denoising_steps: int = 1
    recycle_canvas: bool = False

    def reset(self, canvas_length: int, min_steps: int = 1) -> None:
        check_block_and_steps(self.block_size, self.denoising_steps, canvas_length, min_steps)

    def choose(self) -> Choice:
        return Choice(self.block_size, self.denoising_steps, self.recycle_canvas)

    def observe(self, stats: RoundStats) -> None:
        del stats  # a fixed policy learns nothing


@dataclass
class Heuristic:
    """transformers' assisted-decoding schedule: +2 after a fully accepted block, -1 otherwise.

    The block size starts at ``start_block_size`` (transformers' ``num_assistant_tokens`` default,
    20) at every generation and stays within 1..canvas; the denoising steps never change.
    """

    start_block_size: int = 20
    denoising_steps: int = 1
    recycle_canvas: bool = False
    block_size: int = field(default=0, init=False)
    canvas_length: int = field(default=0, init=False)

    def reset(self, canvas_length: int, min_steps: int = 1) -> None:
        check_block_and_steps(1, self.denoising_steps, canvas_length, min_steps)
        if self.start_block_size < 1:
            raise SpecdiffError(f"start_block_size must be >= 1 (got {self.start_block_size})")
        self.canvas_length = canvas_length
        self.block_size = min(self.start_block_size, canvas_length)

    def choose(self) -> Choice:
        return Choice(self.block_size, self.denoising_steps, self.recycle_canvas)

    def observe(self, stats: RoundStats) -> None:
        if stats.proposed == 0:  # the last token of an output is never drafted: nothing to learn
            return
        step = 2 if stats.fully_accepted else -1
        self.block_size = min(max(self.block_size + step, 1), self.canvas_length)


# -- Adaptive: pure helpers ------------------------------------------------------------------------


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


PLAIN = Choice(0, 1)

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


def regime_of(accepted: int, proposed: int, edges: tuple[int, ...]) -> int:
    """The acceptance regime a drafting round leaves behind, ``2 * bucket + full``: the bucket of its
    accepted count by ``edges`` (ascending; 0 below ``edges[0]``, ..., ``len(edges)`` at or above
    ``edges[-1]``), and whether the whole block was accepted. A fully accepted short block is its
    own regime: its run of acceptances was cut by the block, not by the drafter, so it may be the
    start of a long one (a policy drafting short blocks would otherwise never see a long run)."""
    return 2 * bisect_right(edges, accepted) + int(accepted >= proposed)


@dataclass
class Adaptive:
    """Picks the block size, denoising steps and canvas recycling that maximise expected committed
    tokens per second, learnt while generating; falls back to plain decoding when nothing beats it.

    Per round it predicts, for every drafting setting (denoising steps x recycling) and block size
    K on ``block_grid``: expected committed tokens (``expected_committed`` of ``reach_estimates``)
    over predicted seconds (``specdiff.cost.CostModel``), and compares the best with
    plain decoding, 1 token per predicted plain-round seconds.

    - Regimes: acceptance comes in stretches (a loop, a passage the context already holds), so
      the rounds after a long acceptance accept far more than those after a short one (pocket
      pair, code suite, block 64: 26 draft tokens on average after a round that accepted 16 or
      more, 6.4 after 4-15, 3.6 after 1-3). The acceptance counts, and the current choice, are
      kept per regime (``regime_of``): the bucket of the last drafted round's accepted count by
      ``regime_edges``, and whether it accepted its whole block (a generation's first round has
      a regime of its own). Each regime's estimates shrink toward the ones pooled over every
      regime, so a rare regime borrows until it has data.
    - Warm-up: the first rounds follow a fixed schedule that measures a second step count, a
      smaller block and a plain round, so both cost fits have slope and intercept.
    - Exploration: every ``explore_every`` rounds a neighbour of the current choice runs once
      (a grid step up or down in K or steps, or recycling toggled), in a fixed rotation.
      Deterministic: the policy has no randomness and never touches the decode generator.
    - Hysteresis: the choice changes only when the best beats the current by ``hysteresis``;
      speculation resumes from plain decoding only when it beats plain by that margin.
    - The context lookup (0 steps, where the drafter has one): a drafting setting like the others,
      with its own cost line (``CostModel.lookup``) and its own pooled acceptance estimates (it
      is another drafter: ``_expected_tokens``). It sends no confidence, so it is never cut; a
      lookup block accepted whole still doubles the next (``escalate``: its deep positions are
      otherwise only ever seen through short blocks). A lookup round that found no guess proposed
      nothing and counts as a miss at position 0. The warm-up measures it in its third round
      instead of a second step count. Every model round also reports how far the lookup's guess (its canvas seed) went
      against what the round committed (``RoundStats.lookup_reach``), counted as lookup evidence
      (``_count_lookup``), so a few early failed lookup rounds do not keep the policy off it. On
      the pocket pair the lookup's guess reaches about as far as the denoised draft (its verifier
      loops) for 0.3 ms instead of 10-14 ms, and Adaptive drafts from it most rounds
      (``benchmarks/controller_replay.py``).
    - Fall-back: when no choice beats plain decoding, rounds run plain; after ``probe_after`` plain
      rounds one probe round drafts with the best choice; each failed probe doubles the wait (up
      to ``max_probe_after``), a successful one resumes speculation.
    - The cut (``cut_on_confidence``): once a block is drafted, only its leading tokens worth
      verifying are verified (``best_cut``): each position's chance of acceptance comes from the
      drafter's confidence there (``Draft.confidence``), through counts per confidence bin
      (``CONFIDENCE_EDGES``; the prior is a calibrated drafter, each bin's middle), and the cut
      maximises expected tokens per predicted second of the round. The block chosen before
      drafting follows the stretch (the regime); the cut follows the draft itself. Warm-up and
      probe rounds are not cut (they are measurements), nor are drafts without confidence. What
      the cut drops still teaches the acceptance counts (``_reach_counts``), and a block the
      verifier accepted whole, uncut, doubles the next round's block (``escalate``): the run went
      past the block, and only a longer block can show how far. The
      block is still chosen before drafting, not left to the cut: drafting the whole canvas every
      round and cutting it was slower on the pocket pair, because the drafter's LM head runs over
      the block (one thread, in the decode loop: 17.1 ms a round drafting 64 tokens, 14.2 ms
      drafting 16; ``benchmarks/round_costs.py``).

    Compute: weighing every choice (the acceptance estimates of every setting and block, the cost
    model's predictions) is most of the policy's own time, and a context-lookup round on the
    pocket pair's CPU takes only about 25 ms, so the current regime's choice is re-weighed every
    ``decide_every`` rounds, and at once on entering a regime or after a probe (the counts move by
    a sixteenth a round and a change needs a 10% gain, ``hysteresis``). Every 4 rounds halved the
    policy's time in the decode loop (0.83 -> 0.43 ms a round in a throwaway timing, with the
    verify curve's knots refitted only when predicted from; ``benchmarks/controller_replay.py``
    prints the current figure, 0.48-0.53 ms); replayed over 8 orders of each suite's prompts (a
    throwaway script) it was within 1.5% of deciding every round.

    Only the first generation warms up. Later ones on the same drafter start from what the earlier
    ones learnt: the cost fits (same hardware, same models) and the acceptance counts, faded, since
    acceptance depends on the prompt.
    """

    start_block_size: int = 16
    # 0: the drafter's context lookup guess, undenoised (only with a drafter that has one).
    steps_options: tuple[int, ...] = (0, 1, 2, 4, 8)
    # Canvas recycling lowered acceptance on the pocket pair (benchmarks/controller_bench.py), so
    # it is off unless asked for: (False, True) lets the policy learn whether it pays.
    recycle_options: tuple[bool, ...] = (False,)
    # Each exploration round is a worse choice run on purpose (a step up doubles the drafting):
    # one in 32 rounds replayed 6% faster than one in 16 on the pocket pair's code suite, 1% on
    # functions, the same on prose (benchmarks/controller_replay.py's ablation row, one run).
    explore_every: int = 32
    hysteresis: float = 0.1
    probe_after: int = 8
    max_probe_after: int = 64
    memory: float = 16.0
    prior_acceptance: float = 0.5
    prior_strength: float = 2.0
    # One edge: finer buckets (1, 4, 16) won no more on the pocket pair's suites and, with fewer
    # rounds each, let a regime's choice wander (tests/test_controller.py, thrashing).
    regime_edges: tuple[int, ...] = (16,)  # (): no buckets (the whole-block flag still splits)
    cut_on_confidence: bool = True
    # Calibration is a property of the drafter and the verifier, not of the prompt: a long memory, in rounds.
    calibration_memory: float = 256.0
    # A block accepted whole (a model draft's while the cut is on, a lookup draft's always): the
    # next round drafts at least twice as far.
    escalate: bool = True
    # Rounds between re-weighings of the current regime's choice (entering a regime, or a probe,
    # decides at once): see the class docstring, "Compute".
    decide_every: int = 4

    def __post_init__(self) -> None:
        if not self.steps_options or min(self.steps_options) < 0:
            raise SpecdiffError(f"steps_options must be non-empty, each >= 0 (got {self.steps_options})")
        if not self.recycle_options:
            raise SpecdiffError("recycle_options must name at least one of False, True")
        if self.start_block_size < 1 or self.explore_every < 2:
            raise SpecdiffError("Adaptive needs start_block_size >= 1 and explore_every >= 2")
        if not 1 <= self.probe_after <= self.max_probe_after:
            raise SpecdiffError("Adaptive needs 1 <= probe_after <= max_probe_after")
        if list(self.regime_edges) != sorted(set(self.regime_edges)) or min(self.regime_edges, default=1) < 1:
            raise SpecdiffError(f"regime_edges must be ascending distinct counts >= 1 (got {self.regime_edges})")
        if self.decide_every < 1:
            raise SpecdiffError(f"decide_every must be >= 1 round (got {self.decide_every})")
        if self.calibration_memory < 1:
            raise SpecdiffError(f"calibration_memory must be >= 1 round (got {self.calibration_memory})")
        # Regimes: one per bucket of the last drafted round's accepted count and whole-block flag
        # (``regime_of``), and one for a generation's start (nothing drafted yet), the last index.
        self.regimes = 2 * (len(self.regime_edges) + 1) + 1
        self.fresh = self.regimes - 1
        self.settings: list[tuple[int, bool]] = []  # set by reset: it depends on the drafter
        self.min_steps = -1
        self.cost = CostModel()
        self.canvas_length = 0
        self.warmed_up = False

    # -- the protocol ------------------------------------------------------------------------------

    def reset(self, canvas_length: int, min_steps: int = 1) -> None:
        check_block_and_steps(1, 1, canvas_length)
        if canvas_length != self.canvas_length or min_steps != self.min_steps or not self.warmed_up:
            # The first generation (or another drafter): learn everything afresh, after a warm-up.
            self.canvas_length, self.min_steps = canvas_length, min_steps
            # Drafting settings, the rows R of the acceptance counts: (denoising steps, recycle
            # canvas); 0 steps (the context lookup) only where the drafter offers it, and never
            # recycled (a lookup has no canvas to recycle).
            steps = sorted(s for s in set(self.steps_options) if s >= min_steps)
            if not steps:
                raise SpecdiffError(
                    f"none of Adaptive's steps_options {self.steps_options} can run on this drafter "
                    f"(fewest steps it runs: {min_steps}); add a step count of {max(min_steps, 1)} or more"
                )
            recycles = list(dict.fromkeys(self.recycle_options))
            self.settings = [(s, r) for s in steps for r in (recycles if s > 0 else [False])]
            # Rows whose estimates pool together (``_expected_tokens``): the lookup's, the model's.
            self.lookup_row = 0 if steps[0] == 0 else None
            self.families = [rows for rows in ([i for i, (s, _) in enumerate(self.settings) if s == 0],
                                               [i for i, (s, _) in enumerate(self.settings) if s > 0]) if rows]
            self.cost = CostModel()
            self.grid = np.array(block_grid(canvas_length))  # [G]
            # [S * R, P]: row regime * R + setting, column draft position.
            shape = (self.regimes * len(self.settings), canvas_length)
            self.reached, self.proposed = np.zeros(shape), np.zeros(shape)
            self.steps_used = np.array([float(s) for s, _ in self.settings])  # [R] mean steps per cap
            self.warmup = self._warmup_schedule()
            self.choices = [self.warmup[0]] * self.regimes  # the current choice per regime
            # [bins]: (decayed) positions judged per confidence bin, and how many were accepted.
            self.calibration_hit = np.zeros(len(CONFIDENCE_EDGES) + 1)
            self.calibration_tried = np.zeros(len(CONFIDENCE_EDGES) + 1)
        else:
            # The same drafter again: the costs carry over, and so do the acceptance counts, faded
            # as if ``memory`` rounds had passed, a prior that the new prompt's rounds soon outweigh.
            fade = (1.0 - 1.0 / self.memory) ** self.memory
            self.reached *= fade
            self.proposed *= fade
            self.warmup = []
        self.rounds_seen = 0
        self.since_decision = 0  # rounds since the current regime's choice was last weighed
        self.regime = self.fresh
        if self.warmed_up:
            # Only the start of a generation is in the fresh regime, so its choice is made here, from
            # the first rounds of earlier generations and (through the shrinkage) everything else.
            self.current = self._best(*self._expected_tokens())[0]
        self.drafted_last = False  # the first draft encodes the prompt: keep it out of the cost fit
        self.probing = False
        self.binding = 0
        self.probe_interval = self.probe_after
        # A new prompt is a natural time to probe: plain decoding left over from the last one
        # starts with a probe round.
        self.plain_streak = self.probe_interval
        self.explore_turn = 0
        self.last_confidence: np.ndarray | None = None  # [K]: the confidence the last cut saw, whole block

    def choose(self) -> Choice:
        if self.rounds_seen < len(self.warmup):
            return self.warmup[self.rounds_seen]
        if self.current.block_size == 0:
            if self.plain_streak < self.probe_interval:
                return PLAIN
            # A probe is a measurement: it drafts at least the starting block, so that one fully
            # accepted round can show that drafting pays again.
            self.probing = True
            best = self._best(*self._expected_tokens())[0]
            return replace(best, block_size=max(best.block_size, min(self.start_block_size, self.canvas_length)))
        if (self.rounds_seen - len(self.warmup)) % self.explore_every == self.explore_every - 1:
            return self._neighbour()
        lookup = self.current.denoising_steps == 0
        if self.escalate and self.binding and (lookup or self._cutting()):
            # The last round's whole block was accepted, so its run went on past the block: how
            # far is censored, and only a longer block can tell. With the cut guarding what is
            # verified, drafting further costs only the drafter's wider LM head; a lookup draft
            # is free to widen and only its verify grows (replayed 2-3% faster than without
            # escalation on code and functions: benchmarks/controller_replay.py's ablation row).
            return replace(self.current, block_size=max(self.current.block_size,
                                                        min(2 * self.binding, self.canvas_length)))
        return self.current

    def _cutting(self) -> bool:
        """Whether drafts are being cut: the cut is on and the drafter has shown its confidence."""
        return self.cut_on_confidence and bool(self.calibration_tried.any())

    def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
        """How many leading tokens of a drafted block to verify (``best_cut``), from the drafter's
        confidence ``[K]`` in each position; the whole block when this round is not cut."""
        kept = len(confidence)
        # Warm-up and probe rounds are measurements: kept whole.
        if self.cut_on_confidence and self.rounds_seen >= len(self.warmup) and not self.probing:
            accept = self.calibration()[confidence_bins(confidence)]  # [K]
            verify_s = self.cost.verify.predict_many(np.arange(1, kept + 2))  # [K + 1]: k + 1 tokens scored
            kept = best_cut(accept, self.cost.draft.predict(denoising_steps_used, kept), verify_s)
        self.last_confidence = confidence  # the whole block's: observe judges the kept part, imputes the rest
        return kept

    def calibration(self) -> np.ndarray:
        """``[bins]``: the estimated chance that a position in each confidence bin is accepted once
        the positions before it were (the counts, shrunk toward the bin's middle)."""
        strength = self.prior_strength
        return (self.calibration_hit + strength * CALIBRATED) / (self.calibration_tried + strength)

    def observe(self, stats: RoundStats) -> None:
        keep = 1.0 - 1.0 / self.memory
        # Every round with a block asked the drafter. One that proposed nothing (a lookup round
        # without a guess) teaches that the lookup offers nothing here (position 0 not reached).
        drafted = stats.block_size > 0
        self.cost = self.cost.updated(stats, teach_draft=self.drafted_last)
        # Only a round that ran the model encoded the committed tokens: after any other, the next
        # model round also encodes what was committed meanwhile, so its seconds stay out of the fit.
        self.drafted_last = stats.denoising_steps_used > 0
        # Evidence goes stale with time, for every setting: one not tried lately must not keep the
        # estimates of a long-gone easy stretch, and after a plain stretch a probe must count.
        self.reached *= keep
        self.proposed *= keep
        if drafted:
            r = self._setting_index(stats.denoising_steps, stats.canvas_recycled)
            row = self.regime * len(self.settings) + r
            proposed, reached = self._reach_counts(stats)
            n = min(len(proposed), self.canvas_length)  # a round never drafts past the canvas
            self.proposed[row, :n] += proposed[:n]
            self.reached[row, :n] += reached[:n]
            if stats.denoising_steps > 0 and stats.lookup_reach >= 0 and self.lookup_row is not None:
                self._count_lookup(stats)
            self.steps_used[r] = keep * self.steps_used[r] + (1.0 - keep) * stats.denoising_steps_used
            self._calibrate(stats)
            # The block accepted whole, uncut: the run was stopped by the block, not the drafter.
            self.binding = stats.block_size if stats.accepted >= stats.proposed == stats.block_size else 0
            regime = regime_of(min(stats.accepted, stats.proposed), max(stats.proposed, 1), self.regime_edges)
            entered, self.regime = regime != self.regime, regime
            self.plain_streak = 0  # plain rounds are counted since the last draft
        else:
            entered = False
            self.plain_streak += 1  # no draft, no news: the regime stays
        self.last_confidence = None
        probed, self.probing = self.probing, False
        self.rounds_seen += 1
        if self.warmup and self.rounds_seen == len(self.warmup):  # warm-up over: start from its first choice
            self.choices = [self.warmup[0]] * self.regimes
            self.plain_streak, self.warmed_up = 0, True
        if self.rounds_seen >= len(self.warmup):
            self.since_decision += 1
            if probed or entered or self.since_decision >= self.decide_every or self.rounds_seen == len(self.warmup):
                self.current = self._decide(probed, entered)
                self.since_decision = 0

    @property
    def current(self) -> Choice:
        """The current regime's choice."""
        return self.choices[self.regime]

    @current.setter
    def current(self, choice: Choice) -> None:
        self.choices[self.regime] = choice

    # -- the model ---------------------------------------------------------------------------------

    def _warmup_schedule(self) -> list[Choice]:
        """Two rounds at the fewest model steps; one at the cheapest other setting: the context
        lookup (0 steps) where the drafter has one, else the next step count (the draft fit's slope
        in steps, which otherwise keeps its prior, proportional to steps, until an exploration
        round measures it); a small block and a plain round (the verify fit's slope)."""
        k = min(self.start_block_size, self.canvas_length)
        steps = sorted({s for s, _ in self.settings})
        model_steps = [s for s in steps if s > 0] or steps
        s0, r0 = model_steps[0], next(r for s, r in self.settings if s == model_steps[0])
        schedule = [Choice(k, s0, r0), Choice(k, s0, r0)]
        if steps[0] == 0 and s0 > 0:
            schedule.append(Choice(k, 0, False))
        elif len(model_steps) > 1:
            schedule.append(Choice(k, model_steps[1], r0))
        return [*schedule, Choice(max(1, k // 4), s0, r0), PLAIN]

    def _calibrate(self, stats: RoundStats) -> None:
        """Count the positions this round judged (0..accepted) by confidence bin: all hits up to the
        first rejection, which is a miss."""
        confidence = self.last_confidence
        if confidence is None:
            return  # no confidence came with this draft
        assert len(confidence) >= stats.proposed, "the round verified at most the block the cut saw"
        confidence = confidence[: stats.proposed]
        keep = 1.0 - 1.0 / self.calibration_memory
        self.calibration_hit *= keep
        self.calibration_tried *= keep
        accepted = min(stats.accepted, stats.proposed)
        judged = confidence_bins(confidence[: min(accepted + 1, stats.proposed)])
        np.add.at(self.calibration_tried, judged, 1.0)
        np.add.at(self.calibration_hit, judged[:accepted], 1.0)

    def _reach_counts(self, stats: RoundStats) -> tuple[np.ndarray, np.ndarray]:
        """What a drafted round says about reaching each position of the block drafted: ``[cap]``
        weights of evidence and ``[cap]`` (expected) reaches, cap the block before any cut.

        Without a cut every drafted position is judged: reached up to the first rejection. A cut
        hides the dropped positions, and how depends on the verdict. A rejection inside the kept
        prefix means no later position was reached, dropped ones included: they count as misses
        (leaving them out biases the deep positions toward the rounds the cut left whole, the
        confident ones, and the block chosen before drafting drifts large). A fully accepted
        prefix leaves the dropped positions unknown: each counts by its calibrated chance of being
        reached, the running product of the calibration over the dropped positions' confidences.
        """
        accepted = min(stats.accepted, stats.proposed)
        confidence = self.last_confidence
        cap = max(stats.proposed, 1) if confidence is None else len(confidence)  # 1: a lookup without a guess
        proposed, reached = np.ones(cap), np.zeros(cap)
        reached[:accepted] = 1.0
        if confidence is not None and accepted == stats.proposed < cap:
            reached[accepted:] = np.cumprod(self.calibration()[confidence_bins(confidence[accepted:])])
        return proposed, reached

    def _count_lookup(self, stats: RoundStats) -> None:
        """What the context lookup's guess would have done in a round the model drafted: the
        committed tokens judge its first positions (reached up to the first mismatch; past the
        committed tokens nothing is known)."""
        row = self.regime * len(self.settings) + self.lookup_row
        judged = min(stats.lookup_reach + 1, stats.committed, self.canvas_length)
        self.proposed[row, :judged] += 1.0
        self.reached[row, : min(stats.lookup_reach, judged)] += 1.0

    def _setting_index(self, steps: int, recycled: bool) -> int:
        # The nearest setting: a step count outside steps_options (a round the policy did not pick)
        # still teaches the closest one.
        return min(range(len(self.settings)),
                   key=lambda r: (abs(self.settings[r][0] - steps), self.settings[r][1] != recycled))

    def _expected_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """``[R, P + 1]`` expected committed tokens per drafting setting and block size (0..P), twice:
        in the current regime, and over every regime's counts together. Both shrink toward the
        estimates pooled over every regime and every setting of the same family, computed once per
        family: the model's settings (1+ steps) pool together, while the context lookup (0 steps)
        pools only with itself. It is another drafter, and borrowing the model's reach made a
        lookup that failed look as good as the model at no cost once its own counts had faded, so
        it was retried every few rounds."""
        settings, positions, strength = len(self.settings), self.canvas_length, self.prior_strength
        reached = self.reached.reshape(self.regimes, settings, positions)
        proposed = self.proposed.reshape(self.regimes, settings, positions)
        regime, overall = np.empty((settings, positions)), np.empty((settings, positions))
        for rows in self.families:
            family_reached, family_proposed = reached[:, rows].sum(0), proposed[:, rows].sum(0)  # [F, P]
            pooled = pooled_reach(family_reached.sum(0), family_proposed.sum(0), self.prior_acceptance, strength)
            # The regime's rows and the overall rows shrink toward the same estimates: one call.
            both = shrunk_reach(np.concatenate([reached[self.regime, rows], family_reached]),
                                np.concatenate([proposed[self.regime, rows], family_proposed]), pooled, strength)
            regime[rows], overall[rows] = both[: len(rows)], both[len(rows) :]
        return expected_committed(regime), expected_committed(overall)

    def round_seconds(self) -> np.ndarray:
        """``[R, G]`` predicted seconds of a round per drafting setting and grid block size."""
        draft_s = self.cost.draft_many(self.steps_used[:, None], self.grid[None, :])  # [R, G]
        return draft_s + self.cost.verify.predict_many(self.grid + 1)[None, :]

    def plain_rate(self) -> float:
        return 1.0 / self.cost.round_s(0, 0)

    def _rate(self, choice: Choice, tokens: np.ndarray) -> float:
        r = self._setting_index(choice.denoising_steps, choice.recycle_canvas)
        return float(tokens[r, choice.block_size] / self.cost.round_s(choice.block_size, self.steps_used[r]))

    def _best(self, tokens: np.ndarray, overall: np.ndarray) -> tuple[Choice, float]:
        """The best choice in the current regime, and its predicted rate, from the regime's and the
        overall expected tokens (``_expected_tokens``).

        The drafting setting is picked on every regime's counts together and only the block size on
        the regime's: how steps and recycling change a draft is the drafter's trait, while a regime's
        few rounds at a rarely tried setting are mostly noise (a lucky fully accepted exploration
        round at 2 steps made the pocket pair's hot regime draft at twice the cost for no gain).
        So is whether to run the model at all or copy the context lookup's guess (0 steps): picking
        it per regime replayed within 0.5% of it on each suite (averaged over 8 prompt orders; a
        throwaway script) once model rounds report the lookup's reach, so the simpler rule stays.
        """
        seconds = self.round_seconds()  # [R, G]
        rates = tokens[:, self.grid] / seconds  # [R, G]: predicted committed tokens per second
        r = int(np.argmax((overall[:, self.grid] / seconds).max(1))) if len(self.settings) > 1 else 0
        g = int(np.argmax(rates[r]))
        steps, recycle = self.settings[r]
        return Choice(int(self.grid[g]), steps, recycle), float(rates[r, g])

    def _decide(self, probed: bool, entered: bool) -> Choice:
        """The current regime's next choice, after a probe round, a round that entered this regime,
        or any other round."""
        if self.current.block_size == 0 and not (probed or entered):
            return PLAIN  # a plain round says nothing new about drafting (and this keeps it cheap)
        tokens, overall = self._expected_tokens()
        best, best_rate = self._best(tokens, overall)
        plain = self.current.block_size == 0
        # Hysteresis guards leaving plain decoding too, so that a marginal regime does not flap.
        if best_rate < self.plain_rate() * (1.0 + self.hysteresis if plain else 1.0):
            if probed:  # a failed probe: wait twice as long for the next
                self.probe_interval = min(2 * self.probe_interval, self.max_probe_after)
            self.plain_streak = 0
            return PLAIN
        if plain:
            self.probe_interval = self.probe_after
            return best
        if best_rate > self._rate(self.current, tokens) * (1.0 + self.hysteresis):
            return best
        return self.current

    def _neighbour(self) -> Choice:
        """The next exploration move in a fixed rotation: K up, recycling, steps up, K down, steps down."""
        k, s, r = self.current.block_size, self.current.denoising_steps, self.current.recycle_canvas
        grid, steps = self.grid.tolist(), sorted({s for s, _ in self.settings})
        recycles = [x for x in (False, True) if (s, x) in self.settings]
        moves = [
            Choice(min([g for g in grid if g > k], default=k), s, r),
            Choice(k, s, not r) if len(recycles) > 1 else self.current,
            Choice(k, min([x for x in steps if x > s], default=s), r),
            Choice(max([g for g in grid if g < k], default=k), s, r),
            Choice(k, max([x for x in steps if x < s], default=s), r),
        ]
        for _ in moves:
            move = moves[self.explore_turn % len(moves)]
            self.explore_turn += 1
            if move != self.current and (move.denoising_steps, move.recycle_canvas) in self.settings:
                return move
        return self.current
