"""Bad input fails early with an error naming the problem and the fix, and nothing half-done."""

from __future__ import annotations

import pytest
from helpers import CANVAS, SHAPE

from specdiff import SpecdiffError

CASES = [
    (dict(block_size=0), "block_size must be >= 1"),
    (dict(block_size=CANVAS + 1), "largest block"),
    (dict(denoising_steps=0), "proposer='ngram'"),
    (dict(denoising_steps=-1), "denoising_steps must be >= 1"),
    (dict(denoising_steps=49), "more than the drafter's 48"),
    (dict(proposer="ngram"), "ngram proposer is not among"),
    (dict(proposer="beam"), "unknown proposer 'beam'"),
    (dict(proposer="ngram", denoising_steps=2), "denoising_steps apply to the diffusion drafter"),
    (dict(max_new_tokens=-1), "max_new_tokens must be a whole number >= 0"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be a whole number"),
    (dict(temperature=-0.5), "temperature must be >= 0"),
    (dict(temperature=float("inf")), "temperature must be a finite number"),
    (dict(block_size=True), "block_size must be a whole number"),
    (dict(colour="red"), "unknown generation argument"),
    (dict(temperature=1.0, top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(temperature=1.0, top_k=-1), "top_k must be >= 1"),
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
    (b"def f():", "the prompt is bytes"),
    (["def f():", "x = 1"], "list of strings"),
    ({"input_ids": [5, 6]}, "the prompt is a dict"),
    ([5, 6.5], "integer token ids"),
    ([{"role": "user", "content": "hi"}], "no chat template"),
    ([{"role": "robot", "content": "hi"}], "chat message 0 has role .robot."),
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
