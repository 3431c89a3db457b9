"""Exactness on the smol verifier: prompt lookup decoding against plain greedy ``generate()``.

float32 is the exact mode: a K-token forward gives the same argmax as K 1-token forwards, so prompt
lookup (which verifies K tokens at once) equals plain greedy. In bfloat16 the two forwards differ in
the last bits, so greedy paths may part, but only where the reference's top two logits lie within
bfloat16's resolution of each other: a near-tie, not an error.
"""

from __future__ import annotations

import json

import pytest
import torch
from specdiff.evals.divergence import NEAR_TIE_SPACINGS
from specdiff.evals.suites import load_suite

from specdiff.chat import chat_ids

# Chat-suite prompts whose bfloat16 prompt-lookup output parts from plain greedy within 40 tokens on
# this machine's CPU (AVX-512 BF16), so the near-tie check is exercised, not vacuous.
PROMPTS = ("chat-004", "chat-005", "chat-003")
NEW_TOKENS = 40
LOOKUP = 10
def encoded(verifier, index: int) -> list[int]:
    prompt = next(p for p in load_suite("chat").prompts if p.id == PROMPTS[index])
    return chat_ids(verifier.tokenizer, prompt.decoder_input)


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
def test_the_bench_in_bfloat16_reports_identical_shares_and_near_tie_margins(smol_bf16, tmp_path):
    from specdiff.evals.bench import BenchConfig, run_bench

    from specdiff.pairs import smol_decoder

    chat = {p.id: p for p in load_suite("chat").prompts}
    suite = tmp_path / "parting.jsonl"
    suite.write_text("".join(json.dumps({"id": i, "prompt": chat[i].prompt, "chat": True}) + "\n" for i in PROMPTS))
    config = BenchConfig(out=tmp_path / "b.csv", suite=str(suite), max_new_tokens=NEW_TOKENS,
                         methods=("ar", "hf_prompt_lookup"))
    result = run_bench(config, smol_decoder(smol_bf16), progress=False)
    runs = result.runs[result.runs["method"] == "hf_prompt_lookup"]
    assert (runs["first_divergence"] >= 0).any(), "no prompt parted: the check ran on nothing"
    assert runs["divergence_spacings"].abs().max() <= NEAR_TIE_SPACINGS
    row = result.summary.set_index("method").loc["hf_prompt_lookup"]
    assert row.identical_share == (runs["first_divergence"] < 0).mean() and row["dtype"] == "bfloat16"
