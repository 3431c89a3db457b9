"""The grouped-query attention for multi-token forwards: bit-identical to transformers' ``sdpa``."""

from __future__ import annotations

import pytest
import torch
from helpers import SHAPE
from specdiff.verifiers import CausalLMVerifier
from specdiff.verifiers.attention import GQA_SDPA, branches_on_sdpa, gqa_sdpa_forward, use_grouped_attention
from specdiff.verifiers.batched import BatchedVerifierSession
from transformers.integrations.sdpa_attention import sdpa_attention_forward


class Grouped(torch.nn.Module):
    """The attribute transformers' attention functions read off an attention module."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.num_key_value_groups = groups
        self.is_causal = True


@pytest.mark.parametrize(("heads", "kv_heads", "queries"), [(4, 2, 5), (9, 3, 17), (4, 2, 1), (2, 2, 6)])
def test_forward_equals_transformers_sdpa_bit_for_bit(heads, kv_heads, queries):
    """Random states and a padded, causal boolean mask ``[B, 1, Q, S]``: the same bits as ``sdpa``
    (which copies the states to every head for Q > 1), for grouped and ungrouped heads."""
    gen = torch.Generator().manual_seed(heads * 100 + queries)
    batch, slots, dim = 3, 40, 16
    query = torch.randn(batch, heads, queries, dim, generator=gen)
    key, value = (torch.randn(batch, kv_heads, slots, dim, generator=gen) for _ in range(2))
    causal = torch.arange(slots)[None] <= torch.arange(slots - queries, slots)[:, None]  # [Q, S]
    padding = torch.arange(slots)[None] >= torch.tensor([0, 7, 30])[:, None]  # [B, S]: left padding per row
    mask = (causal[None] & padding[:, None])[:, None]  # [B, 1, Q, S]
    module = Grouped(heads // kv_heads)
    ours, _ = gqa_sdpa_forward(module, query, key, value, mask, scaling=0.3)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert ours.shape == (batch, queries, heads, dim)
    assert torch.equal(ours, theirs)


def test_batched_scores_equal_with_either_attention(tiny_dirs):
    """The tiny Gemma 4 verifier (4 heads on 2 KV heads, sliding window 16): ragged rows past the
    window score the same bits through ``GQA_SDPA`` as through ``sdpa``, prefill and blocks alike."""
    stock = CausalLMVerifier.from_pretrained(tiny_dirs[0], grouped_attention=False)
    grouped = CausalLMVerifier.from_pretrained(tiny_dirs[0])
    assert stock.model.config._attn_implementation == "sdpa"
    assert grouped.model.config._attn_implementation == GQA_SDPA
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, SHAPE.vocab_size, (n,), generator=gen) for n in (3, 20, 2 * SHAPE.sliding_window)]
    sessions = [BatchedVerifierSession(v, prompts) for v in (stock, grouped)]
    for width in (5, 1, 9, 3):
        block = torch.randint(3, SHAPE.vocab_size, (len(prompts), width), generator=gen)
        first, second = (s.score(block) for s in sessions)
        assert torch.equal(first, second)
        kept = torch.randint(1, width + 1, (len(prompts),), generator=gen)
        for s in sessions:
            s.keep(kept)


def test_switch_only_where_it_applies(tiny_dirs):
    """Only a CPU model on ``sdpa`` with grouped KV heads is switched, and not where the model's own
    code branches on the name ``sdpa``; an eager model stays eager."""
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(tiny_dirs[0], attn_implementation="eager")
    assert not use_grouped_attention(eager) and eager.config._attn_implementation == "eager"
    model = AutoModelForCausalLM.from_pretrained(tiny_dirs[0])
    assert use_grouped_attention(model) and model.config._attn_implementation == GQA_SDPA
    assert not use_grouped_attention(model)  # already switched: nothing to do
    config = model.config.get_text_config(decoder=True)
    model.set_attn_implementation("sdpa")
    config.num_kv_shared_layers = 2  # Gemma 4 with KV-shared layers: its code branches on "sdpa" there
    assert branches_on_sdpa(model) and not use_grouped_attention(model)
    config.num_kv_shared_layers = 0
    config.num_key_value_heads = config.num_attention_heads  # as an ungrouped model reads
    assert not branches_on_sdpa(model) and not use_grouped_attention(model)


def test_smol_verifier_scores_through_grouped_attention(smol_f32):
    """SmolLM2 (Llama: 9 query heads on 3 KV heads) is switched, and a masked 9-token block over a
    300-token cache scores the same bits either way."""
    model = smol_f32.model
    assert model.config._attn_implementation == GQA_SDPA
    row = torch.randint(3, smol_f32.vocab_size, (301,), generator=torch.Generator().manual_seed(2))
    session = BatchedVerifierSession(smol_f32, [row])
    block = torch.randint(3, smol_f32.vocab_size, (1, 9), generator=torch.Generator().manual_seed(3))
    grouped = session.score(block)
    session.keep(torch.zeros(1, dtype=torch.long))
    model.set_attn_implementation("sdpa")
    try:
        assert torch.equal(session.score(block), grouped)
    finally:
        model.set_attn_implementation(GQA_SDPA)
