"""Rows of one batch with arguments of their own, and rows cancelled mid-run (what a server needs)."""

from __future__ import annotations

import pytest
import torch
from helpers import SHAPE, chi2_pvalue, reference_greedy
from specdiff.drafts import DiffusionGemmaDrafter, ProposalMode
from test_batch import PROMPTS
from test_sampling import TOP_K, exact_two_token_law

from specdiff import SamplingConfig, SpecdiffError, SpeculativeDecoder
from specdiff.args import GenerateArgs
from specdiff.batch import BatchRun
from specdiff.controllers import Proposer

NEVER = GenerateArgs(max_new_tokens=16, eos_token_id=())


def run_out(run: BatchRun) -> None:
    for _ in run.rounds():
        pass


def test_a_cancelled_row_leaves_and_the_others_stay_exact(decoder, verifier):
    run = BatchRun(decoder, GenerateArgs(max_new_tokens=20, eos_token_id=(), block_size=4, denoising_steps=1))
    a, b, c = (run.add(p) for p in PROMPTS[2:5])
    run.step()
    run.step()
    partial = run.cancel(b)
    assert len(run.active) == 2 and partial.token_ids
    assert partial.token_ids == reference_greedy(verifier, PROMPTS[3], 20)[: len(partial.token_ids)]
    d = run.add(PROMPTS[5])
    queued = run.add(PROMPTS[6])
    assert run.cancel(queued).token_ids == []  # a row still waiting leaves before it ever ran
    run_out(run)
    for row, prompt in ((a, PROMPTS[2]), (c, PROMPTS[4]), (d, PROMPTS[5])):
        assert run.result(row).token_ids == reference_greedy(verifier, prompt, 20)
    assert run.cancel(a).token_ids == reference_greedy(verifier, PROMPTS[2], 20)  # finished: handed back
    with pytest.raises(SpecdiffError, match="not in this batch"):
        run.cancel(a)


def test_a_batch_emptied_by_cancels_takes_new_rows(decoder, verifier):
    run = BatchRun(decoder, GenerateArgs(max_new_tokens=12, eos_token_id=(), block_size=3, denoising_steps=1))
    rows = [run.add(p) for p in PROMPTS[:3]]
    run.step()
    for row in rows:
        run.cancel(row)
    assert run.done
    late = run.add(PROMPTS[3])
    run_out(run)
    assert run.pop_result(late).token_ids == reference_greedy(verifier, PROMPTS[3], 12)
    assert late not in run.results


def test_rows_carry_their_own_length_eos_and_draft_cap(decoder, verifier):
    run = BatchRun(decoder, GenerateArgs(max_new_tokens=16, eos_token_id=(), block_size=5, denoising_steps=1))
    reference = reference_greedy(verifier, PROMPTS[4], 16)
    stop = reference[6]  # an EOS id this row meets at its seventh token
    rows = [
        (run.add(PROMPTS[1], GenerateArgs.of(run.args, {"max_new_tokens": 5})), PROMPTS[1], 5, None),
        (run.add(PROMPTS[4], GenerateArgs.of(run.args, {"eos_token_id": stop})), PROMPTS[4], 16, [stop]),
        (run.add(PROMPTS[3], draft_cap=0), PROMPTS[3], 16, None),
        (run.add(PROMPTS[2], draft_cap=2), PROMPTS[2], 16, None),
    ]
    run_out(run)
    for row, prompt, length, eos in rows:
        assert run.result(row).token_ids == reference_greedy(verifier, prompt, length, eos)
    assert len(run.result(rows[1][0]).token_ids) <= 7
    assert all(s.proposed == 0 and s.proposer is Proposer.PLAIN for s in run.result(rows[2][0]).stats)
    assert max(s.proposed for s in run.result(rows[3][0]).stats) == 2


def test_what_the_whole_batch_shares_is_refused_per_row(decoder):
    run = BatchRun(decoder, GenerateArgs(max_new_tokens=8, block_size=4))
    with pytest.raises(SpecdiffError, match="block_size are the whole batch's"):
        run.add(PROMPTS[0], GenerateArgs(max_new_tokens=8, block_size=2))
    with pytest.raises(SpecdiffError, match="draft_cap must be"):
        run.add(PROMPTS[0], draft_cap=-1)
    with pytest.raises(SpecdiffError, match="exceeds the verifier's"):
        run.add(PROMPTS[0], GenerateArgs.of(run.args, {"max_new_tokens": 10**6}))


def test_a_seeded_plain_row_repeats_whatever_its_companions(decoder):
    """A seeded row samples from its own generator: without drafts its tokens depend on nothing else."""
    sampled = GenerateArgs(max_new_tokens=12, temperature=1.0, seed=7, eos_token_id=())
    outputs = []
    for companions in (PROMPTS[:1], PROMPTS[4:7]):
        run = BatchRun(decoder, NEVER)
        for p in companions:
            run.add(p)
        row = run.add(PROMPTS[3], sampled, draft_cap=0)
        run_out(run)
        outputs.append(run.result(row).token_ids)
    assert outputs[0] == outputs[1]


@pytest.mark.slow
def test_a_sampled_row_beside_greedy_rows_follows_the_verifier(drafter, verifier):
    """Per-row sampling: a sampled row in a greedy batch (one-hot ARGMAX drafts) keeps the verifier's law,
    and the greedy row stays exact."""
    decoder = SpeculativeDecoder(DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.AUTO), verifier)
    prompt, greedy_prompt = [5, 17, 99, 4], PROMPTS[2]
    sampling = SamplingConfig(1.0, TOP_K)
    law = exact_two_token_law(verifier, prompt, sampling)
    count = torch.zeros_like(law)
    expected = reference_greedy(verifier, greedy_prompt, 2)
    for seed in range(300):
        run = BatchRun(decoder, GenerateArgs(max_new_tokens=2, block_size=2, denoising_steps=1, eos_token_id=(),
                                             seed=seed))
        greedy = run.add(greedy_prompt)
        row = run.add(prompt, GenerateArgs.of(run.args, {"temperature": 1.0, "top_k": TOP_K, "seed": None}))
        run_out(run)
        a, b = run.result(row).token_ids
        count[a * SHAPE.vocab_size + b] += 1
        assert run.result(greedy).token_ids == expected
    assert chi2_pvalue(count, law) > 1e-3
