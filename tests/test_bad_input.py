"""Bad input fails early with an error naming the problem and the fix, and nothing half-done."""

from __future__ import annotations

import pytest
from helpers import CANVAS, SHAPE

from specdiff import SpecdiffError

CASES = [
    (dict(block_size=0), "block_size must be between 1"),
    (dict(block_size=CANVAS + 1), "canvas length"),
    (dict(denoising_steps=0), "this drafter has no context lookup"),
    (dict(denoising_steps=-1), "denoising_steps must be >= 0"),
    (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(temperature=1.0, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_k=0), "top_k must be >= 1"),
    (dict(max_new_tokens=SHAPE.max_position_embeddings), "exceeds the verifier's"),
]


@pytest.mark.parametrize("kwargs,message", CASES)
def test_bad_arguments(decoder, kwargs, message):
    with pytest.raises(SpecdiffError, match=message):
        decoder.stream([5, 6, 7], **{"max_new_tokens": 8, **kwargs})


@pytest.mark.parametrize("prompt,message", [
    ([], "the prompt is empty"),
    ("", "the prompt is empty"),
    ([5, SHAPE.vocab_size], "prompt token ids must lie"),
    (list(range(3, 3 + 10)) * 110, "exceeds the verifier's"),
])
def test_bad_prompts(decoder, prompt, message):
    with pytest.raises(SpecdiffError, match=message):
        decoder.generate(prompt, max_new_tokens=4)


def test_string_prompt_without_tokenizer(drafter, verifier):
    from specdiff.drafts import DiffusionGemmaDrafter
    from specdiff.verifiers import CausalLMVerifier

    from specdiff import SpeculativeDecoder

    bare = SpeculativeDecoder(DiffusionGemmaDrafter(drafter.model), CausalLMVerifier(verifier.model))
    with pytest.raises(SpecdiffError, match="needs a tokenizer"):
        bare.generate("hello", max_new_tokens=2)
