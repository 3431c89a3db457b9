"""Batched decoding: every row's output is its own ``generate()``, whatever the batch does."""

from __future__ import annotations

import pytest
import torch
from helpers import CANVAS, SHAPE, chi2_pvalue, reference_greedy
from specdiff.drafts import DiffusionGemmaDrafter, NgramLookup, ProposalMode
from stand_ins import OracleDrafter
from test_sampling import TOP_K, exact_two_token_law

from specdiff import SamplingConfig, SpecdiffError, SpeculativeDecoder
from specdiff.args import GenerateArgs
from specdiff.batch import BatchRun
from specdiff.controllers import PLAIN, Choice, Fixed, Proposer
from specdiff.controllers.batch import BatchAdaptive, BatchFixed

NEW = 24


def prompts_of(*lengths: int, seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(3, SHAPE.vocab_size, (n,), generator=gen).tolist() for n in lengths]


PROMPTS = prompts_of(1, 5, 12, SHAPE.sliding_window + 9, 40, 3, 7, 20)


@pytest.mark.parametrize("size", [1, 3, 8])
@pytest.mark.parametrize("block_size,steps", [(1, 1), (5, 2), (None, None)])
def test_greedy_rows_equal_generate(decoder, verifier, size, block_size, steps):
    prompts = PROMPTS[:size]
    results = decoder.generate_batch(prompts, max_new_tokens=NEW, block_size=block_size, denoising_steps=steps,
                             seed=0, eos_token_id=[])
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == reference_greedy(verifier, prompt, NEW)
        assert result.prompt_ids == prompt and sum(s.committed for s in result.stats) == NEW


def test_batch_of_one_is_generate(decoder):
    prompt = PROMPTS[3]
    alone = decoder.generate(prompt, max_new_tokens=NEW, block_size=4, denoising_steps=1, seed=3, eos_token_id=[])
    [batched] = decoder.generate_batch([prompt], max_new_tokens=NEW, block_size=4, denoising_steps=1, seed=3,
                               eos_token_id=[])
    assert batched.token_ids == alone.token_ids
    assert [s.accepted for s in batched.stats] == [s.accepted for s in alone.stats]


def test_next_token_canvas_rows_equal_generate_and_draft_as_alone(drafter, verifier):
    """The batched session's next-token canvas: every row exact, and a batch of one drafts (accepts)
    exactly as the single-row session does."""
    decoder = SpeculativeDecoder(DiffusionGemmaDrafter(drafter.model, next_token_canvas=True), verifier)
    prompts = PROMPTS[:4]
    results = decoder.generate_batch(prompts, max_new_tokens=NEW, block_size=5, denoising_steps=3, seed=0,
                                     eos_token_id=[])
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == reference_greedy(verifier, prompt, NEW)
    alone = decoder.generate(PROMPTS[3], max_new_tokens=NEW, block_size=5, denoising_steps=3, seed=1, eos_token_id=[])
    [batched] = decoder.generate_batch([PROMPTS[3]], max_new_tokens=NEW, block_size=5, denoising_steps=3, seed=1,
                                       eos_token_id=[])
    assert [s.accepted for s in batched.stats] == [s.accepted for s in alone.stats]


def test_lookup_rounds_propose_ragged_blocks(verifier):
    """The n-gram lookup (one session per row) proposes each row's guess: rows with and without one."""
    lookup = SpeculativeDecoder(NgramLookup(verifier.vocab_size, max_block_size=CANVAS), verifier, Fixed.ngram(6))
    prompts = [[5, 4, 17, 99, 4, 17], [7, 8, 9, 10], PROMPTS[4]]  # a recurring 4-17, no repeat, random
    results = lookup.generate_batch(prompts, max_new_tokens=NEW, eos_token_id=[])
    for prompt, result in zip(prompts, results, strict=True):
        assert result.token_ids == reference_greedy(verifier, prompt, NEW)
        assert all(s.proposer in (Proposer.NGRAM, Proposer.PLAIN) for s in result.stats)
    assert results[0].stats[0].proposed > 0 and results[1].stats[0].proposed == 0


def two_proposers(drafter, verifier) -> SpeculativeDecoder:
    seeded = DiffusionGemmaDrafter(drafter.model, context_seed=True)
    return SpeculativeDecoder([seeded, NgramLookup(verifier.vocab_size, max_block_size=CANVAS)], verifier)


def test_policy_switching_proposers_keeps_every_row_exact(drafter, verifier):
    """Rounds alternate between the drafter and the lookup, each session catching up on what it did
    not see (rows joining in between); the drafter's seeded canvases report the lookup's guess."""
    decoder = two_proposers(drafter, verifier)
    choices = [Choice.diffusion(4, 1), Choice.ngram(5), Choice.ngram(3), Choice.diffusion(6, 2), PLAIN]

    class Rotating(BatchFixed):
        def choose(self, batch_size):
            self.turn = getattr(self, "turn", -1) + 1
            return choices[self.turn % len(choices)]

    run = BatchRun(decoder, GenerateArgs(max_new_tokens=NEW, seed=0, eos_token_id=()), policy=Rotating())
    ids = [run.add(p) for p in PROMPTS[:3]]
    run.step()
    run.step()
    ids.append(run.add(PROMPTS[5]))
    list(run.rounds())
    for row_id, prompt in zip(ids, [*PROMPTS[:3], PROMPTS[5]], strict=True):
        result = run.result(row_id)
        assert result.token_ids == reference_greedy(verifier, prompt, NEW)
        proposers = {s.proposer for s in result.stats}
        assert {Proposer.DIFFUSION, Proposer.NGRAM} <= proposers
        diffusion = [s for s in result.stats if s.proposer is Proposer.DIFFUSION]
        assert all(s.side_reach >= 0 for s in diffusion)  # the seeded canvas's guess, scored
        assert all(s.side_reach == -1 for s in result.stats if s.proposer is not Proposer.DIFFUSION)


def test_adaptive_weighs_the_lookup_and_the_drafter(drafter, verifier):
    """With both proposers the batch policy's warm-up runs both; rows stay exact."""
    decoder = two_proposers(drafter, verifier)
    policy = BatchAdaptive()
    results = decoder.generate_batch(PROMPTS[:3], max_new_tokens=40, policy=policy, eos_token_id=[])
    assert [r.token_ids for r in results] == [reference_greedy(verifier, p, 40) for p in PROMPTS[:3]]
    warm = [s.proposer for s in results[0].stats[: len(policy.warmup)]]
    assert Proposer.NGRAM in warm and Proposer.DIFFUSION in warm and Proposer.PLAIN in warm


def test_eos_at_different_rounds_and_a_row_ending_in_its_first_round(decoder, verifier):
    prompts = PROMPTS[:4]
    free = [reference_greedy(verifier, p, 30) for p in prompts]
    # Row 0 stops at its first token, the others later: stop tokens from different rows' outputs.
    stops = [free[0][0], free[1][10], free[2][20]]
    expected = [reference_greedy(verifier, p, 30, eos=stops) for p in prompts]
    assert len(expected[0]) == 1 and len({len(e) for e in expected}) > 1
    oracle = OracleDrafter(free[1], SHAPE.vocab_size, 16)  # right for row 1 (bonus paths), wrong elsewhere
    for engine in (decoder, SpeculativeDecoder(oracle, verifier)):
        results = engine.generate_batch(prompts, max_new_tokens=30, block_size=6, eos_token_id=stops)
        assert [r.token_ids for r in results] == expected
        assert results[0].num_rounds == 1


def test_rows_join_mid_run_and_leave(decoder, verifier):
    run = BatchRun(decoder, GenerateArgs(max_new_tokens=NEW, block_size=3, denoising_steps=1, seed=0, eos_token_id=()))
    first = [run.add(p) for p in PROMPTS[:2]]
    for _ in range(3):
        run.step()
    joined = run.add(PROMPTS[3])
    sizes = [r.stats.batch_size for r in run.rounds()]
    assert sizes[0] == 3 and sizes[-1] == 1  # the late row runs alone at the end
    for row_id, prompt in zip([*first, joined], [PROMPTS[0], PROMPTS[1], PROMPTS[3]], strict=True):
        assert run.result(row_id).token_ids == reference_greedy(verifier, prompt, NEW)
    assert run.done


def test_stream_batch_adds_up_and_seeded_sampling_repeats(decoder):
    kwargs = dict(max_new_tokens=16, block_size=4, denoising_steps=2, temperature=1.0, top_k=20, seed=5,
                  eos_token_id=[])
    rounds = list(decoder.stream_batch(PROMPTS[:3], **kwargs))
    streamed = {i: [t for r in rounds for t in r.tokens.get(i, [])] for i in range(3)}
    a = decoder.generate_batch(PROMPTS[:3], **kwargs)
    b = decoder.generate_batch(PROMPTS[:3], **kwargs)
    assert [r.token_ids for r in a] == [r.token_ids for r in b] == [streamed[i] for i in range(3)]


def test_max_new_tokens_zero_and_one(decoder, verifier):
    assert [r.token_ids for r in decoder.generate_batch(PROMPTS[:2], max_new_tokens=0)] == [[], []]
    one = decoder.generate_batch(PROMPTS[:2], max_new_tokens=1, block_size=8, eos_token_id=[])
    assert [r.token_ids for r in one] == [reference_greedy(verifier, p, 1) for p in PROMPTS[:2]]
    assert all(r.stats[0].proposed == 0 for r in one)


def test_adaptive_falls_back_to_plain_batched_decoding(decoder, verifier):
    """Random tiny models accept nothing: after its warm-up the policy decodes plainly, probes aside."""
    policy = BatchAdaptive()
    results = decoder.generate_batch(PROMPTS[:4], max_new_tokens=60, policy=policy, eos_token_id=[])
    assert [r.token_ids for r in results] == [reference_greedy(verifier, p, 60) for p in PROMPTS[:4]]
    late = [s.block_size for s in results[0].stats[len(policy.warmup) + 8 :]]
    assert late.count(0) >= 0.8 * len(late)


def test_plain_policy_and_fixed_policy(decoder, verifier):
    plain = decoder.generate_batch(PROMPTS[:3], max_new_tokens=10, policy=BatchFixed(PLAIN), eos_token_id=[])
    assert all(s.proposed == 0 for r in plain for s in r.stats)
    assert [r.token_ids for r in plain] == [reference_greedy(verifier, p, 10) for p in PROMPTS[:3]]
    with pytest.raises(SpecdiffError, match="block_size"):
        decoder.generate_batch(PROMPTS[:1], policy=BatchFixed(Choice.diffusion(10_000, 1)))
    with pytest.raises(SpecdiffError, match="ngram proposer is not among"):
        decoder.generate_batch(PROMPTS[:1], policy=BatchFixed(Choice.ngram(4)))
    with pytest.raises(SpecdiffError, match="recycling"):
        decoder.generate_batch(PROMPTS[:1], policy=BatchFixed(Choice.diffusion(4, 1, recycle_canvas=True)))


def test_bad_input_is_refused_clearly(decoder):
    with pytest.raises(SpecdiffError, match="empty"):
        decoder.generate_batch([])
    with pytest.raises(SpecdiffError, match="prompt 1: the prompt is empty"):
        decoder.generate_batch([[5, 6], []])
    with pytest.raises(SpecdiffError, match="mixes prompt kinds"):
        decoder.generate_batch(["def f():", [5, 6]])
    with pytest.raises(SpecdiffError, match="wrap"):
        decoder.generate_batch([5, 6, 7])
    with pytest.raises(SpecdiffError, match="wrap"):
        decoder.generate_batch([{"role": "user", "content": "hi"}])
    with pytest.raises(SpecdiffError, match="unknown generation argument"):
        decoder.generate_batch([[5]], max_tokens=4)
    with pytest.raises(SpecdiffError, match="wrap a single prompt"):
        decoder.generate_batch("def f():")
    with pytest.raises(SpecdiffError, match="max_new_tokens"):
        decoder.generate_batch([[5]], max_new_tokens=-1)
    with pytest.raises(SpecdiffError, match="positions"):
        decoder.generate_batch([[5] * 10], max_new_tokens=SHAPE.max_position_embeddings)


def test_string_prompts(decoder, verifier):
    texts = ["def add(a, b):", "class Round:\n    def __init__(self):"]
    results = decoder.generate_batch(texts, max_new_tokens=8, block_size=3, eos_token_id=[])
    for text, result in zip(texts, results, strict=True):
        ids = verifier.tokenizer(text)["input_ids"]
        assert result.token_ids == reference_greedy(verifier, ids, 8)
        assert result.text == verifier.tokenizer.decode(result.token_ids, skip_special_tokens=True)


@pytest.mark.slow
def test_sampled_rows_follow_the_verifier(drafter, verifier):
    """Chi-square on the first two tokens of each row, rows of different lengths in one batch."""
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.RESAMPLE)
    decoder = SpeculativeDecoder(engine, verifier)
    prompts = [[5, 17, 99, 4], [9, 8, 7, 6, 5, 4, 3, 200, 11, 12]]
    laws = [exact_two_token_law(verifier, p, SamplingConfig(1.0, TOP_K)) for p in prompts]
    counts = [torch.zeros_like(law) for law in laws]
    draws = 600
    for seed in range(draws):
        results = decoder.generate_batch(prompts, max_new_tokens=2, block_size=2, denoising_steps=1,
                                 temperature=1.0, top_k=TOP_K, seed=seed, eos_token_id=[])
        for count, result in zip(counts, results, strict=True):
            a, b = result.token_ids
            count[a * SHAPE.vocab_size + b] += 1
    for count, law in zip(counts, laws, strict=True):
        assert chi2_pvalue(count, law) > 1e-3
