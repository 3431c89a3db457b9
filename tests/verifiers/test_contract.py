"""The verifier contract (``specdiff.protocols.Verifier``), checked directly on every adapter.

Score ``[pending] + draft`` in one forward, keep ``1 + n`` of them, repeat: after any sequence of
rounds, scoring must give the logits a from-scratch forward over everything kept gives, for
sliding-window layers past their window too. A new verifier adapter joins ``ADAPTERS``.
"""

from __future__ import annotations

import random

import pytest
import torch
from helpers import SHAPE
from specdiff.verifiers import CausalLMVerifier


def tiny_llama() -> CausalLMVerifier:
    """A dense Llama (SmolLM2's architecture): no sliding window, another cache layout."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=SHAPE.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return CausalLMVerifier(LlamaForCausalLM(config).eval())


ADAPTERS = {
    "gemma4-sliding": lambda verifier: verifier,  # the tiny Gemma 4: sliding window 16, one full layer
    "llama": lambda verifier: tiny_llama(),
}


def reference_logits(adapter: CausalLMVerifier, tokens: list[int], width: int) -> torch.Tensor:
    """The last ``width`` positions' logits of one cache-free forward over ``tokens``."""
    with torch.no_grad():
        return adapter.model(torch.tensor([tokens])).logits[0, -width:].float()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_score_and_rollback_match_a_from_scratch_forward(name, verifier):
    adapter = ADAPTERS[name](verifier)
    assert isinstance(adapter.vocab_size, int) and isinstance(adapter.eos_token_ids, tuple)
    assert adapter.max_positions is None or adapter.max_positions > 0
    rng = random.Random(0)
    prompt = [rng.randrange(3, adapter.vocab_size) for _ in range(5)]
    session = adapter.session(torch.tensor([prompt]))
    committed, pending = prompt[:-1], prompt[-1]
    for _ in range(30):  # about 5 tokens a round: several times past the sliding window of 16
        draft = [rng.randrange(3, adapter.vocab_size) for _ in range(rng.randint(0, 8))]
        scored = [pending, *draft]
        logits = session.score(torch.tensor([scored]))
        assert logits.shape == (1, len(scored), adapter.vocab_size) and logits.dtype == torch.float32
        torch.testing.assert_close(logits[0], reference_logits(adapter, committed + scored, len(scored)),
                                   atol=2e-4, rtol=1e-4)
        kept = rng.randint(0, len(draft))  # the verifier's own token follows the accepted prefix
        session.keep(1 + kept, len(scored))
        committed += scored[: 1 + kept]
        pending = rng.randrange(3, adapter.vocab_size)
    assert len(committed) > 4 * SHAPE.sliding_window


def test_the_check_sees_a_rollback_that_keeps_too_much(verifier):
    """Keeping a rejected token in the cache is caught: the next scores no longer match."""
    session = verifier.session(torch.tensor([[5, 6, 7, 8]]))
    session.score(torch.tensor([[8, 9, 10]]))
    session.keep(3, 3)  # wrongly keeps both draft tokens, though the test below commits only one
    logits = session.score(torch.tensor([[11]]))
    assert not torch.allclose(logits[0], reference_logits(verifier, [5, 6, 7, 8, 9, 11], 1), atol=2e-4)
