"""Trace-driven replay of controllers, and the hindsight bound on what any controller can reach.

Greedy decoding commits the verifier's own output whatever the controller does, so where a round
starts (position t of the output) fixes the context the drafter sees. Drafting a full canvas at
every position t of an output, once per drafting setting, records a ``Trace``: L(t), how
many leading draft tokens match the output, and the drafter's confidence at each canvas position.
A round that starts at t and verifies k tokens then commits min(k, L(t)) + 1 tokens.

With per-round costs (``RoundCosts``, from a ``CostModel`` fitted on real runs), any controller can
be replayed on a trace in milliseconds instead of re-running the models: ``replay`` mirrors the
decode loop (``SpeculativeDecoder._rounds``: the block capped at the output's end, the cut for a
block of 2 or more, the verifier's token after the accepted ones), and ``hindsight_seconds`` is the
least time any sequence of choices (block and steps per round) could take knowing every L(t) in
advance: no online controller can beat it on those costs.

What a replay leaves out: canvas recycling (the canvas then depends on the previous round, so the
trace of a fresh canvas stands in for it), the controller's own compute, and timing noise. A
drafting setting the traces did not record is replayed as the nearest recorded one, its acceptance
and its cost both (record every setting a controller may pick to replay it faithfully).
The drafter's noise differs from a real run's (each position's draft is seeded by its position),
which changes individual rounds, not their distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from specdiff.acceptance import accepted_prefix_length
from specdiff.controllers.cost import CostModel, KnotFit, PlaneFit
from specdiff.metrics import RoundStats
from specdiff.protocols import Choice, Proposer


@dataclass(frozen=True)
class Setting:
    """A drafting setting a trace records: a proposer, and the diffusion drafter's denoising steps."""

    proposer: Proposer
    steps: int = 0

    @classmethod
    def ngram(cls) -> Setting:
        return cls(Proposer.NGRAM)

    @classmethod
    def diffusion(cls, steps: int) -> Setting:
        return cls(Proposer.DIFFUSION, steps)

    @property
    def order(self) -> tuple[bool, int]:
        """Settings sort with the lookup first, then the drafter by steps."""
        return self.proposer is not Proposer.NGRAM, self.steps

    def choice(self, block_size: int) -> Choice:
        return Choice(self.proposer, block_size, self.steps)


@dataclass(frozen=True)
class Trace:
    """What drafting at every position of one greedy output gives.

    Attributes:
        settings: the drafting settings recorded, in ``Setting.order``.
        reach: ``[S, n]`` int: L(t) per setting, the leading draft tokens equal to the output's
            (0 where nothing was offered).
        confidence: ``[S, n, C]`` float: the proposer's confidence per canvas position (NaN past
            the output's end, where nothing was drafted, and for a draft without confidence: the
            n-gram lookup's).
        offered: ``[S, n]`` bool: whether the proposer offered anything (the lookup offers nothing
            where the context never repeats its last tokens); None: everywhere.
    """

    settings: tuple[Setting, ...]
    reach: np.ndarray
    confidence: np.ndarray
    offered: np.ndarray | None = None

    def __post_init__(self) -> None:
        count, n = self.reach.shape
        ordered = sorted(set(self.settings), key=lambda s: s.order)
        assert count == len(self.settings) and list(self.settings) == ordered, "one row per setting, in order"
        assert self.confidence.shape[:2] == (count, n), "confidence must be [S, n, C]"
        if self.offered is None:
            object.__setattr__(self, "offered", np.ones((count, n), dtype=bool))
        assert self.offered.shape == (count, n), "offered must be [S, n]"

    @property
    def length(self) -> int:
        return int(self.reach.shape[1])

    @property
    def proposers(self) -> set[Proposer]:
        return {s.proposer for s in self.settings}

    def setting(self, proposer: Proposer, steps: int = 0) -> int:
        """The row of the recorded setting of ``proposer`` nearest to ``steps`` (the replay's
        stand-in for settings it did not record)."""
        rows = [r for r, s in enumerate(self.settings) if s.proposer is proposer]
        assert rows, f"the trace records no {proposer.value} setting"
        return min(rows, key=lambda r: (abs(self.settings[r].steps - steps), self.settings[r].steps))


@dataclass(frozen=True)
class RoundCosts:
    """Predicted seconds per round part.

    Attributes:
        draft_s: ``[S, C + 1]``: drafting seconds per setting (the trace's) and block (0..C;
            column 0 is 0: no draft).
        verify_s: ``[C + 1]``: verifying seconds for k = 0..C draft tokens (k + 1 scored).
    """

    draft_s: np.ndarray
    verify_s: np.ndarray

    @classmethod
    def fitted(cls, rounds: list[RoundStats], settings: tuple[Setting, ...], canvas_length: int) -> RoundCosts:
        """From a long-memory ``CostModel`` over real rounds (each generation's first round left
        out by the caller: its draft also encodes the prompt)."""
        model = CostModel(draft=PlaneFit(memory=1e9), verify=KnotFit(memory=1e9))
        for stats in rounds:
            model = model.updated(stats)
        blocks = np.arange(canvas_length + 1)
        draft_s = np.stack([
            np.where(blocks > 0, model.draft_many(np.full(len(blocks), s.steps), blocks, s.proposer is Proposer.NGRAM),
                     0.0) for s in settings])
        return cls(draft_s=draft_s, verify_s=model.verify.predict_many(blocks + 1))


@torch.no_grad()
def record_trace(proposers: Any, prompt_ids: torch.Tensor, output: list[int], settings: tuple[Setting, ...],
                 seed: int = 0) -> Trace:
    """Draft a full canvas at every position of ``output`` (the greedy continuation of
    ``prompt_ids`` ``[1, T]``), once per setting, with ``proposers`` (a decoder's: proposer ->
    engine); each position's noise is seeded by ``seed`` and the position, so a trace repeats exactly."""
    settings = tuple(sorted(set(settings), key=lambda s: s.order))
    width, n = max(proposers[s.proposer].max_block_size for s in settings), len(output)
    reach = np.zeros((len(settings), n), dtype=np.int64)
    offered = np.ones((len(settings), n), dtype=bool)
    confidence = np.full((len(settings), n, width), np.nan)
    for row, setting in enumerate(settings):
        engine = proposers[setting.proposer]
        session = engine.session(prompt_ids, greedy=True)
        for t in range(n):
            new = torch.tensor([output[t - 1 : t]], dtype=torch.long) if t else prompt_ids[:, :0]
            generator = torch.Generator(device=getattr(engine, "device", "cpu")).manual_seed(seed * 1_000_003 + t)
            draft = session.propose(new, setting.choice(min(engine.max_block_size, n - t)), generator)
            truth = torch.tensor([output[t : t + draft.tokens.shape[1]]], device=draft.tokens.device)
            offered[row, t] = draft.tokens.shape[1] > 0
            if offered[row, t]:
                reach[row, t] = int(accepted_prefix_length(draft.tokens == truth)[0])
            scores = draft.confidence()
            if scores is not None:
                confidence[row, t, : scores.shape[1]] = scores[0].float().cpu().numpy()
    return Trace(settings=settings, reach=reach, confidence=confidence, offered=offered)


@dataclass(frozen=True)
class Replayed:
    """A controller's replay over traces: ``seconds`` and ``tokens`` in all, and each trace's rounds."""

    seconds: float
    tokens: int
    stats: tuple[tuple[RoundStats, ...], ...]

    @property
    def rounds(self) -> int:
        return sum(len(s) for s in self.stats)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def replay(controller: Any, traces: list[Trace], costs: RoundCosts, first_round_extra_s: list[float]) -> Replayed:
    """Run ``controller`` over each trace as the decode loop would, timing rounds by ``costs``.

    ``first_round_extra_s[i]``: seconds added to trace i's first round that runs the drafter's
    model (encoding the prompt, which the cost fit leaves out). The controller is reset per trace
    (told the trace's proposers) and kept across them, as a decoder keeps its own.
    """
    canvas = costs.verify_s.shape[0] - 1
    seconds, tokens, played = 0.0, 0, []
    for trace, extra in zip(traces, first_round_extra_s, strict=True):
        assert trace.confidence.shape[2] == canvas, "the costs and the trace must share the canvas length"
        controller.reset(dict.fromkeys(sorted(trace.proposers, key=lambda p: p.value), canvas))
        lookup_row = trace.setting(Proposer.NGRAM) if Proposer.NGRAM in trace.proposers else None
        t, encoded, rounds = 0, False, []
        while t < trace.length:
            choice = controller.choose()
            k = min(choice.block_size, trace.length - t - 1)  # a round never drafts past the end
            proposer = choice.proposer if k > 0 else Proposer.PLAIN
            kept, draft_s, accepted, steps, side = 0, 0.0, 0, 0, -1
            if k > 0:
                row = trace.setting(choice.proposer, choice.denoising_steps)
                steps = trace.settings[row].steps
                runs_model = proposer is Proposer.DIFFUSION
                draft_s = costs.draft_s[row, k] + (extra if runs_model and not encoded else 0.0)
                encoded = encoded or runs_model
                cut = getattr(controller, "cut", None)
                kept = k
                if not trace.offered[row, t]:
                    kept = 0  # nothing proposed: the round verifies the pending token alone
                elif cut is not None and k >= 2 and not np.isnan(trace.confidence[row, t, 0]):
                    kept = int(cut(trace.confidence[row, t, :k], steps))
                accepted = min(kept, int(trace.reach[row, t]))
                # A diffusion round reports how far the lookup's guess (its canvas seed) went.
                if runs_model and lookup_row is not None:
                    side = min(int(trace.reach[lookup_row, t]), accepted + 1)
            stats = RoundStats(len(rounds), k, steps, steps, kept, accepted, accepted + 1, draft_s,
                               float(costs.verify_s[kept]), 0.0, choice.recycle_canvas and kept > 0,
                               proposer=proposer, side_reach=side)
            controller.observe(stats)
            rounds.append(stats)
            seconds += stats.total_s
            t += accepted + 1
        tokens += trace.length
        played.append(tuple(rounds))
    return Replayed(seconds=seconds, tokens=tokens, stats=tuple(played))


def hindsight_seconds(trace: Trace, costs: RoundCosts, plain_rounds: bool = True) -> float:
    """The least seconds to produce the trace's output knowing every L(t): dynamic programming
    from the end, each position weighing every block 0..canvas (0: a plain verifier step; 1..
    only, where a draft is possible, with ``plain_rounds=False``) at every recorded setting.
    ``best[t]`` is the least time from position t to the end."""
    n, canvas = trace.length, costs.verify_s.shape[0] - 1
    best = np.zeros(n + 1)
    for t in range(n - 1, -1, -1):
        top = min(canvas, n - t - 1)
        blocks = np.arange(0 if plain_rounds or top == 0 else 1, top + 1)  # [k]
        options = [costs.draft_s[s, blocks] + costs.verify_s[blocks]
                   + best[np.minimum(t + np.minimum(blocks, trace.reach[s, t]) + 1, n)]
                   for s in range(len(trace.settings))]
        best[t] = min(float(o.min()) for o in options)
    return float(best[0])
