"""Trace-driven replay against the real decode loop, and the hindsight bound against brute force."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import CANVAS, reference_greedy
from hypothesis import given, settings
from hypothesis import strategies as st
from specdiff.evals.replay import RoundCosts, Setting, Trace, hindsight_seconds, record_trace, replay

from specdiff import SpeculativeDecoder
from specdiff.controllers import Adaptive, Fixed, Heuristic
from specdiff.metrics import RoundStats
from specdiff.protocols import Choice, Draft, Proposer, SideReport

LOOKUP_AND_ONE_STEP = (Setting.ngram(), Setting.diffusion(1))


class PatternDrafter:
    """A deterministic drafter: the verifier's greedy continuation, wrong (and unsure) at every
    output position ``j`` with ``j % period == period - 1``, right but unsure where ``j % period
    == 1``, right and sure elsewhere. Whatever the noise, its draft depends only on where the
    round starts, as a trace assumes. It reports a lookup's guess as its side report: wrong at
    ``j % 7 == 3``, and no guess at all where the round starts at a multiple of 11
    (``PatternLookup`` proposes that guess itself)."""

    kind = Proposer.DIFFUSION

    def __init__(self, continuation: list[int], vocab_size: int, canvas_length: int, period: int = 5):
        self.continuation, self.vocab_size, self.canvas_length = continuation, vocab_size, canvas_length
        self.max_block_size = canvas_length
        self.period, self.tokenizer, self.device = period, None, torch.device("cpu")

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> _PatternSession:
        return _PatternSession(self)

    def lookup(self) -> PatternLookup:
        return PatternLookup(self)


class PatternLookup:
    """The n-gram proposer of ``PatternDrafter``'s side reports."""

    kind = Proposer.NGRAM

    def __init__(self, drafter: PatternDrafter) -> None:
        self.drafter, self.vocab_size, self.tokenizer = drafter, drafter.vocab_size, None
        self.max_block_size, self.device = drafter.canvas_length, drafter.device

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> _PatternSession:
        return _PatternSession(self.drafter)


class _PatternSession:
    def __init__(self, drafter: PatternDrafter):
        self.drafter, self.seen = drafter, 0

    def propose(self, new_tokens: torch.Tensor, choice: Choice, generator: torch.Generator) -> Draft:
        d, block_size = self.drafter, choice.block_size
        self.seen += new_tokens.shape[1]
        positions = range(self.seen, self.seen + block_size)
        guess = self._lookup(d.canvas_length)  # what the lookup proposes here; model rounds report it
        if choice.proposer is Proposer.NGRAM:
            return Draft(tokens=guess[None, :block_size], probs=None)
        wrong = [j % d.period == d.period - 1 for j in positions]
        truth = [d.continuation[j] if j < len(d.continuation) else 3 for j in positions]
        tokens = torch.tensor([[(t + 1) % d.vocab_size if w else t for t, w in zip(truth, wrong, strict=True)]])
        scores = torch.zeros(1, block_size, d.vocab_size)
        peaks = torch.tensor([1.0 if w or j % d.period == 1 else 12.0 for j, w in zip(positions, wrong, strict=True)])
        scores[0, torch.arange(block_size), tokens[0]] = peaks
        return Draft(tokens=tokens, probs=None, denoising_steps_used=choice.denoising_steps, scores=scores,
                     side=SideReport(Proposer.NGRAM, (guess,)))

    def _lookup(self, length: int) -> torch.Tensor:
        """``[length]``, or ``[0]`` (no guess) where the round starts at a multiple of 11."""
        d = self.drafter
        if self.seen % 11 == 0:
            return torch.zeros(0, dtype=torch.long)
        truth = [d.continuation[j] if j < len(d.continuation) else 3 for j in range(self.seen, self.seen + length)]
        return torch.tensor([(t + 1) % d.vocab_size if j % 7 == 3 else t
                             for j, t in enumerate(truth, start=self.seen)])


class CutBelow(Fixed):
    """``Fixed``, cut before the first position whose confidence is below a half."""

    def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
        below = np.flatnonzero(confidence < 0.5)
        return max(int(below[0]) if len(below) else len(confidence), 1)


class Alternating(CutBelow):
    """``CutBelow``, drafting from the lookup every other round."""

    def reset(self, limits) -> None:
        super().reset(limits)
        self.turn = 0

    def choose(self) -> Choice:
        self.turn += 1
        return Choice.diffusion(self.block_size, 1) if self.turn % 2 else Choice.ngram(self.block_size)


def flat_costs(canvas: int, steps: int = 1, lookup: bool = False) -> RoundCosts:
    """Rows: the lookup's (when ``lookup``, at nearly no cost), then 1..``steps`` steps."""
    blocks = np.arange(canvas + 1)
    draft = np.stack([np.where(blocks > 0, 0.01 * s + 0.0001 * blocks, 0.0) for s in range(1 - lookup, steps + 1)])
    return RoundCosts(draft_s=draft, verify_s=0.02 + 0.0005 * blocks)


@pytest.mark.parametrize("make", [lambda: Fixed(5, 1), Heuristic, lambda: CutBelow(CANVAS, 1), lambda: Fixed.ngram(6),
                                  lambda: Alternating(CANVAS, 1)],
                         ids=["fixed", "heuristic", "cut", "lookup", "lookup-and-cut"])
def test_a_replay_plays_the_rounds_the_decode_loop_plays(verifier, make):
    prompt, n = [5, 17, 42, 9], 40
    continuation = reference_greedy(verifier, prompt, n, eos=[])
    drafter = PatternDrafter(continuation, verifier.vocab_size, CANVAS)
    decoder = SpeculativeDecoder([drafter, drafter.lookup()], verifier, controller=make())
    real = decoder.generate(prompt, max_new_tokens=n, eos_token_id=[])
    assert real.token_ids == continuation
    trace = record_trace(decoder.proposers, torch.tensor([prompt]), continuation, LOOKUP_AND_ONE_STEP)
    replayed = replay(make(), [trace], flat_costs(CANVAS, lookup=True), [0.0])

    def shape(rounds: tuple[RoundStats, ...]) -> list[tuple]:
        return [(s.proposer, s.block_size, s.denoising_steps, s.proposed, s.accepted, s.committed, s.side_reach)
                for s in rounds]

    assert shape(replayed.stats[0]) == shape(real.stats)
    assert replayed.tokens == n and replayed.rounds == len(real.stats)


def test_a_trace_of_the_real_drafter(drafter, verifier):
    prompt, n = [5, 17, 42, 9], 24
    continuation = reference_greedy(verifier, prompt, n, eos=[])
    steps = (Setting.diffusion(1), Setting.diffusion(2))
    trace = record_trace({drafter.kind: drafter}, torch.tensor([prompt]), continuation, steps, seed=3)
    assert trace.reach.shape == (2, n) and trace.confidence.shape == (2, n, drafter.canvas_length)
    assert all(0 <= trace.reach[s, t] <= n - t for s in range(2) for t in range(n))
    drafted = trace.confidence[:, :-1, :1]  # every position but the last drafts at least one token
    assert np.all((drafted > 0) & (drafted <= 1))
    again = record_trace({drafter.kind: drafter}, torch.tensor([prompt]), continuation, steps, seed=3)
    np.testing.assert_array_equal(trace.reach, again.reach)  # seeded per position: it repeats


def brute_force_seconds(reach: np.ndarray, costs: RoundCosts, plain_rounds: bool = True) -> float:
    """Every sequence of choices, by recursion: the least seconds from position t to the end
    (without ``plain_rounds``, a block of 0 only where no draft fits before the output's end)."""
    settings, n = reach.shape
    canvas = costs.verify_s.shape[0] - 1

    @functools.cache
    def least(t: int) -> float:
        if t >= n:
            return 0.0
        top = min(canvas, n - t - 1)
        blocks = [k for k in range(top + 1) if plain_rounds or k > 0 or top == 0]
        return min(costs.draft_s[s, k] + costs.verify_s[k] + least(t + min(k, int(reach[s, t])) + 1)
                   for s in range(settings) for k in blocks)

    return least(0)


traces = st.integers(1, 9).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 6), min_size=n, max_size=n), min_size=1, max_size=2),
    st.lists(st.floats(0.001, 0.05), min_size=2, max_size=2),
))


@settings(max_examples=60, deadline=None)
@given(traces)
def test_the_hindsight_bound_is_the_best_sequence_of_choices(case):
    rows, (draft_step, verify_base) = case
    canvas = 4
    reach = np.array(rows)
    n = reach.shape[1]
    reach = np.minimum(reach, n - np.arange(n))  # a draft never matches past the output's end
    blocks = np.arange(canvas + 1)
    costs = RoundCosts(
        draft_s=np.stack([np.where(blocks > 0, draft_step * (s + 1) + 0.001 * blocks, 0.0) for s in range(len(rows))]),
        verify_s=verify_base + 0.002 * blocks,
    )
    trace = Trace(settings=tuple(Setting.diffusion(s) for s in range(1, len(rows) + 1)), reach=reach,
                  confidence=np.full((len(rows), n, canvas), 0.5))
    bound = hindsight_seconds(trace, costs)
    drafting = hindsight_seconds(trace, costs, plain_rounds=False)
    assert bound == pytest.approx(brute_force_seconds(reach, costs))
    assert drafting == pytest.approx(brute_force_seconds(reach, costs, plain_rounds=False))
    assert bound <= drafting + 1e-12
    # No controller beats it on the same trace and costs, nor one that always drafts the bound without plain rounds.
    for make in (Heuristic, *(lambda k=k: Fixed(k, 1) for k in range(1, canvas + 1))):
        assert drafting <= replay(make(), [trace], costs, [0.0]).seconds + 1e-12


def test_replayed_adaptive_learns_from_the_replayed_costs():
    # A drafter right for 30 tokens at a time: Adaptive, replayed, finds long blocks worth it.
    n, canvas = 600, 32
    reach = np.array([[min(29 - t % 30, n - t) for t in range(n)]])
    confidence = np.where(np.arange(canvas)[None, :] < reach[0][:, None], 0.999, 0.2)[None]
    trace = Trace(settings=(Setting.diffusion(1),), reach=reach, confidence=confidence)
    replayed = replay(Adaptive(steps_options=(1,)), [trace], flat_costs(canvas), [0.0])
    late = replayed.stats[0][len(replayed.stats[0]) // 2:]
    assert np.mean([s.committed for s in late]) > 8
    assert replayed.seconds < replay(Fixed(2, 1), [trace], flat_costs(canvas), [0.0]).seconds


def test_round_costs_fitted_on_rounds():
    rounds = [RoundStats(i, k, 1, 1, k, 0, 1, 0.010 + 0.0001 * k, 0.020 + 0.001 * k, 0.0)
              for i, k in enumerate([1, 4, 8, 16] * 20)]
    costs = RoundCosts.fitted(rounds, (Setting.diffusion(1), Setting.diffusion(2)), canvas_length=16)
    assert costs.draft_s.shape == (2, 17) and costs.verify_s.shape == (17,)
    assert costs.draft_s[0, 0] == 0.0 and costs.draft_s[0, 8] == pytest.approx(0.0108, rel=0.05)
    assert costs.verify_s[8] == pytest.approx(0.028, rel=0.05)
    assert np.all(np.diff(costs.verify_s) >= 0)
