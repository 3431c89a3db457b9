"""Batch-aware policies: one proposer, block size and step count per round for the whole batch.

In a batch every row's block is verified in one forward of ``[B, 1 + K]`` tokens, so the cost of a
round depends on the batch size B and on the block size K together: on a CPU (or a GPU at large B)
the verifier is compute-bound and speculation's extra positions cost nearly as much as real tokens,
while at small B a round costs little more than a plain step. A policy sees ``BatchRoundStats``
after each round and answers ``choose(batch_size)`` before the next; ``PLAIN`` is plain batched
decoding, one verifier token per row.

``BatchFixed`` runs the same choice every round. ``BatchAdaptive`` (the default) learns online, per
drafting setting (the n-gram lookup where the decoder has it, the diffusion drafter per step count;
``specdiff.controllers.settings``), (i) the chance that a row's draft positions 0..i are all
accepted, pooled over rows (``ReachCounts``), and (ii) the seconds of a round: drafting from one
``CostModel`` per batch size seen (a batch size not seen yet starts from the nearest one's), and
verifying from that batch size's own curve over tokens scored once it has rounds; before, from one
curve over the row-tokens a forward scores, ``B * (1 + K)``, fed by every batch size: measured on
the pocket verifier, a forward's cost follows B x K whatever the split (8 rows of 2 tokens cost
about what 1 row of 16 does, ``docs/batching.md``), so a batch size seen for the first time is
priced from the others' rounds, not from the nearest size's curve (which, from B = 2, priced a
64-token block at B = 8 as nearly free: one such round cost 6 plain ones).
Each round it picks the setting and K on ``block_grid`` with the most expected committed tokens per
second for the batch, ``B * E[tokens a row] / seconds(B, K)``, against plain decoding's
``B / seconds(B, 0)``. A policy only picks sizes, so it cannot change the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from specdiff.controllers.base import Limits, canvas_of, check_choice
from specdiff.controllers.cost import CostModel, NominalClock, nominal_seconds
from specdiff.controllers.fits import KnotFit
from specdiff.controllers.reach import ReachCounts, block_grid
from specdiff.controllers.settings import Settings, next_move
from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats
from specdiff.protocols import PLAIN, Choice, Proposer


@dataclass(frozen=True)
class BatchRoundStats:
    """One round of a batch: the shared choice and timings, and per row (in batch order) what it did.

    ``scored`` is the verifier's block width, 1 + the longest draft verified; ``blocks`` each row's
    block (the choice, capped so that no row drafts past its ``max_new_tokens``); ``side_reach`` per
    row as in ``RoundStats``; ``fed`` the most committed tokens a row's draft session took this round
    (after a stretch without that proposer, or when rows join, the session encodes a backlog).
    """

    round_index: int
    batch_size: int
    proposer: Proposer
    block_size: int
    denoising_steps: int
    denoising_steps_used: int
    scored: int
    blocks: tuple[int, ...]
    proposed: tuple[int, ...]
    accepted: tuple[int, ...]
    committed: tuple[int, ...]
    side_reach: tuple[int, ...]
    draft_s: float
    verify_s: float
    other_s: float
    fed: int = 0

    @property
    def total_s(self) -> float:
        return self.draft_s + self.verify_s + self.other_s


def nominal_batch_seconds(stats: BatchRoundStats, clock: NominalClock = nominal_seconds) -> BatchRoundStats:
    """``stats`` on a nominal clock (``specdiff.controllers.cost.NominalClock``), scaled by the rows: a
    seeded batch's policy then makes the same choices on every run."""
    draft, verify = clock.seconds(stats.proposer, stats.denoising_steps_used, stats.block_size, stats.scored,
                                  rows=stats.batch_size)
    return replace(stats, draft_s=draft, verify_s=verify, other_s=0.0)


def round_of(stats: BatchRoundStats) -> RoundStats:
    """The batch round as one ``RoundStats`` for a cost model (its width, proposer and seconds)."""
    return RoundStats(round_index=stats.round_index, block_size=stats.block_size, denoising_steps=stats.denoising_steps,
                      denoising_steps_used=stats.denoising_steps_used, proposed=stats.scored - 1, accepted=0,
                      committed=0, draft_s=stats.draft_s, verify_s=stats.verify_s, other_s=stats.other_s,
                      proposer=stats.proposer)


def batch_warmup(settings: Settings, start_block_size: int) -> list[Choice]:
    """A batch's first rounds. With the lookup: it at a quarter block and at ``start_block_size``
    (nearly free to draft at any B), the fewest model steps once at a quarter block (a model round
    at B = 8 costs several plain ones), a plain round. Without it, ``Settings.warmup``.

    The single-row order (two model rounds first) sent a fresh policy into plain stretches in a
    batch's opening, where few rows' lookups guess yet: replayed on the pocket code suite at B = 8
    (``benchmarks/results/batch_replay.md``, with the block margin of ``BatchAdaptive._margin``), a
    fresh policy ran at 1.06-1.16x plain decoding before, 1.20-1.31x after."""
    if Proposer.NGRAM not in settings.limits:
        return settings.warmup(start_block_size)
    quarter = max(1, start_block_size // 4)
    lookup = settings.limits[Proposer.NGRAM]
    warmup = [Choice.ngram(min(quarter, lookup)), Choice.ngram(min(start_block_size, lookup))]
    model_steps = [s for p, s, _ in settings.rows if p is Proposer.DIFFUSION]
    if model_steps:
        warmup.append(Choice.diffusion(min(quarter, settings.limits[Proposer.DIFFUSION]), min(model_steps)))
    return [*warmup, PLAIN]


def _check_batch_choice(choice: Choice, limits: Limits, max_steps: int | None) -> None:
    if choice.recycle_canvas:
        raise SpecdiffError("canvas recycling is not offered in a batch (rows commit different counts); "
                            "use a choice with recycle_canvas=False")
    check_choice(choice, limits, max_steps)


@dataclass
class BatchFixed:
    """The same choice every round, whatever the batch size."""

    choice: Choice = field(default_factory=lambda: Choice.diffusion(8, 1))

    def reset(self, limits: Limits, max_steps: int | None = None) -> None:
        _check_batch_choice(self.choice, limits, max_steps)

    def choose(self, batch_size: int) -> Choice:
        del batch_size
        return self.choice

    def observe(self, stats: BatchRoundStats) -> None:
        del stats  # a fixed policy learns nothing


@dataclass
class BatchAdaptive:
    """Expected committed tokens per second for the batch, learnt online; plain decoding when that wins.

    See the module docstring. Warm-up (``batch_warmup``): with the lookup, a quarter block and a
    block of it, one round of the model at a quarter block, one plain round; without, as ``Adaptive``'s
    (``Settings.warmup``). Then every ``explore_every`` rounds a neighbour of the current choice runs
    once (K up, the next setting, K down); a change of setting needs a ``hysteresis`` gain (the new
    proposer's session first encodes what it has not seen), a change of block alone none; in a plain
    stretch one probe round drafts every
    ``probe_after`` rounds. The learnt costs and (faded) acceptance carry over to the next batch.
    """

    start_block_size: int = 8
    steps_options: tuple[int, ...] = (1, 2)
    explore_every: int = 32
    hysteresis: float = 0.1
    probe_after: int = 8
    memory: float = 32.0
    prior_acceptance: float = 0.5
    prior_strength: float = 2.0
    limits: dict[Proposer, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if not self.steps_options or min(self.steps_options) < 1:
            raise SpecdiffError(f"steps_options must be non-empty, each >= 1 (got {self.steps_options}); "
                                "drafting without a model is the n-gram proposer's")
        if self.start_block_size < 1 or self.explore_every < 2 or self.probe_after < 1:
            raise SpecdiffError("BatchAdaptive needs start_block_size >= 1, explore_every >= 2, probe_after >= 1")
        self.max_steps: int | None = None

    def reset(self, limits: Limits, max_steps: int | None = None) -> None:
        limits = dict(limits)
        if limits != self.limits or max_steps != self.max_steps:
            self._learn_afresh(limits, max_steps)
        else:
            self.counts.fade(0.25)  # acceptance depends on the prompts: a faded prior for the next batch
            self.warmup = []
        self.rounds_seen = self.plain_streak = self.explore_turn = 0

    def _learn_afresh(self, limits: dict[Proposer, int], max_steps: int | None) -> None:
        steps = tuple(s for s in self.steps_options if max_steps is None or s <= max_steps)
        if Proposer.DIFFUSION in limits and not steps:
            raise SpecdiffError(f"none of steps_options {self.steps_options} is within the drafter's {max_steps}")
        self.limits, self.max_steps = limits, max_steps
        self.settings = Settings(limits, steps or (1,), (False,))
        self.canvas_length = canvas_of(limits)
        self.counts = ReachCounts(1, len(self.settings), self.canvas_length, self.settings.families,
                                  self.prior_acceptance, self.prior_strength)
        self.costs: dict[int, CostModel] = {}  # drafting seconds, per batch size
        self.verify = KnotFit()  # verifying seconds (bookkeeping included) against row-tokens scored
        self.widest: dict[int, int] = {}  # per batch size, the most tokens a row has had scored
        self.grid = np.array(block_grid(self.canvas_length))  # [G]
        self.plain_and_grid = np.concatenate([[0], self.grid])  # [1 + G]: priced in one call
        self.grid_ok = self.settings.fits(self.grid)  # [R, G]
        self.steps_used = np.array([float(s) for _, s, _ in self.settings.rows])  # [R] mean steps used
        self.warmup = batch_warmup(self.settings, self.start_block_size)
        self.current = self.warmup[0]

    # -- predictions -------------------------------------------------------------------------------

    def cost_for(self, batch: int) -> CostModel:
        """The cost model of this batch size, else the nearest one seen (in ratio), else a fresh one."""
        if batch in self.costs or not self.costs:
            return self.costs.get(batch, CostModel())
        return self.costs[min(self.costs, key=lambda b: (abs(np.log(b / batch)), b))]

    def priced(self, batch: int) -> tuple[np.ndarray, np.ndarray, float]:
        """What a decision weighs at ``batch`` rows: expected tokens a row ``[R, C + 1]`` (by block
        size), and the predicted seconds of a round ``[R, G]`` and of a plain one. ``choose`` computes
        it once for ``rates`` and ``paying_blocks`` (twice, it was most of the policy's compute)."""
        return self.counts.expected_tokens(0)[0], *self.round_seconds(batch)

    def rates(self, batch: int, priced: tuple | None = None) -> tuple[np.ndarray, float]:
        """Predicted committed tokens per second for the batch: ``[R, G]`` drafting (-inf where a
        setting's proposer cannot draft that block), and plain (``priced``: ``self.priced(batch)``)."""
        tokens, seconds, plain = priced or self.priced(batch)
        return np.where(self.grid_ok, batch * tokens[:, self.grid] / seconds, -np.inf), batch / plain

    def round_seconds(self, batch: int) -> tuple[np.ndarray, float]:
        """Predicted seconds of a round at ``batch`` rows: ``[R, G]`` drafting, and plain."""
        cost = self.cost_for(batch)
        lookup = self.settings.is_lookup[:, None]
        seconds = cost.draft_many(self.steps_used[:, None], self.grid[None, :], lookup)
        verify = self.verify_seconds(batch, self.plain_and_grid)  # [1 + G]: plain, then the grid
        return seconds + verify[None, 1:], float(verify[0])

    def verify_seconds(self, batch: int, blocks: np.ndarray) -> np.ndarray:
        """Predicted verifying seconds of blocks ``[G]`` at ``batch`` rows: that batch size's own curve
        over tokens scored up to the widest block it has run, the curve over row-tokens shared by all
        sizes beyond (and before it has rounds)."""
        shared = self.verify.predict_many(batch * (blocks + 1))
        widest = self.widest.get(batch)
        if widest is None:
            return shared
        own = self.costs[batch].verify.predict_many(blocks + 1)
        # Past the widest block seen at this size, the shared curve's rise from there (a batch
        # size's own curve knows nothing of it: extrapolated, it priced blocks of 16 at 13x a round).
        at = self.costs[batch].verify.predict(widest) - self.verify.predict(batch * widest)
        return np.where(blocks + 1 <= widest, own, shared + at)

    def paying_blocks(self, batch: int, priced: tuple | None = None) -> np.ndarray:
        """``[R, G]``: the blocks whose round costs at most ``1 / (1 - a)`` plain rounds, ``a`` the
        setting's pooled chance that a row's first draft token is accepted (K = 1 always passes).

        If a row's draft positions are accepted with chance about ``a`` each, no block returns it
        more than ``1 / (1 - a)`` tokens a round; a wider block pays through the rows that accept far
        more (looping rows), which finish early and leave the rest to a batch still paying for the
        width. Measured on the pocket pair at B = 8 (``docs/batching.md``): priced by every row's
        acceptance, blocks of 8 to 12 won, where fixed blocks of 3 or 4 finished the batch in 0.8x
        the time; at B = 1 the forward's cost hardly rises with K and nothing is cut.
        """
        tokens, seconds, plain = priced or self.priced(batch)
        first = np.clip(tokens[:, 1] - 1.0, 0.0, 0.9)  # [R]
        return (seconds <= plain / (1.0 - first[:, None])) | (self.grid[None, :] == 1)

    # -- the protocol ------------------------------------------------------------------------------

    def choose(self, batch_size: int) -> Choice:
        if self.rounds_seen < len(self.warmup):
            return self.warmup[self.rounds_seen]
        priced = self.priced(batch_size)
        rates, plain = self.rates(batch_size, priced)
        rates = np.where(self.paying_blocks(batch_size, priced), rates, -np.inf)
        r, g = np.unravel_index(int(np.argmax(rates)), rates.shape)
        best, best_rate = self.settings.choice(int(r), int(self.grid[g])), float(rates[r, g])
        if self.current.proposer is Proposer.PLAIN:
            if best_rate > plain * (1.0 + self.hysteresis):
                self.current = best
            elif self.plain_streak >= self.probe_after:
                self.plain_streak = 0
                return best  # a probe: one drafting round, so the acceptance counts stay alive
        elif plain > best_rate:
            self.current = PLAIN
        elif best_rate > self._rate_of(self.current, rates) * (1.0 + self._margin(best)):
            self.current = best
        if self.current.proposer is not Proposer.PLAIN and self.rounds_seen % self.explore_every == \
                self.explore_every - 1:
            return self._neighbour()
        return self.current

    def _margin(self, best: Choice) -> float:
        """The gain a move to ``best`` needs: ``hysteresis`` for another setting, none for another
        block of the same one (nothing to re-encode; on the pocket pair at B = 8 fixed blocks of 2, 3
        and 4 replay within 1-10% of each other, inside a 10% margin, ``benchmarks/results/batch_replay.md``)."""
        same = (best.proposer, best.denoising_steps) == (self.current.proposer, self.current.denoising_steps)
        return 0.0 if same else self.hysteresis

    def _rate_of(self, choice: Choice, rates: np.ndarray) -> float:
        r = self.settings.index(choice.proposer, choice.denoising_steps, False)
        g = int(np.argmin(np.abs(self.grid - choice.block_size)))
        return float(rates[r, g])

    def _neighbour(self) -> Choice:
        """The next exploration move in a fixed rotation: K up, the next setting up the ladder, K down."""
        current, settings = self.current, self.settings
        k, grid, ladder = current.block_size, self.grid.tolist(), settings.ladder
        rung = ladder.index((current.proposer, current.denoising_steps))
        other = ladder[(rung + 1 + self.explore_turn // 3) % len(ladder)]
        moves = [replace(current, block_size=min([g for g in grid if g > k], default=k)),
                 settings.rung_choice(other, k, False),
                 replace(current, block_size=max([g for g in grid if g < k], default=k))]
        move, self.explore_turn = next_move(moves, self.explore_turn, current, settings.runs)
        return move

    def observe(self, stats: BatchRoundStats) -> None:
        self.rounds_seen += 1
        teach = stats.fed <= self.canvas_length + 1  # a backlog's encoding says nothing of the next round
        model = self.cost_for(stats.batch_size)
        if stats.batch_size not in self.costs:
            model = replace(model, verify=KnotFit())  # drafting from the nearest size, verifying its own
        self.costs[stats.batch_size] = model.updated(round_of(stats), teach_draft=teach)
        self.widest[stats.batch_size] = max(self.widest.get(stats.batch_size, 1), stats.scored)
        self.verify = self.verify.updated(stats.batch_size * stats.scored, stats.verify_s + stats.other_s)
        if stats.proposer is Proposer.PLAIN or not any(stats.blocks):
            self.plain_streak += stats.proposer is Proposer.PLAIN
            return
        self.plain_streak = 0
        keep = 1.0 - 1.0 / self.memory
        self.counts.fade(keep)
        r = self.settings.index(stats.proposer, stats.denoising_steps, False)
        self.steps_used[r] = keep * self.steps_used[r] + (1.0 - keep) * stats.denoising_steps_used
        lookup = self.settings.index(Proposer.NGRAM, 0, False) if Proposer.NGRAM in self.limits else None
        for block, proposed, accepted, committed, side in zip(
                stats.blocks, stats.proposed, stats.accepted, stats.committed, stats.side_reach, strict=True):
            if block == 0:
                continue  # a row's last token is never drafted: nothing to learn
            # Judged over the whole block: a row that proposed fewer (a lookup whose guess ran short,
            # or had none) missed where its guess ended; counted over its guess alone, the deep
            # positions would be judged by the long guesses only (the looping rows').
            self.counts.add_run(0, r, min(block, self.canvas_length), min(accepted, proposed))
            if lookup is not None and stats.proposer is Proposer.DIFFUSION and side >= 0:
                # The lookup's guess, judged by what the row committed (as ``Adaptive`` counts it).
                self.counts.add_run(0, lookup, min(side + 1, committed, self.canvas_length), side)
