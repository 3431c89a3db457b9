"""Exactness on the smol verifier: prompt lookup decoding against plain greedy ``generate()``.

float32 is the exact mode: a K-token forward gives the same argmax as K 1-token forwards, so prompt
lookup (which verifies K tokens at once) equals plain greedy. In bfloat16 the two forwards differ in
the last bits, so greedy paths may part, but only where the reference's top two logits lie within
bfloat16's resolution of each other: a near-tie, not an error.
"""

from __future__ import annotations

import math

import pytest
import torch

from specdiff.chat import chat_ids

PROMPTS = (
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Write a Python function that reverses a list, and explain it.",
    "List the days of the week, one per line, each with its number.",
)
NEW_TOKENS = 48
LOOKUP = 10
# Divergences are judged in units of bfloat16's spacing at the two logits; a full-sequence forward,
# K-token forwards and 1-token forwards each round differently, so a few spacings are one near-tie.
NEAR_TIE_SPACINGS = 4


def bf16_spacing(value: float) -> float:
    return 2.0 ** (math.floor(math.log2(max(abs(value), 1e-30))) - 7)


def encoded(verifier, index: int) -> list[int]:
    tokenizer = verifier.tokenizer
    if index == 0:
        return tokenizer(PROMPTS[0])["input_ids"]
    return chat_ids(tokenizer, [{"role": "user", "content": PROMPTS[index]}])


def greedy(verifier, prompt: list[int], lookup: int | None) -> list[int]:
    kwargs = {"prompt_lookup_num_tokens": lookup} if lookup else {}
    out = verifier.model.generate(
        torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2, **kwargs
    )
    return out[0, len(prompt) :].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_in_float32_prompt_lookup_equals_plain_greedy(smol_f32, index):
    prompt = encoded(smol_f32, index)
    assert greedy(smol_f32, prompt, LOOKUP) == greedy(smol_f32, prompt, None)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PROMPTS)))
def test_in_bfloat16_every_divergence_is_a_near_tie(smol_bf16, index):
    prompt = encoded(smol_bf16, index)
    reference, lookup = greedy(smol_bf16, prompt, None), greedy(smol_bf16, prompt, LOOKUP)
    parted = next((i for i, (a, b) in enumerate(zip(reference, lookup, strict=False)) if a != b), None)
    if parted is None:
        assert lookup == reference
        return
    with torch.no_grad():
        logits = smol_bf16.model(torch.tensor([prompt + reference[:parted]])).logits[0, -1].float()
    ours, theirs = logits[reference[parted]].item(), logits[lookup[parted]].item()
    spacing = bf16_spacing(max(abs(ours), abs(theirs)))
    assert abs(ours - theirs) <= NEAR_TIE_SPACINGS * spacing, (parted, ours, theirs, spacing)
    # A near-tie between the two chosen tokens, and nothing else came near.
    assert (logits > max(ours, theirs) + NEAR_TIE_SPACINGS * spacing).sum() == 0
