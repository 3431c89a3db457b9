"""The batch policies on synthetic rounds: what BatchAdaptive picks follows the acceptance and costs it sees."""

from __future__ import annotations

import pytest

from specdiff import SpecdiffError
from specdiff.controllers import PLAIN, Choice, Proposer
from specdiff.controllers.batch import BatchAdaptive, BatchFixed, BatchRoundStats, nominal_batch_seconds
from specdiff.controllers.cost import NominalClock

LIMITS = {Proposer.DIFFUSION: 16, Proposer.NGRAM: 16}


def played(choice: Choice, batch: int, accepted: int, index: int, seconds: float) -> BatchRoundStats:
    """A round where every row accepted ``accepted`` of its block (capped at the block)."""
    k = choice.block_size
    n = min(accepted, k)
    return BatchRoundStats(
        round_index=index, batch_size=batch, proposer=choice.proposer, block_size=k,
        denoising_steps=choice.denoising_steps, denoising_steps_used=choice.denoising_steps, scored=1 + k,
        blocks=(k,) * batch, proposed=(k,) * batch, accepted=(n,) * batch, committed=(n + 1,) * batch,
        side_reach=(-1,) * batch, draft_s=seconds if k else 0.0, verify_s=0.01 + 0.001 * k, other_s=0.0)


def run_policy(policy: BatchAdaptive, accepts: dict[Proposer, int], draft_s: dict[Proposer, float],
               rounds: int = 80, batch: int = 4) -> list[Choice]:
    policy.reset(LIMITS, max_steps=8)
    chosen = []
    for i in range(rounds):
        choice = policy.choose(batch)
        chosen.append(choice)
        accepted = accepts.get(choice.proposer, 0)
        policy.observe(played(choice, batch, accepted, i, draft_s.get(choice.proposer, 0.0) * choice.denoising_steps
                              if choice.proposer is Proposer.DIFFUSION else draft_s.get(choice.proposer, 0.0)))
    return chosen


def test_a_lookup_that_is_always_right_wins():
    chosen = run_policy(BatchAdaptive(), {Proposer.NGRAM: 16, Proposer.DIFFUSION: 0},
                        {Proposer.NGRAM: 1e-4, Proposer.DIFFUSION: 0.05})
    late = chosen[40:]
    assert sum(c.proposer is Proposer.NGRAM for c in late) >= 0.8 * len(late)
    assert max(c.block_size for c in late if c.proposer is Proposer.NGRAM) >= 8


def test_a_drafter_that_is_always_right_beats_a_useless_lookup():
    chosen = run_policy(BatchAdaptive(), {Proposer.NGRAM: 0, Proposer.DIFFUSION: 16},
                        {Proposer.NGRAM: 1e-4, Proposer.DIFFUSION: 0.005})
    late = chosen[40:]
    assert sum(c.proposer is Proposer.DIFFUSION for c in late) >= 0.8 * len(late)


def test_nothing_accepted_means_plain_decoding_with_probes():
    chosen = run_policy(BatchAdaptive(), {}, {Proposer.NGRAM: 1e-3, Proposer.DIFFUSION: 0.05})
    late = chosen[40:]
    assert sum(c == PLAIN for c in late) >= 0.8 * len(late)
    assert any(c != PLAIN for c in late)  # probes keep the acceptance counts alive


def test_settings_follow_the_decoder_and_bad_options_are_refused():
    policy = BatchAdaptive(steps_options=(1, 2, 50))
    policy.reset({Proposer.NGRAM: 8}, None)
    assert {p for p, _, _ in policy.settings.rows} == {Proposer.NGRAM}
    assert all(c.proposer in (Proposer.NGRAM, Proposer.PLAIN) for c in policy.warmup)
    policy.reset(LIMITS, max_steps=2)
    assert sorted(s for p, s, _ in policy.settings.rows if p is Proposer.DIFFUSION) == [1, 2]
    with pytest.raises(SpecdiffError, match="n-gram"):
        BatchAdaptive(steps_options=(0, 1))
    with pytest.raises(SpecdiffError, match="recycling"):
        BatchFixed(Choice.diffusion(4, 1, recycle_canvas=True)).reset(LIMITS)


def test_nominal_clock_depends_only_on_the_round():
    a = played(Choice.diffusion(8, 2), 4, 3, 0, 0.123)
    b = played(Choice.diffusion(8, 2), 4, 3, 0, 9.0)
    assert nominal_batch_seconds(a) == nominal_batch_seconds(b)
    assert nominal_batch_seconds(played(Choice.ngram(8), 4, 3, 0, 1.0)).draft_s < nominal_batch_seconds(a).draft_s
    dear = NominalClock(verify_per_token=0.5, step=2.0)  # a pair's own clock: each row-token scored costs half a step
    assert nominal_batch_seconds(a, dear).verify_s == pytest.approx(1.0 + 0.5 * 4 * 9)
    assert nominal_batch_seconds(a, dear).draft_s == pytest.approx(2.0 * 2 + dear.draft_token * 8 * 4)


def test_a_compute_bound_verifier_makes_even_a_perfect_lookup_lose_to_plain_decoding():
    """Each scored position costing a whole plain round: K + 1 positions for at most K + 1 tokens."""
    policy = BatchAdaptive()
    policy.reset(LIMITS, max_steps=8)
    chosen = []
    for i in range(80):
        choice = policy.choose(8)
        chosen.append(choice)
        stats = played(choice, 8, 16 if choice.proposer is Proposer.NGRAM else 0, i, 1e-4)
        policy.observe(BatchRoundStats(**{**stats.__dict__, "verify_s": 0.01 * (1 + choice.block_size)}))
    late = chosen[40:]
    assert sum(c == PLAIN for c in late) >= 0.8 * len(late)


def test_wide_blocks_are_cut_where_their_round_costs_more_than_a_row_can_return():
    """A lookup whose first token is right half the time (then the whole block is): no block may
    cost more than 1 / (1 - 0.5) = 2 plain rounds. At B = 8 each 8 row-tokens scored cost a plain
    round's worth more, so wide blocks are cut; at B = 1 the forward hardly grows and the blocks the
    policy ran there stay."""
    policy = BatchAdaptive()
    policy.reset(LIMITS, max_steps=8)
    for i in range(160):
        batch = 8 if i < 80 else 1
        choice = policy.choose(batch)
        stats = played(choice, batch, 0 if i % 2 else 16, i, 1e-4)
        scored = batch * (1 + choice.block_size)
        verify = 0.01 * (1 + scored / 8) if batch == 8 else 0.01 * (1 + scored / 256)
        policy.observe(BatchRoundStats(**{**stats.__dict__, "verify_s": verify}))
    lookup = policy.settings.index(Proposer.NGRAM, 0, False)
    grid = list(policy.grid)
    wide = policy.paying_blocks(8)[lookup]
    assert wide[grid.index(1)] and not wide[grid.index(8)] and not wide[grid.index(16)]
    assert policy.paying_blocks(1)[lookup][: grid.index(12) + 1].all()  # the blocks it ran at B = 1


def test_a_batch_warms_up_on_the_cheap_lookup_and_runs_the_model_once():
    from specdiff.controllers.batch import batch_warmup
    from specdiff.controllers.settings import Settings

    warmup = batch_warmup(Settings(LIMITS, (1, 2), (False,)), start_block_size=8)
    assert warmup[:2] == [Choice.ngram(2), Choice.ngram(8)]
    assert [c.proposer for c in warmup].count(Proposer.DIFFUSION) == 1
    assert warmup[2] == Choice.diffusion(2, 1) and warmup[-1] == PLAIN
    only_model = batch_warmup(Settings({Proposer.DIFFUSION: 16}, (1, 2), (False,)), start_block_size=8)
    assert Proposer.NGRAM not in {c.proposer for c in only_model} and only_model[-1] == PLAIN


def test_only_a_change_of_setting_needs_the_hysteresis_margin():
    policy = BatchAdaptive(hysteresis=0.1)
    policy.reset(LIMITS, max_steps=8)
    policy.current = Choice.ngram(2)
    assert policy._margin(Choice.ngram(4)) == 0.0
    assert policy._margin(Choice.diffusion(2, 1)) == pytest.approx(0.1)
