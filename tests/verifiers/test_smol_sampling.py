"""Sampled output on the smol pair follows SmolLM2's own distribution (chi-square on the first two
tokens), with the smol pair's proposers drafting and their tokens really accepted.

The draws are the rows of one batch (``generate_batch``: every row samples with its own draws from
one seeded generator), so 200 draws cost a few batched forwards rather than 400 generations; the
single-row loop runs a handful of seeded draws to check it samples from the same law.
"""

from __future__ import annotations

import pytest
import torch
from helpers import chi2_pvalue

from specdiff.controllers import Fixed
from specdiff.sampling import SamplingConfig, target_probs

# The lookup guesses " 3]" after the second "[1, 2,"; top-2 sampling keeps the law's support to 4 pairs.
PROMPT = "a = [1, 2, 3]\nb = [1, 2,"
SAMPLING = SamplingConfig(temperature=1.0, top_k=2)
DRAWS = 200


def two_token_law(model, prompt: list[int]) -> dict[tuple[int, int], float]:
    """The exact law of the first two sampled tokens over their (at most 2 x 2) support."""
    with torch.no_grad():
        first = target_probs(model(torch.tensor([prompt])).logits[:, -1:], SAMPLING)[0, 0]
        support = torch.nonzero(first).flatten().tolist()
        second = target_probs(model(torch.tensor([prompt + [t] for t in support])).logits[:, -1:], SAMPLING)[:, 0]
    return {(a, int(b)): float(first[a] * second[i, b]) for i, a in enumerate(support)
            for b in torch.nonzero(second[i]).flatten()}


@pytest.mark.slow
def test_sampled_smol_tokens_follow_the_verifier(smol_f32):
    from specdiff.pairs import smol_decoder

    decoder = smol_decoder(smol_f32, controller=Fixed.ngram(2))
    prompt = decoder.encode_prompt(PROMPT)[0].tolist()
    law = two_token_law(smol_f32.model, prompt)
    cells = list(law)
    results = decoder.generate_batch([prompt] * DRAWS, max_new_tokens=2, temperature=SAMPLING.temperature,
                                     top_k=SAMPLING.top_k, seed=0, eos_token_id=[])
    counts = torch.zeros(len(cells))
    for result in results:
        counts[cells.index(tuple(result.token_ids[:2]))] += 1
    assert chi2_pvalue(counts, torch.tensor([law[c] for c in cells])) > 1e-3
    accepted = sum(s.accepted for r in results for s in r.stats)
    assert accepted > DRAWS * 0.3  # the lookup's tokens were accepted, not only resampled
    for seed in range(5):  # the one-row loop draws inside the same support
        one = decoder.generate(prompt, max_new_tokens=2, temperature=SAMPLING.temperature, top_k=SAMPLING.top_k,
                               seed=seed, eos_token_id=[])
        assert tuple(one.token_ids) in law
