"""The n-gram proposer and context-seeded canvases: the lookup, the drafter's starting canvas, the
n-gram engine, the side report, and the training objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CANVAS, reference_greedy
from hypothesis import given, settings
from hypothesis import strategies as st
from specdiff.drafts import DiffusionGemmaDrafter, NgramLookup, ProposalMode
from specdiff.drafts.ngram import ContextSeed, context_continuation

from specdiff import SpeculativeDecoder
from specdiff.protocols import Choice, Proposer


def brute_force_continuation(history: list[int], length: int, seed: ContextSeed) -> list[int]:
    """The lookup by its definition: scan for the latest earlier match, copy token by token."""
    total = len(history)
    for n in range(seed.max_ngram, seed.min_ngram - 1, -1):
        if total <= n:
            continue
        suffix = history[total - n :]
        for start in range(total - n - 1, -1, -1):
            if history[start : start + n] == suffix:
                text = list(history)
                for i in range(length):  # copying past the end copies what was just copied
                    text.append(text[start + n + i])
                return text[total:]
    return []


def test_lookup_examples():
    seed = ContextSeed(min_ngram=1, max_ngram=3)
    assert context_continuation(torch.tensor([5, 1, 2, 3, 9, 1, 2]), 5, seed).tolist() == [3, 9, 1, 2, 3]
    assert context_continuation(torch.tensor([7, 202, 6, 202, 6]), 5, seed).tolist() == [202, 6, 202, 6, 202]
    assert context_continuation(torch.tensor([1, 2, 3]), 4, seed).numel() == 0  # nothing recurs
    # The longest n-gram wins over a more recent shorter match.
    longest = torch.tensor([1, 2, 8, 9, 2, 7, 1, 2])
    assert context_continuation(longest, 2, seed).tolist() == [8, 9]
    assert context_continuation(longest, 2, ContextSeed(1, 1)).tolist() == [7, 1]


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(st.integers(0, 3), min_size=1, max_size=24),
    length=st.integers(1, 12),
    ngrams=st.tuples(st.integers(1, 4), st.integers(0, 3)),
)
def test_lookup_matches_its_definition(history, length, ngrams):
    seed = ContextSeed(min_ngram=ngrams[0], max_ngram=ngrams[0] + ngrams[1])
    got = context_continuation(torch.tensor(history), length, seed).tolist()
    assert got == brute_force_continuation(history, length, seed)


@settings(max_examples=150, deadline=None)
@given(
    histories=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=20), min_size=1, max_size=5),
    length=st.integers(1, 8),
    ngrams=st.tuples(st.integers(1, 3), st.integers(0, 2)),
)
def test_batched_lookup_matches_its_definition_row_by_row(histories, length, ngrams):
    """Rows of different lengths in one call: each row's guess (or its absence) is its own."""
    from specdiff.drafts.ngram import context_continuations

    seed = ContextSeed(min_ngram=ngrams[0], max_ngram=ngrams[0] + ngrams[1])
    tokens, found = context_continuations([torch.tensor(h) for h in histories], length, seed)
    assert tokens.shape == (len(histories), length) and tokens.dtype == torch.long
    for row, history in enumerate(histories):
        expected = brute_force_continuation(history, length, seed)
        assert bool(found[row]) == bool(expected)
        assert (tokens[row].tolist() if found[row] else []) == expected


def test_batched_lookup_session_proposes_each_rows_guess_as_its_single_row_session_does(verifier):
    """The engine's batched session (rows joining, taking ragged new tokens, leaving) proposes, row
    for row, what one single-row session per row proposes: the guess, or nothing."""
    engine = lookup_engine(verifier)
    prompts = [[9, 4, 5, 6, 7, 4, 5], [40, 41, 42], [3, 3, 3, 3]]
    batched = engine.batch_session()
    batched.add_rows([torch.tensor(p) for p in prompts[:2]])
    singles = [engine.session(torch.tensor([p])) for p in prompts[:2]]
    rounds = [([6], [43]), ([7, 4], [], [3]), ([], [41, 42], [3, 3])]
    for step, new in enumerate(rounds):
        if step == 1:  # a row joins between rounds, as BatchRun admits it
            batched.add_rows([torch.tensor(prompts[2])])
            singles.append(engine.session(torch.tensor([prompts[2]])))
        ragged = batched.propose([torch.tensor(t, dtype=torch.long) for t in new], Choice.ngram(4), torch.Generator())
        for row, (single, tokens) in enumerate(zip(singles, new, strict=True)):
            alone = single.propose(torch.tensor([tokens], dtype=torch.long), Choice.ngram(4), torch.Generator())
            assert ragged.row(row).tokens.tolist() == alone.tokens.tolist()
            assert ragged.row(row).probs is None  # one-hot: the acceptance test reads the guess itself
    assert ragged.lengths.tolist() == [4, 4, 4]
    batched.remove_rows([2, 0])
    again = batched.propose([torch.tensor([3]), torch.tensor([12])], Choice.ngram(2), torch.Generator())
    assert again.lengths.tolist() == [2, 0]  # row 2's loop goes on; row 0 never saw a 12 before
    assert again.row(0).tokens.tolist() == [[3, 3]]


def test_bad_ngram_range_is_refused():
    with pytest.raises(ValueError, match="min_ngram"):
        ContextSeed(min_ngram=3, max_ngram=2)
    with pytest.raises(ValueError, match="min_ngram"):
        ContextSeed(min_ngram=0, max_ngram=2)


def seeded_engine(drafter, mode=ProposalMode.AUTO) -> DiffusionGemmaDrafter:
    return DiffusionGemmaDrafter(drafter.model, proposal_mode=mode, context_seed=ContextSeed())


def test_starting_canvas_holds_the_guess_over_the_same_noise(drafter):
    prompt = torch.tensor([[9, 4, 5, 6, 7, 4, 5]])
    seeded = seeded_engine(drafter).session(prompt)
    plain = drafter.session(prompt)
    start, side = seeded._starting_canvas(1, 0, False, torch.Generator().manual_seed(4))
    noise, none = plain._starting_canvas(1, 0, False, torch.Generator().manual_seed(4))
    guess = context_continuation(prompt[0], CANVAS)
    assert guess.numel() == CANVAS
    assert torch.equal(start[0], guess)
    assert none is None and side.proposer is Proposer.NGRAM and torch.equal(side.tokens[0], guess)
    seeded.propose(torch.tensor([[11, 12]]), Choice.diffusion(3, 1), torch.Generator())  # 12 never occurred
    assert seeded.history.tolist() == [[9, 4, 5, 6, 7, 4, 5, 11, 12]]
    again, side = seeded._starting_canvas(1, 0, False, torch.Generator().manual_seed(4))
    assert torch.equal(again, noise) and side.tokens[0].numel() == 0  # no guess: pure noise


@pytest.mark.parametrize("mode", [ProposalMode.ARGMAX, ProposalMode.RESAMPLE])
def test_seeded_draft_distribution_is_the_model_on_the_seeded_canvas(drafter, mode):
    """The proposal's distribution is recomputed from scratch on the guess-seeded canvas: what the
    acceptance test reads is what the tokens were drawn from."""
    engine = seeded_engine(drafter, mode)
    engine.encoder_first_token = False  # every row the decoder's: the canvas is what is under test
    prompt = torch.tensor([[9, 4, 5, 6, 7, 4, 5]])
    draft = engine.session(prompt).propose(prompt[:, :0], Choice.diffusion(5, 1), torch.Generator().manual_seed(2))
    from transformers import DynamicCache

    model = drafter.model
    canvas = context_continuation(prompt[0], CANVAS)[None]
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    with torch.no_grad():
        model.model.encoder(input_ids=prompt, cache=cache, use_cache=True)
        logits = model(decoder_input_ids=canvas, cache=cache).logits[:, :5] / engine.denoising.t_max
    if mode is ProposalMode.ARGMAX:
        assert torch.equal(draft.tokens, logits.argmax(-1))
    else:
        assert torch.allclose(draft.probs, torch.softmax(logits, dim=-1), atol=1e-5)


@pytest.mark.parametrize("block_size,steps", [(4, 1), (CANVAS, 2)])
def test_greedy_equals_generate_with_context_seed(drafter, verifier, block_size, steps):
    decoder = SpeculativeDecoder(seeded_engine(drafter), verifier)
    prompt = [5, 9, 12, 30, 5, 9, 12, 30, 5, 9]  # recurring n-grams: most rounds start from a guess
    result = decoder.generate(prompt, max_new_tokens=40, block_size=block_size, denoising_steps=steps, seed=0,
                              eos_token_id=[])
    assert result.token_ids == reference_greedy(verifier, prompt, 40)


def test_seed_canvases_replaces_chosen_canvases_with_the_guess():
    from specdiff.training.diffusion import DiffusionObjective, seed_canvases

    obj = DiffusionObjective(canvas_length=3, context_seed_prob=1.0, context_seed=ContextSeed(2, 2))
    ids = torch.tensor([[1, 2, 3, 1, 2, 9, 9, 9, 9], [4, 5, 6, 7, 8, 9, 10, 11, 12]])
    cuts = [5, 2]  # row 0: "1 2" recurs before cut 5; row 1 never repeats
    canvas = torch.full((2, 6), 99)
    seeded = seed_canvases(canvas, ids, cuts, obj)
    assert seeded[0, :3].tolist() == [3, 1, 2]  # what followed the earlier "1 2", copied on
    assert seeded[0, 3:].tolist() == [99, 99, 99]  # ids[0, :2] = "1 2" has no earlier occurrence
    assert seeded[1].tolist() == [99] * 6
    assert canvas.eq(99).all()  # the input is not modified
    off = DiffusionObjective(canvas_length=3, context_seed_prob=0.0)
    assert seed_canvases(canvas, ids, cuts, off) is canvas


def test_drafter_follows_the_checkpoint_unless_told(tiny_dirs, tmp_path):
    from specdiff.drafts.ngram import CONFIG_KEY

    plain = DiffusionGemmaDrafter.from_pretrained(tiny_dirs[1])
    assert plain.context_seed is None  # not trained for seeded canvases: pure noise
    setattr(plain.model.config, CONFIG_KEY, {"min_ngram": 2, "max_ngram": 4})
    plain.model.save_pretrained(tmp_path)
    assert DiffusionGemmaDrafter.from_pretrained(tmp_path).context_seed == ContextSeed(2, 4)
    assert DiffusionGemmaDrafter.from_pretrained(tmp_path, context_seed=False).context_seed is None
    assert DiffusionGemmaDrafter(plain.model, context_seed=True).context_seed == ContextSeed()


# -- the n-gram proposer: the lookup's guess proposed as it is ----------------------------------------


def lookup_engine(verifier) -> NgramLookup:
    return NgramLookup(verifier.vocab_size, ContextSeed(), max_block_size=CANVAS)


def test_an_ngram_draft_is_the_lookup_guess_and_one_hot(verifier):
    prompt = torch.tensor([[9, 4, 5, 6, 7, 4, 5]])
    session = lookup_engine(verifier).session(prompt)
    draft = session.propose(torch.tensor([[6]]), Choice.ngram(5), torch.Generator())
    history = [9, 4, 5, 6, 7, 4, 5, 6]
    assert draft.tokens.tolist() == [brute_force_continuation(history, 5, ContextSeed())]
    assert draft.denoising_steps_used == 0 and draft.probs is None and draft.confidence() is None
    assert draft.distribution(10).sum(-1).eq(1).all()  # one-hot: what the acceptance test reads
    # The context holds no earlier 12: no guess, nothing proposed.
    assert session.propose(torch.tensor([[12]]), Choice.ngram(5), torch.Generator()).tokens.shape == (1, 0)
    assert session.history.tolist() == [history + [12]]


def test_a_model_round_after_lookup_rounds_encodes_what_they_committed(drafter, verifier):
    """While the n-gram proposer drafts, the diffusion session is not called; its next round
    encodes every token committed meanwhile and drafts exactly what a session fed them at once drafts."""
    prompt = torch.tensor([[9, 4, 5, 6, 7, 4, 5]])
    seeded = seeded_engine(drafter)
    stepped = seeded.session(prompt)
    first = stepped.propose(prompt[:, :0], Choice.diffusion(4, 1), torch.Generator().manual_seed(2))
    late = stepped.propose(torch.tensor([[6, 7, 4, 5, 6]]), Choice.diffusion(4, 1), torch.Generator().manual_seed(3))
    direct = seeded.session(torch.tensor([[9, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6]])).propose(
        prompt[:, :0], Choice.diffusion(4, 1), torch.Generator().manual_seed(3))
    assert first.tokens.shape == (1, 4)
    assert torch.equal(late.tokens, direct.tokens)
    assert torch.allclose(late.scores, direct.scores, atol=1e-5)


@pytest.mark.parametrize("controller", ["lookup", "adaptive"])
def test_greedy_equals_generate_with_lookup_drafts(drafter, verifier, controller):
    from specdiff.controllers import Adaptive, Fixed

    policy = Fixed.ngram(6) if controller == "lookup" else Adaptive()
    decoder = SpeculativeDecoder([seeded_engine(drafter), lookup_engine(verifier)], verifier, controller=policy)
    for prompt in ([5, 9, 12, 30, 5, 9, 12, 30, 5, 9], [40, 41, 42, 43]):  # the second: no guess at first
        result = decoder.generate(prompt, max_new_tokens=48, seed=0, eos_token_id=[])
        assert result.token_ids == reference_greedy(verifier, prompt, 48)
        lookups = [s for s in result.stats if s.proposer is Proposer.NGRAM]
        assert lookups, "no round drafted from the lookup"
        assert all(s.denoising_steps_used == 0 for s in lookups)
    first = decoder.generate([40, 41, 42, 43], max_new_tokens=4, block_size=6, proposer="ngram").stats[0]
    assert (first.block_size, first.proposed, first.committed) == (3, 0, 1)  # no guess: a plain step


def test_model_rounds_report_how_far_the_lookup_guess_went():
    """On the pocket pair (its verifier repeats itself, so guesses do come true), every model
    round's ``side_reach`` equals the brute-force lookup's guess scored against what it committed."""
    from specdiff.controllers import Fixed
    from specdiff.loaders import load_pocket

    decoder = load_pocket()
    decoder.controller = Fixed(8, 1)
    prompt = decoder.encode_prompt("def parse(argv):\n    for arg in argv:\n")[0].tolist()
    result = decoder.generate(prompt, max_new_tokens=96, seed=0, eos_token_id=[])
    seed, starts = decoder.drafter.context_seed, np.cumsum([0] + [s.committed for s in result.stats])
    got, want = [], []
    for stats, start in zip(result.stats, starts, strict=False):
        committed = result.token_ids[start : start + stats.committed]
        guess = brute_force_continuation(prompt + result.token_ids[:start], decoder.drafter.canvas_length, seed)
        matched = [g == c for g, c in zip(guess, committed, strict=False)] + [False]
        got.append(stats.side_reach)
        want.append(matched.index(False) if stats.block_size else -1)
    assert got == want and max(got) > 1


def test_the_ngram_proposer_without_a_lookup_engine_is_refused_early(decoder):
    from specdiff import SpecdiffError

    with pytest.raises(SpecdiffError, match="ngram proposer is not among"):
        decoder.stream([5, 6, 7], max_new_tokens=8, proposer="ngram")
