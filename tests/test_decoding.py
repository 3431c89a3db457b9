"""The decode loop's guarantee: greedy output equals the verifier's own ``generate()``."""

from __future__ import annotations

import pytest
import torch
from helpers import CANVAS, SHAPE, reference_greedy
from specdiff.drafts import DiffusionGemmaDrafter, ProposalMode
from stand_ins import OracleDrafter

from specdiff import SpeculativeDecoder
from specdiff.decoding import cut_at_stop, side_reach
from specdiff.protocols import Proposer, SideReport

NEW = 24


def prompt_of(length: int, seed: int = 0) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, SHAPE.vocab_size, (length,), generator=gen).tolist()


# Prompt lengths from 1 to past the sliding window (16), block sizes 1, odd and the whole canvas.
@pytest.mark.parametrize("prompt_len", [1, 5, SHAPE.sliding_window + 9])
@pytest.mark.parametrize("block_size,steps", [(1, 1), (3, 4), (CANVAS, 1), (CANVAS, 3)])
def test_greedy_equals_generate(decoder, verifier, prompt_len, block_size, steps):
    prompt = prompt_of(prompt_len, seed=prompt_len)
    result = decoder.generate(prompt, max_new_tokens=NEW, block_size=block_size, denoising_steps=steps,
                              seed=0, eos_token_id=[])
    assert result.token_ids == reference_greedy(verifier, prompt, NEW)
    assert sum(s.committed for s in result.stats) == NEW
    assert all(s.proposed <= block_size for s in result.stats)


@pytest.mark.parametrize("next_token_canvas", [False, True])
@pytest.mark.parametrize("mode", list(ProposalMode))
def test_greedy_equals_generate_in_both_proposal_modes(drafter, verifier, mode, next_token_canvas):
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=mode, next_token_canvas=next_token_canvas)
    decoder = SpeculativeDecoder(engine, verifier)
    prompt = prompt_of(30, seed=3)
    result = decoder.generate(prompt, max_new_tokens=40, block_size=7, denoising_steps=2, seed=1, eos_token_id=[])
    assert result.token_ids == reference_greedy(verifier, prompt, 40)


def test_always_right_drafter_takes_the_bonus_path(verifier):
    prompt = prompt_of(20, seed=5)
    reference = reference_greedy(verifier, prompt, 50)
    oracle = OracleDrafter(reference, SHAPE.vocab_size, CANVAS)
    result = SpeculativeDecoder(oracle, verifier).generate(prompt, max_new_tokens=50, block_size=6,
                                                           eos_token_id=[])
    assert result.token_ids == reference
    full_rounds = [s for s in result.stats if s.proposed == 6]
    assert full_rounds and all(s.accepted == 6 and s.committed == 7 for s in full_rounds)
    assert result.acceptance_rate == 1.0
    assert result.num_rounds == 8  # 7 tokens a round: 7 * 7 = 49, then one plain round for the 50th


def test_always_wrong_drafter_still_lossless(verifier):
    prompt = prompt_of(9, seed=6)
    reference = reference_greedy(verifier, prompt, 30)
    wrong = OracleDrafter(reference, SHAPE.vocab_size, CANVAS, offset=1)
    result = SpeculativeDecoder(wrong, verifier).generate(prompt, max_new_tokens=30, block_size=4,
                                                          eos_token_id=[])
    assert result.token_ids == reference
    assert result.acceptance_rate == 0.0 and result.mean_acceptance_length == 1.0


def test_eos_inside_a_block_ends_the_output_there(verifier):
    prompt = prompt_of(12, seed=8)
    free = reference_greedy(verifier, prompt, 40)
    eos = free[9]  # a token the verifier writes at position 9 (maybe earlier too)
    expected = reference_greedy(verifier, prompt, 40, eos=[eos])
    assert expected[-1] == eos and len(expected) <= 10
    oracle = OracleDrafter(free, SHAPE.vocab_size, CANVAS)  # drafts straight through the EOS
    result = SpeculativeDecoder(oracle, verifier).generate(prompt, max_new_tokens=40, block_size=CANVAS,
                                                           eos_token_id=eos)
    assert result.token_ids == expected
    assert result.stats[-1].accepted > result.stats[-1].committed - 1  # the block was cut at EOS


def test_eos_list_and_generation_config_default(decoder, verifier):
    prompt = prompt_of(12, seed=8)
    free = reference_greedy(verifier, prompt, 40)
    stops = [free[20], free[6]]
    expected = reference_greedy(verifier, prompt, 40, eos=stops)
    assert decoder.generate(prompt, max_new_tokens=40, block_size=5, eos_token_id=stops).token_ids == expected
    default = decoder.generate(prompt, max_new_tokens=40, block_size=5)  # the verifier's own EOS ids
    assert default.token_ids == reference_greedy(verifier, prompt, 40, eos=list(verifier.eos_token_ids))


def test_max_new_tokens_zero_and_one(decoder, verifier):
    prompt = prompt_of(4)
    assert decoder.generate(prompt, max_new_tokens=0, eos_token_id=[]).token_ids == []
    one = decoder.generate(prompt, max_new_tokens=1, block_size=8, eos_token_id=[])
    assert one.token_ids == reference_greedy(verifier, prompt, 1)
    assert one.stats[0].proposed == 0  # nothing is drafted past the end of the output


def test_stream_yields_rounds_that_add_up(decoder):
    prompt = prompt_of(6)
    rounds = list(decoder.stream(prompt, max_new_tokens=20, block_size=4, seed=2, eos_token_id=[]))
    full = decoder.generate(prompt, max_new_tokens=20, block_size=4, seed=2, eos_token_id=[])
    assert [t for r in rounds for t in r.token_ids] == full.token_ids
    assert all(len(r.token_ids) == r.stats.committed for r in rounds)


def test_a_seeded_run_repeats_under_the_adaptive_policy(drafter, verifier):
    """Adaptive learns from seconds, and measured seconds never repeat: a seeded run feeds it the
    nominal clock and starts it afresh, so its choices, and the sampled text, repeat exactly, even
    after the decoder learnt from other runs."""
    from specdiff.drafts import NgramLookup

    from specdiff import SpeculativeDecoder
    from specdiff.controllers import Adaptive

    def make() -> SpeculativeDecoder:
        lookup = NgramLookup(verifier.vocab_size, max_block_size=drafter.canvas_length)
        return SpeculativeDecoder([drafter, lookup], verifier, controller=Adaptive())

    prompt = prompt_of(6) * 3
    kwargs = dict(max_new_tokens=60, temperature=0.7, seed=1, eos_token_id=[])
    seasoned = make()
    seasoned.generate(prompt, max_new_tokens=60, eos_token_id=[])  # unseeded: learns from the clock
    runs = [make().generate(prompt, **kwargs), make().generate(prompt, **kwargs), seasoned.generate(prompt, **kwargs)]

    def choices(result):
        return [(s.proposer, s.block_size, s.denoising_steps, s.proposed) for s in result.stats]

    assert runs[0].token_ids == runs[1].token_ids == runs[2].token_ids
    assert choices(runs[0]) == choices(runs[1]) == choices(runs[2])
    assert len({c[0] for c in choices(runs[0])}) > 1  # the policy really moved between proposers


def test_a_seeded_policy_learns_on_its_decoders_nominal_clock(drafter, verifier):
    """A pair whose multi-token forwards are dear carries a clock that says so: on a clock where each
    token scored past the first costs two plain steps no block pays, and the seeded policy settles on
    plain decoding; on the default clock (the pocket pair's cheap blocks) it drafts. Each repeats."""
    from specdiff.drafts import NgramLookup

    from specdiff import SpeculativeDecoder
    from specdiff.controllers.cost import NominalClock

    def drafted(clock: NominalClock) -> tuple[int, list[int]]:
        lookup = NgramLookup(verifier.vocab_size, max_block_size=drafter.canvas_length)
        decoder = SpeculativeDecoder([drafter, lookup], verifier, nominal_clock=clock)
        result = decoder.generate(prompt_of(6) * 3, max_new_tokens=80, temperature=0.7, seed=3, eos_token_id=[])
        return sum(s.proposed > 0 for s in result.stats[8:]), result.token_ids  # past the warm-up

    dear = NominalClock(verify_per_token=2.0)
    cheap_rounds, _ = drafted(NominalClock())
    dear_rounds, tokens = drafted(dear)
    assert dear_rounds < cheap_rounds / 3
    assert drafted(dear)[1] == tokens


def test_seeded_sampling_repeats(decoder):
    prompt = prompt_of(6)
    kwargs = dict(max_new_tokens=20, block_size=4, denoising_steps=2, temperature=1.0, top_k=20,
                  eos_token_id=[])
    a = decoder.generate(prompt, seed=11, **kwargs)
    b = decoder.generate(prompt, seed=11, **kwargs)
    assert a.token_ids == b.token_ids and [s.accepted for s in a.stats] == [s.accepted for s in b.stats]


def test_result_statistics_and_frame(decoder):
    result = decoder.generate(prompt_of(6), max_new_tokens=16, block_size=3, seed=0, eos_token_id=[])
    frame = result.stats_frame()
    assert len(frame) == result.num_rounds
    assert frame["committed"].sum() == len(result.token_ids) == 16
    assert result.mean_acceptance_length == pytest.approx(16 / result.num_rounds)
    assert result.acceptance_rate == pytest.approx(frame["accepted"].sum() / frame["proposed"].sum())
    assert (frame["total_s"] > 0).all()
    assert set(result.time_split()) == {"draft_s", "verify_s", "other_s"}


def test_side_reach_table():
    def side(*ids: int) -> SideReport:
        return SideReport(Proposer.NGRAM, (torch.tensor(ids, dtype=torch.long),))

    assert side_reach(None, [1, 2]) == -1  # no side report
    assert side_reach(side(), [1, 2]) == 0  # the lookup had none
    assert side_reach(side(1, 2, 9), [1, 2, 3, 4]) == 2
    assert side_reach(side(1, 2), [1, 2, 3]) == 2 and side_reach(side(5), [1]) == 0


def test_cut_at_stop_table():
    assert cut_at_stop([5, 6, 7], eos_ids=(6,), room=10) == ([5, 6], True)
    assert cut_at_stop([5, 6, 7], eos_ids=(), room=2) == ([5, 6], True)
    assert cut_at_stop([5, 6, 7], eos_ids=(9,), room=5) == ([5, 6, 7], False)
    assert cut_at_stop([5, 6, 7], eos_ids=(7,), room=2) == ([5, 6], True)


def test_string_prompt_and_text(decoder, verifier):
    result = decoder.generate("def add(a, b):", max_new_tokens=12, block_size=4, eos_token_id=[])
    ids = verifier.tokenizer("def add(a, b):")["input_ids"]
    assert result.prompt_ids == ids
    assert result.token_ids == reference_greedy(verifier, ids, 12)
    assert result.text == verifier.tokenizer.decode(result.token_ids, skip_special_tokens=True)


@pytest.mark.filterwarnings("error::FutureWarning")
def test_a_decode_raises_no_deprecation_warning(drafter, verifier):
    """transformers deprecates ``past_key_values=`` (removed in 5.40): every forward specdiff makes,
    the drafter's and the verifier's, passes the cache as ``cache=``."""
    from specdiff.drafts import NgramLookup

    from specdiff import SpeculativeDecoder

    decoder = SpeculativeDecoder([drafter, NgramLookup(verifier.vocab_size, max_block_size=CANVAS)], verifier)
    result = decoder.generate(prompt_of(6), max_new_tokens=24, eos_token_id=[])
    assert {s.proposer.value for s in result.stats} >= {"diffusion", "ngram"}
