"""Per-row rollback of the batched caches against a from-scratch recomputation, past the sliding window."""

from __future__ import annotations

import pytest
import torch
from helpers import CANVAS, SHAPE
from specdiff.drafts.diffusion_gemma import DiffusionDraftSession, ProposalMode
from specdiff.verifiers.batched import BatchedVerifierSession

from specdiff.protocols import Choice
from specdiff.row_buffers import NO_POSITION, ring_slots, visible


def test_visible_and_ring_slots_tables():
    keys = torch.tensor([[0, 1, 2, 3, NO_POSITION]])
    seen = visible(keys, torch.tensor([[2, 3]]), window=None)[0, 0].int().tolist()
    assert seen == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]]  # causal only: an empty slot needs a window to hide
    seen = visible(keys, torch.tensor([[2, 3]]), window=2)[0, 0].int().tolist()
    assert seen == [[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]]  # (p - 2, p]
    assert ring_slots(torch.tensor([0, 5, 6, 13]), 6).tolist() == [0, 5, 0, 1]


def full_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokens])).logits[0].float()  # [T, V]


@pytest.fixture(params=["sdpa", "eager"])
def attention_verifier(verifier, request):
    """The tiny verifier under each attention the batched cache builds masks for (boolean, additive)."""
    before = verifier.model.config._attn_implementation
    verifier.model.set_attn_implementation(request.param if request.param == "eager" else before)
    yield verifier
    verifier.model.set_attn_implementation(before)


def test_verifier_rollback_per_row_matches_recomputation(attention_verifier):
    """Random ragged blocks and per-row keeps for 30 rounds (rows join and leave, the rings grow and
    shrink), every row going far past the sliding window (16): each row's scores equal a fresh
    forward over its own tokens."""
    verifier = attention_verifier
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, SHAPE.vocab_size, (n,), generator=gen) for n in (1, 6, 2 * SHAPE.sliding_window)]
    session = BatchedVerifierSession(verifier, prompts)
    rows = [p.tolist() for p in prompts]  # committed tokens, the pending one last
    checked = 0
    for round_index in range(30):
        ks = torch.randint(0, 7, (len(rows),), generator=gen).tolist()
        if round_index == 15:  # a wide block: the rings grow, and shrink again after it
            ks[0] = 20
        block = torch.zeros(len(rows), 1 + max(ks), dtype=torch.long)
        drafts = [torch.randint(3, SHAPE.vocab_size, (k,), generator=gen).tolist() for k in ks]
        for i, (row, draft) in enumerate(zip(rows, drafts, strict=True)):
            block[i, : 1 + len(draft)] = torch.tensor([row[-1], *draft])
        logits = session.score(block)
        for i, (row, draft) in enumerate(zip(rows, drafts, strict=True)):
            expected = full_logits(verifier.model, row + draft)[len(row) - 1 :]
            torch.testing.assert_close(logits[i, : 1 + len(draft)], expected, atol=1e-4, rtol=1e-4)
            checked += 1
        kept = [int(torch.randint(0, k + 1, (1,), generator=gen)) for k in ks]
        session.keep(torch.tensor([1 + n for n in kept]))
        rows = [row + draft[:n] + [int(torch.randint(3, SHAPE.vocab_size, (1,), generator=gen))]
                for row, draft, n in zip(rows, drafts, kept, strict=True)]
        if round_index == 10:  # a long row joins, then the shortest leaves
            joining = torch.randint(3, SHAPE.vocab_size, (40,), generator=gen)
            session.add_rows([joining])
            rows.append(joining.tolist())
        if round_index == 20:
            session.remove_rows([1, 2, 3])
            rows = rows[1:]
    assert checked > 80 and min(len(r) for r in rows) > 3 * SHAPE.sliding_window
    ring, window = session.rows.layouts[SHAPE.sliding_window], SHAPE.sliding_window
    assert window - 1 + block.shape[1] <= ring.size <= window - 1 + 2 * block.shape[1]  # sized to the blocks
    assert session.rows.lengths.tolist() == [len(r) - 1 for r in rows]


def decoder_read(drafter, cache, mask, positions, canvas) -> torch.Tensor:
    with torch.no_grad():
        return drafter.model.model.decoder(decoder_input_ids=canvas, cache=cache, decoder_attention_mask=mask,
                                           decoder_position_ids=positions).last_hidden_state


def test_drafter_encoder_cache_per_row_matches_single_sessions(drafter):
    """Rows commit different counts each round; the batched encoder cache gives each row the encoder
    logits and the decoder read of its own single-row session, past the sliding window, a row joining."""
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, SHAPE.vocab_size, (n,), generator=gen) for n in (3, 20, 9)]
    batched = drafter.batch_session(greedy=True)
    batched.add_rows(prompts)
    singles = [DiffusionDraftSession(drafter, p[None], ProposalMode.ARGMAX) for p in prompts]
    new = [p[:0] for p in prompts]
    for round_index in range(10):
        if round_index == 4:  # a row joins a running batch: its prompt is a wide block, the rings grow
            prompts.append(torch.randint(3, SHAPE.vocab_size, (30,), generator=gen))
            batched.add_rows(prompts[-1:])
            singles.append(DiffusionDraftSession(drafter, prompts[-1][None], ProposalMode.ARGMAX))
            new.append(prompts[-1][:0])
        batched.propose(new, Choice.diffusion(4, 1), torch.Generator().manual_seed(round_index))
        canvas = torch.randint(3, SHAPE.vocab_size, (1, CANVAS), generator=gen)
        rows = batched.rows
        reads = batched.decoder_inputs()
        batch_read = decoder_read(drafter, reads["cache"], reads["decoder_attention_mask"],
                                  reads["decoder_position_ids"], canvas.expand(len(singles), -1))
        for i, single in enumerate(singles):
            single.propose(new[i][None], Choice.diffusion(4, 1), torch.Generator().manual_seed(99))
            torch.testing.assert_close(batched.next_logits[i], single.next_logits[0], atol=1e-4, rtol=1e-4)
            start = single.encoded_length
            read = decoder_read(drafter, single.cache, None, torch.arange(start, start + CANVAS)[None], canvas)
            torch.testing.assert_close(batch_read[i], read[0], atol=1e-4, rtol=1e-4)
            assert int(rows.lengths[i]) == single.encoded_length
        new = [torch.randint(3, SHAPE.vocab_size, (int(torch.randint(1, 8, (1,), generator=gen)),), generator=gen)
               for _ in prompts]
    assert min(s.encoded_length for s in singles) > 2 * SHAPE.sliding_window
    batched.remove_rows([2, 0])
    assert batched.rows.lengths.tolist() == [singles[2].encoded_length, singles[0].encoded_length]


def test_row_buffers_refuse_an_attention_they_build_no_masks_for(verifier):
    from specdiff.errors import SpecdiffError
    from specdiff.row_buffers import RowBuffers

    config = verifier.model.config.get_text_config(decoder=True)
    with pytest.raises(SpecdiffError, match="attn_implementation='sdpa'"):
        RowBuffers(config, torch.device("cpu"), attention="flash_attention_2")
