"""Controllers: scripted acceptance and seconds drive each policy to the expected choices.

The policies learn only from ``RoundStats``, so a scripted drafter (how many draft tokens the
verifier accepts, given the round and the choice) and a scripted machine (seconds per denoising
step and per verified token) make every test deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from helpers import CANVAS, reference_greedy
from hypothesis import given, settings
from hypothesis import strategies as st
from stand_ins import OracleDrafter

from specdiff import SpeculativeDecoder
from specdiff.controllers import PLAIN, Adaptive, Choice, Fixed, Heuristic, Proposer
from specdiff.controllers.reach import block_grid, expected_committed, reach_estimates, regime_of
from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats

EVERYTHING = 10**6  # "accept every draft token" (capped at the block)
DIFFUSION, NGRAM = Proposer.DIFFUSION, Proposer.NGRAM


def limits(canvas: int, lookup: bool = False) -> dict[Proposer, int]:
    """A decoder's proposers: the diffusion drafter, and the n-gram lookup when ``lookup``."""
    return {DIFFUSION: canvas} | ({NGRAM: canvas} if lookup else {})


def is_lookup(choice: Choice) -> bool:
    return choice.proposer is NGRAM


@dataclass(frozen=True)
class Machine:
    """Scripted seconds: drafting per denoising step, verifying per forward and per token scored."""

    draft_per_step: float = 0.005
    verify_base: float = 0.008
    verify_per_token: float = 0.0001
    noise: float = 0.0  # relative; alternates + and - so runs stay deterministic
    lookup: float = 0.0001  # an n-gram lookup round's draft: no model

    def seconds(self, round_index: int, block_size: int, choice: Choice) -> tuple[float, float]:
        scale = 1.0 + self.noise * (1 if round_index % 2 else -1)
        draft = self.lookup if is_lookup(choice) else self.draft_per_step * choice.denoising_steps
        draft_s = draft if block_size else 0.0
        return draft_s * scale, (self.verify_base + self.verify_per_token * (block_size + 1)) * scale


def play(
    policy,
    accepted_for: Callable[[int, Choice], int],
    rounds: int,
    canvas: int = 32,
    machine: Machine = Machine(),
    lookup: bool = False,
    side_reach_for: Callable[[int], int] = lambda i: -1,
) -> list[Choice]:
    """Run ``policy`` for ``rounds`` rounds against the script; returns the choices it made.
    ``accepted_for`` may return None for a lookup round: the lookup had no guess, nothing proposed.
    ``side_reach_for``: how far the lookup's guess went in a round the model drafted (-1: unknown)."""
    policy.reset(limits(canvas, lookup))
    choices = []
    for i in range(rounds):
        choice = policy.choose()
        k = choice.block_size
        script = accepted_for(i, choice)
        proposed = k if script is not None else 0
        accepted = min(proposed, script or 0)
        draft_s, _ = machine.seconds(i, k, choice)
        verify_s = machine.seconds(i, proposed, choice)[1]  # a lookup without a guess verifies one token
        steps = choice.denoising_steps if k else 0
        modelled = choice.proposer is DIFFUSION and k > 0
        policy.observe(RoundStats(i, k, steps, steps, proposed, accepted, accepted + 1, draft_s, verify_s, 0.0,
                                  choice.recycle_canvas and k > 0, choice.proposer if k else Proposer.PLAIN,
                                  side_reach_for(i) if modelled else -1))
        choices.append(choice)
    return choices


def drafting_rounds(choices: list[Choice], start: int = 0) -> list[int]:
    return [i for i, c in enumerate(choices) if c.block_size > 0 and i >= start]


# -- Fixed and Heuristic -------------------------------------------------------------------------


def test_fixed_repeats_its_choice_and_refuses_a_block_past_the_canvas():
    assert set(play(Fixed(8, 2, True), lambda i, c: i % 3, 10)) == {Choice.diffusion(8, 2, True)}
    with pytest.raises(SpecdiffError, match="largest block 16"):
        Fixed(32).reset(limits(16))


def test_heuristic_adds_two_after_a_full_block_and_drops_one_otherwise():
    # accepted per round: full, full, partial, none, full
    script = [EVERYTHING, EVERYTHING, 3, 0, EVERYTHING, 0]
    choices = play(Heuristic(start_block_size=20), lambda i, c: script[i], 6, canvas=32)
    assert [c.block_size for c in choices] == [20, 22, 24, 23, 22, 24]
    # clamped to the canvas above and to 1 below
    grown = play(Heuristic(20), lambda i, c: EVERYTHING, 4, canvas=24)
    assert [c.block_size for c in grown] == [20, 22, 24, 24]
    assert [c.block_size for c in play(Heuristic(2), lambda i, c: 0, 4)] == [2, 1, 1, 1]


def test_heuristic_ignores_rounds_without_a_draft():
    policy = Heuristic(start_block_size=5)
    policy.reset(limits(16))
    policy.observe(RoundStats(0, 0, 0, 0, 0, 0, 1, 0.0, 0.01, 0.0, proposer=Proposer.PLAIN))
    assert policy.choose().block_size == 5


# -- Adaptive's pure parts -----------------------------------------------------------------------


def test_block_grid():
    assert block_grid(16) == (1, 2, 3, 4, 6, 8, 12, 16)
    assert block_grid(20) == (1, 2, 3, 4, 6, 8, 12, 16, 20)
    assert block_grid(1) == (1,)


def test_expected_committed_table():
    reach = np.array([[1.0, 1.0, 1.0], [0.5, 0.25, 0.125], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(expected_committed(reach), [[1, 2, 3, 4], [1, 1.5, 1.75, 1.875], [1, 1, 1, 1]])


def test_reach_estimates_by_hand():
    zeros = np.zeros((2, 4))
    # no counts: the prior, extrapolated geometrically
    np.testing.assert_allclose(reach_estimates(zeros, zeros, 0.5, 2.0), [[0.5, 0.25, 0.125, 0.0625]] * 2)
    # setting 0 proposed positions 0 and 1 in eight rounds: reached 0 six times, 0 and 1 four times
    reached, proposed = zeros.copy(), zeros.copy()
    reached[0, :2], proposed[0, :2] = [6.0, 4.0], 8.0
    estimates = reach_estimates(reached, proposed, 0.5, 2.0)
    pooled_0 = (6 + 2 * 0.5) / (8 + 2)  # toward the prior
    pooled_1 = (4 + 2 * pooled_0 * pooled_0) / (8 + 2)  # toward position 0 times its ratio
    row_0, row_1 = (6 + 2 * pooled_0) / 10, (4 + 2 * pooled_1) / 10
    pooled_ratio = pooled_1 / pooled_0
    pooled_deep = pooled_1 * pooled_ratio ** np.arange(1, 3)  # past position 1: extrapolated
    # past its deepest position the row extrapolates itself, weighted 8 rounds to the pooled 2
    own_deep = row_1 * (row_1 / row_0) ** np.arange(1, 3)
    np.testing.assert_allclose(estimates[0], [row_0, row_1, *((8 * own_deep + 2 * pooled_deep) / 10)])
    # an untried setting borrows the pooled estimates
    np.testing.assert_allclose(estimates[1], [pooled_0, pooled_1, *pooled_deep])


def test_faded_counts_do_not_stretch_the_pooled_head():
    """A setting whose counts have faded to almost nothing stays at the pooled estimates past its
    depth, not at its own (pooled-borrowed) head extrapolated flat."""
    reached, proposed = np.zeros((2, 8)), np.zeros((2, 8))
    reached[0, :2], proposed[0, :8] = 1.0, 1.0  # a fresh round: positions 0-1 of 8 accepted
    proposed[1, :2] = 1e-3  # long ago: 2 positions tried, faded
    estimates = reach_estimates(reached, proposed, 0.5, 2.0)
    untried = proposed.copy()
    untried[1] = 0.0
    pooled = reach_estimates(reached, untried, 0.5, 2.0)[1]  # an untried setting: the pooled estimates
    np.testing.assert_allclose(estimates[1], pooled, atol=1e-3)
    assert estimates[1, 4] < 0.1 * estimates[1, 1]  # the pooled evidence stops after position 1


def test_reach_estimates_never_increase_along_the_block():
    reached, proposed = np.array([[1.0, 5.0, 5.0, 0.0]]), np.array([[5.0, 5.0, 5.0, 5.0]])
    estimates = reach_estimates(reached, proposed, 0.5, 2.0)[0]
    assert (np.diff(estimates) <= 0).all()


# -- Adaptive, scripted ----------------------------------------------------------------------------


def test_adaptive_warms_up_with_a_fixed_schedule():
    choices = play(Adaptive(start_block_size=16), lambda i, c: 0, 5)
    d = Choice.diffusion
    assert choices == [d(16, 1), d(16, 1), d(16, 2), d(4, 1), PLAIN]


def test_later_generations_skip_the_warm_up_and_start_from_what_was_learnt():
    policy = Adaptive()
    play(policy, lambda i, c: EVERYTHING, 30)
    learnt = policy.current
    assert play(policy, lambda i, c: EVERYTHING, 3)[0] == learnt  # play() resets: a new generation
    play(policy, lambda i, c: 0, 60)  # a prompt the drafter cannot follow ends in plain decoding
    assert policy.current == PLAIN
    choices = play(policy, lambda i, c: 0, 12)
    assert choices[0].block_size >= 16 and choices[1] == PLAIN  # the next prompt starts with a probe
    assert play(policy, lambda i, c: 0, 3, canvas=64)[:2] == [Choice.diffusion(16, 1)] * 2  # new drafter


def test_adaptive_grows_the_block_while_everything_is_accepted():
    policy = Adaptive()
    choices = play(policy, lambda i, c: EVERYTHING, 60)
    assert policy.current.block_size == 32 and policy.current.denoising_steps == 1
    assert drafting_rounds(choices, 5) == list(range(5, 60))  # never falls back to plain decoding


def test_adaptive_falls_back_to_plain_decoding_and_probes_with_backoff():
    choices = play(Adaptive(probe_after=8), lambda i, c: 0, 100)
    # warm-up ends at round 5 in plain decoding; probes after 8, then 16, then 32 plain rounds
    assert drafting_rounds(choices, 5) == [13, 30, 63]
    assert all(choices[i].block_size >= 16 for i in (13, 30, 63))  # a probe drafts a full starting block


def test_adaptive_resumes_drafting_once_a_probe_passes():
    # Drafts fail until round 20 (say, the output starts to repeat itself), then all pass.
    choices = play(Adaptive(probe_after=8), lambda i, c: 0 if i < 20 else EVERYTHING, 70)
    assert drafting_rounds(choices, 5)[:2] == [13, 30]
    assert drafting_rounds(choices, 30) == list(range(30, 70))
    assert choices[-1].block_size == 32


def test_adaptive_pays_for_a_denoising_step_that_pays_back():
    # One step's drafts all fail; two steps' all pass.
    policy = Adaptive()
    play(policy, lambda i, c: EVERYTHING if c.denoising_steps >= 2 else 0, 40)
    assert (policy.current.block_size, policy.current.denoising_steps) == (32, 2)


def test_adaptive_learns_canvas_recycling_when_it_helps():
    policy = Adaptive(recycle_options=(False, True))
    play(policy, lambda i, c: EVERYTHING if c.recycle_canvas else 1, 40)
    assert policy.current.recycle_canvas and policy.current.block_size == 32


def test_adaptive_drafts_long_blocks_only_after_a_long_acceptance():
    # Stretches: 6 rounds where the drafter copies a loop (every token accepted), then 6 where it
    # gets 1 token right. Verifying costs enough per token that long blocks pay only in a loop.
    def stretches(i: int, choice: Choice) -> int:
        return EVERYTHING if (i // 6) % 2 == 0 else 1

    machine = Machine(verify_per_token=0.003)
    policy = Adaptive()
    choices = play(policy, stretches, 240, machine=machine)
    edges = policy.regime_edges
    hot, cold = policy.choices[regime_of(32, 32, edges)], policy.choices[regime_of(1, 2, edges)]
    assert hot.block_size >= 16 and hot.denoising_steps == 1  # after a long run: a long block
    assert cold.block_size <= 2  # after a short one: a short block
    # and the rounds follow: the second round of each loop stretch drafts a long block
    assert all(choices[i].block_size >= 16 for i in range(121, 240, 12))


def test_adaptive_never_recycles_when_not_allowed():
    choices = play(Adaptive(), lambda i, c: EVERYTHING if c.recycle_canvas else 1, 40)  # off by default
    assert not any(c.recycle_canvas for c in choices)


def geometric_acceptance(rate: float, seed: int = 0) -> Callable[[int, Choice], int]:
    """Each draft position passes with probability ``rate`` (the script's own seeded RNG)."""
    rng = random.Random(seed)

    def accepted_for(round_index: int, choice: Choice) -> int:
        n = 0
        while n < choice.block_size and rng.random() < rate:
            n += 1
        return n

    return accepted_for


def test_cost_not_acceptance_decides_the_block_size():
    # The same acceptance on two machines: verifying is nearly free per token on one, costly on the other.
    flat, steep = Adaptive(), Adaptive()
    play(flat, geometric_acceptance(0.8), 200, machine=Machine(verify_per_token=0.00005))
    play(steep, geometric_acceptance(0.8), 200, machine=Machine(verify_per_token=0.002))
    assert flat.current.block_size > steep.current.block_size > 0
    # and drafting that costs several verifier forwards never pays at this acceptance
    slow_drafter = Adaptive()
    choices = play(slow_drafter, geometric_acceptance(0.8), 200, machine=Machine(draft_per_step=0.08))
    assert slow_drafter.current == PLAIN
    assert len(drafting_rounds(choices, 5)) <= 5  # a few probes only


def test_adaptive_does_not_thrash_on_noisy_seconds():
    """Each regime's choice stays put (moving between regimes is the point, not thrashing)."""
    policy = Adaptive()
    snapshots = []
    accepted_for = geometric_acceptance(0.7, seed=1)

    def record(i: int, choice: Choice) -> int:
        snapshots.append(list(policy.choices))
        return accepted_for(i, choice)

    play(policy, record, 300, machine=Machine(noise=0.2))
    switches = sum(a != b for before, after in zip(snapshots[10:], snapshots[11:], strict=False)
                   for a, b in zip(before, after, strict=True))
    assert switches <= 10, f"the regimes' choices changed {switches} times in 290 rounds"


# -- a custom cut on the drafter's confidence ---------------------------------------------------------


@dataclass
class CutBelow(Fixed):
    """``Fixed``, plus a cut before the first position whose confidence is below ``threshold``."""

    threshold: float = 0.5

    def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
        below = np.flatnonzero(confidence < self.threshold)
        return max(int(below[0]) if len(below) else len(confidence), 1)


def test_the_decoder_verifies_only_what_the_cut_keeps(drafter, verifier):
    prompt = [5, 17, 42, 9]
    decoder = SpeculativeDecoder(drafter, verifier, controller=CutBelow(block_size=CANVAS, threshold=0.05))
    result = decoder.generate(prompt, max_new_tokens=40, seed=0, eos_token_id=[])
    assert result.token_ids == reference_greedy(verifier, prompt, 40, eos=[])
    drafted = [s for s in result.stats if s.block_size > 0]
    assert all(1 <= s.proposed <= s.block_size and s.accepted <= s.proposed for s in drafted)
    assert any(s.proposed < s.block_size for s in drafted)  # the cut really shortened blocks


@pytest.mark.parametrize("kept", [0, CANVAS + 1])
def test_a_cut_outside_the_block_is_refused(drafter, verifier, kept):
    class BadCut(Fixed):
        def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
            return kept

    decoder = SpeculativeDecoder(drafter, verifier, controller=BadCut(block_size=CANVAS))
    with pytest.raises(SpecdiffError, match="a cut keeps 1.."):
        decoder.generate([5, 17, 42, 9], max_new_tokens=20, eos_token_id=[])


# -- every policy --------------------------------------------------------------------------------

POLICIES = {
    "fixed": lambda: Fixed(4, 1),
    "fixed-recycle": lambda: Fixed(4, 2, recycle_canvas=True),
    "heuristic": lambda: Heuristic(),
    "adaptive": lambda: Adaptive(),
}

stats_strategy = st.builds(
    RoundStats,
    round_index=st.integers(0, 1000),
    block_size=st.integers(0, 300),
    denoising_steps=st.integers(0, 20),
    denoising_steps_used=st.integers(0, 20),
    proposed=st.integers(0, 300),
    accepted=st.integers(0, 300),
    committed=st.integers(0, 301),
    draft_s=st.floats(0, 10),
    verify_s=st.floats(0, 10),
    other_s=st.floats(0, 10),
    canvas_recycled=st.booleans(),
    proposer=st.sampled_from(list(Proposer)),
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(POLICIES)), st.integers(1, 300), st.lists(stats_strategy, max_size=40),
       st.booleans())
def test_choices_stay_within_the_canvas_and_the_decoders_proposers(name, canvas, history, lookup):
    """Within the canvas, from a proposer the decoder has, at least one step for the drafter."""
    policy = Fixed(min(4, canvas), 1) if name.startswith("fixed") else POLICIES[name]()
    offered = limits(canvas, lookup)

    def check(choice: Choice) -> None:
        assert 0 <= choice.block_size <= canvas
        assert choice.proposer is Proposer.PLAIN or choice.proposer in offered
        assert choice.denoising_steps >= 1 if choice.proposer is DIFFUSION else choice.denoising_steps == 0

    policy.reset(offered)
    for stats in history:
        choice = policy.choose()
        check(choice)
        assert choice.block_size > 0 or isinstance(policy, Adaptive)  # only Adaptive decodes plainly
        stats = RoundStats(**{**stats.__dict__, "accepted": min(stats.accepted, stats.proposed)})
        policy.observe(stats)
    check(policy.choose())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_greedy_output_equals_the_verifier_with_each_policy(name, drafter, verifier):
    prompt = [5, 17, 42, 9]
    decoder = SpeculativeDecoder(drafter, verifier, controller=POLICIES[name]())
    result = decoder.generate(prompt, max_new_tokens=40, seed=0, eos_token_id=[])
    assert result.token_ids == reference_greedy(verifier, prompt, 40, eos=[])


def test_adaptive_is_the_default_and_call_arguments_override_it(drafter, verifier):
    decoder = SpeculativeDecoder(drafter, verifier)
    assert isinstance(decoder.controller, Adaptive)
    result = decoder.generate([5, 17, 42], max_new_tokens=12, block_size=3, denoising_steps=2,
                              eos_token_id=[])
    drafted = [s for s in result.stats if s.proposed > 0]
    assert drafted[0].block_size == 3  # later rounds may be cut short by the end of the output
    assert all(s.block_size <= 3 and s.denoising_steps == 2 for s in drafted)


def test_adaptive_drafts_whole_canvases_for_a_perfect_drafter(verifier):
    prompt = [5, 17, 42, 9]
    continuation = reference_greedy(verifier, prompt, 120, eos=[])
    oracle = OracleDrafter(continuation, verifier.vocab_size, canvas_length=CANVAS)
    result = SpeculativeDecoder(oracle, verifier, controller=Adaptive()).generate(
        prompt, max_new_tokens=120, eos_token_id=[]
    )
    assert result.token_ids == continuation
    assert max(s.block_size for s in result.stats) == CANVAS


# -- the n-gram proposer beside the diffusion drafter ------------------------------------------------


def lookup_share(choices: list[Choice], start: int) -> float:
    drafting = [c for c in choices[start:] if c.block_size > 0]
    return sum(is_lookup(c) for c in drafting) / len(drafting)


def test_adaptive_copies_the_lookup_when_it_reaches_as_far_for_less():
    choices = play(Adaptive(), lambda i, c: 6, 200, lookup=True)
    assert choices[2] == Choice.ngram(16)  # the warm-up measures the lookup
    assert lookup_share(choices, 40) > 0.9


def test_adaptive_runs_the_model_where_the_lookup_falls_short():
    choices = play(Adaptive(), lambda i, c: 0 if is_lookup(c) else 6, 200, lookup=True)
    assert lookup_share(choices, 40) < 0.1
    assert all(c.block_size > 0 for c in choices[40:])  # the model still pays: no fall-back


def test_a_lookup_without_a_guess_teaches_that_it_offers_nothing():
    """No guess means nothing proposed, which still counts against the lookup: a policy that took
    it for a plain round would keep the lookup's free-looking prior and choose it forever."""
    # Drafting dear enough that the lookup's untested prior (half its positions reached) beats the model.
    choices = play(Adaptive(), lambda i, c: None if is_lookup(c) else 4, 200, lookup=True,
                   machine=Machine(draft_per_step=0.02))
    assert lookup_share(choices, 40) < 0.1


def test_the_lookup_is_chosen_only_where_the_decoder_has_one():
    choices = play(Adaptive(), lambda i, c: 6, 100, lookup=False)
    assert not any(is_lookup(c) for c in choices)
    with pytest.raises(SpecdiffError, match="ngram proposer is not among"):
        Fixed.ngram(4).reset(limits(16))
    Fixed.ngram(4).reset(limits(16, lookup=True))
    with pytest.raises(SpecdiffError, match="steps_options"):
        Adaptive(steps_options=(0,))
    lookup_only = Adaptive()
    lookup_only.reset({NGRAM: 16})
    seen = set()
    for i in range(30):
        choice = lookup_only.choose()
        seen.add(choice.proposer)
        k = choice.block_size
        lookup_only.observe(RoundStats(i, k, 0, 0, k, min(k, 3), min(k, 3) + 1, 1e-4 if k else 0.0, 0.01, 0.0,
                                       proposer=choice.proposer))
    assert seen <= {NGRAM, Proposer.PLAIN} and NGRAM in seen


def test_a_lookup_block_accepted_whole_doubles_the_next():
    """The lookup's runs are censored by its block as the model's are: a lookup block accepted
    whole doubles the next one (it sends no confidence, so no cut is needed first)."""
    def lookup_blocks(policy) -> list[int]:
        def accepted(i: int, c: Choice) -> int:
            return (2 if i < 30 else EVERYTHING) if is_lookup(c) else 1

        choices = play(policy, accepted, 60, canvas=64, lookup=True, machine=Machine(verify_per_token=0.0003))
        return [c.block_size for c in choices[30:] if c.block_size and is_lookup(c)]

    escalating = lookup_blocks(Adaptive())
    climb = escalating[: escalating.index(64) + 1]
    assert climb[0] < 16 and len(climb) <= 4 and all(b >= 2 * a for a, b in zip(climb, climb[1:], strict=False))
    assert 64 not in lookup_blocks(Adaptive(escalate=False))[:4]


def test_model_rounds_teach_how_far_the_lookup_would_have_gone():
    """The lookup's one warm-up round fails; later the text turns repetitive and the lookup's guess
    (reported by every model round) would reach far: Adaptive moves to it without trying it first."""
    def accepted(i: int, choice: Choice) -> int:
        return 0 if is_lookup(choice) and i < 10 else (12 if is_lookup(choice) else 4)

    machine = Machine(draft_per_step=0.01)
    told = play(Adaptive(explore_every=1000), accepted, 120, lookup=True, machine=machine,
                side_reach_for=lambda i: 0 if i < 10 else 12)
    assert lookup_share(told, 60) > 0.9
    # Without the report the failed warm-up round is all it knows, and it stays with the model.
    untold = play(Adaptive(explore_every=1000), accepted, 120, lookup=True, machine=machine)
    assert lookup_share(untold, 60) < 0.1


def test_the_choice_is_reweighed_every_few_rounds_and_at_once_on_entering_a_regime():
    class Counting(Adaptive):
        decisions: int = 0

        def _decide(self, probed, entered):
            self.decisions += 1
            return super()._decide(probed, entered)

    steady = Counting(decide_every=4)
    play(steady, lambda i, c: 3, 85)  # 5 warm-up rounds, then 80 in one regime (3 of a bigger block)
    assert 20 <= steady.decisions <= 22
    flipping = Counting(decide_every=4)
    play(flipping, lambda i, c: EVERYTHING if i % 2 else 0, 85)  # a new regime every round
    assert flipping.decisions >= 79
    with pytest.raises(SpecdiffError, match="decide_every"):
        Adaptive(decide_every=0)
