"""Trace-driven replay of controllers, and the hindsight bound on what any controller can reach.

Greedy decoding commits the verifier's own output whatever the controller does, so where a round
starts (position t of the output) fixes the context the drafter sees. Drafting a full canvas at
every position t of an output, once per denoising-steps setting, records a ``Trace``: L(t), how
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
steps setting the traces did not record is replayed as the nearest recorded one, its acceptance
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
from specdiff.cost import CostModel, KnotFit, PlaneFit
from specdiff.metrics import RoundStats


@dataclass(frozen=True)
class Trace:
    """What drafting at every position of one greedy output gives.

    Attributes:
        steps: the denoising-steps settings drafted, ascending.
        reach: ``[S, n]`` int: L(t) per setting, the leading draft tokens equal to the output's
            (0 where nothing was offered).
        confidence: ``[S, n, C]`` float: the drafter's confidence per canvas position (NaN past
            the output's end, where nothing was drafted, and for a draft without confidence: the
            context lookup's, at 0 steps).
        offered: ``[S, n]`` bool: whether the drafter proposed anything (a 0-step round proposes
            nothing where the context lookup has no guess); None: everywhere.
    """

    steps: tuple[int, ...]
    reach: np.ndarray
    confidence: np.ndarray
    offered: np.ndarray | None = None

    def __post_init__(self) -> None:
        settings, n = self.reach.shape
        assert settings == len(self.steps) and list(self.steps) == sorted(set(self.steps)), "one row per setting"
        assert self.confidence.shape[:2] == (settings, n), "confidence must be [S, n, C]"
        if self.offered is None:
            object.__setattr__(self, "offered", np.ones((settings, n), dtype=bool))
        assert self.offered.shape == (settings, n), "offered must be [S, n]"

    @property
    def length(self) -> int:
        return int(self.reach.shape[1])

    def setting(self, steps: int) -> int:
        """The row of the recorded setting nearest to ``steps`` (the replay's stand-in for others)."""
        return min(range(len(self.steps)), key=lambda s: (abs(self.steps[s] - steps), self.steps[s]))


@dataclass(frozen=True)
class RoundCosts:
    """Predicted seconds per round part.

    Attributes:
        draft_s: ``[S, C + 1]``: drafting seconds per steps setting (the trace's) and block (0..C;
            column 0 is 0: no draft).
        verify_s: ``[C + 1]``: verifying seconds for k = 0..C draft tokens (k + 1 scored).
    """

    draft_s: np.ndarray
    verify_s: np.ndarray

    @classmethod
    def fitted(cls, rounds: list[RoundStats], steps: tuple[int, ...], canvas_length: int) -> RoundCosts:
        """From a long-memory ``CostModel`` over real rounds (each generation's first round left
        out by the caller: its draft also encodes the prompt)."""
        model = CostModel(draft=PlaneFit(memory=1e9), verify=KnotFit(memory=1e9))
        for stats in rounds:
            model = model.updated(stats)
        blocks = np.arange(canvas_length + 1)
        draft_s = np.stack([np.where(blocks > 0, model.draft_many(np.full(len(blocks), s), blocks), 0.0)
                            for s in steps])
        return cls(draft_s=draft_s, verify_s=model.verify.predict_many(blocks + 1))


@torch.no_grad()
def record_trace(drafter: Any, prompt_ids: torch.Tensor, output: list[int], steps: tuple[int, ...],
                 seed: int = 0) -> Trace:
    """Draft a full canvas at every position of ``output`` (the greedy continuation of
    ``prompt_ids`` ``[1, T]``), once per steps setting; each position's noise is seeded by
    ``seed`` and the position, so a trace repeats exactly."""
    width, n = drafter.canvas_length, len(output)
    reach = np.zeros((len(steps), n), dtype=np.int64)
    offered = np.ones((len(steps), n), dtype=bool)
    confidence = np.full((len(steps), n, width), np.nan)
    for s, step_count in enumerate(steps):
        session = drafter.session(prompt_ids, greedy=True)
        for t in range(n):
            new = torch.tensor([output[t - 1 : t]], dtype=torch.long) if t else prompt_ids[:, :0]
            generator = torch.Generator(device=drafter.device).manual_seed(seed * 1_000_003 + t)
            draft = session.propose(new, min(width, n - t), step_count, generator)
            truth = torch.tensor([output[t : t + draft.tokens.shape[1]]], device=draft.tokens.device)
            offered[s, t] = draft.tokens.shape[1] > 0
            if offered[s, t]:
                reach[s, t] = int(accepted_prefix_length(draft.tokens == truth)[0])
            row = draft.confidence()
            if row is not None:
                confidence[s, t, : row.shape[1]] = row[0].float().cpu().numpy()
    return Trace(steps=tuple(steps), reach=reach, confidence=confidence, offered=offered)


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
    and kept across them, as a decoder keeps its own; it may choose 0 steps (the context lookup)
    when the traces recorded them.
    """
    canvas = costs.verify_s.shape[0] - 1
    seconds, tokens, played = 0.0, 0, []
    for trace, extra in zip(traces, first_round_extra_s, strict=True):
        assert trace.confidence.shape[2] == canvas, "the costs and the trace must share the canvas length"
        controller.reset(canvas, 0 if trace.steps[0] == 0 else 1)
        t, encoded, rounds = 0, False, []
        while t < trace.length:
            choice = controller.choose()
            k = min(choice.block_size, trace.length - t - 1)  # a round never drafts past the end
            row = trace.setting(choice.denoising_steps)
            kept, draft_s = k, 0.0
            if k > 0:
                runs_model = trace.steps[row] > 0
                draft_s = costs.draft_s[row, k] + (extra if runs_model and not encoded else 0.0)
                encoded = encoded or runs_model
                cut = getattr(controller, "cut", None)
                if not trace.offered[row, t]:
                    kept = 0  # nothing proposed: the round verifies the pending token alone
                elif cut is not None and k >= 2 and not np.isnan(trace.confidence[row, t, 0]):
                    kept = int(cut(trace.confidence[row, t, :k], trace.steps[row]))
            accepted = min(kept, int(trace.reach[row, t]))
            steps = trace.steps[row] if k > 0 else 0
            # A drafting round reports how far the lookup's guess went (a model round's canvas seed).
            known = k > 0 and trace.steps[0] == 0
            lookup_reach = min(int(trace.reach[0, t]), accepted + 1) if known else -1
            stats = RoundStats(len(rounds), k, steps, steps, kept, accepted, accepted + 1, draft_s,
                               float(costs.verify_s[kept]), 0.0, choice.recycle_canvas and kept > 0, lookup_reach)
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
    only, where a draft is possible, with ``plain_rounds=False``) at every recorded steps setting.
    ``best[t]`` is the least time from position t to the end."""
    n, canvas = trace.length, costs.verify_s.shape[0] - 1
    best = np.zeros(n + 1)
    for t in range(n - 1, -1, -1):
        top = min(canvas, n - t - 1)
        blocks = np.arange(0 if plain_rounds or top == 0 else 1, top + 1)  # [k]
        options = [costs.draft_s[s, blocks] + costs.verify_s[blocks]
                   + best[np.minimum(t + np.minimum(blocks, trace.reach[s, t]) + 1, n)]
                   for s in range(len(trace.steps))]
        best[t] = min(float(o.min()) for o in options)
    return float(best[0])
