"""Where greedy outputs part, and the reference's logit margin there (``specdiff.evals.divergence``)."""

from __future__ import annotations

import math

import pytest
import torch
from specdiff.evals.divergence import divergence, first_difference, spacing


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 7]) == 2  # one stopped earlier
    assert first_difference([], [4]) == 0


def test_spacing_is_the_gap_between_neighbouring_values():
    for value in (0.3, 1.0, 3.7, -12.5, 100.0):
        for dtype in (torch.bfloat16, torch.float32):
            x = torch.tensor(abs(value), dtype=dtype)
            above = torch.nextafter(x, torch.tensor(math.inf, dtype=dtype))
            assert spacing(value, dtype) == pytest.approx((above - x).item())


def _greedy(model, prompt, n):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_the_margin_is_the_reference_logit_gap_at_the_first_difference(verifier):
    model, prompt = verifier.model, [5, 17, 99, 4]
    reference = _greedy(model, prompt, 6)
    assert divergence(model, torch.tensor([prompt]), reference, list(reference), eos_id=None) is None
    with torch.no_grad():
        logits = model(torch.tensor([prompt + reference[:3]])).logits[0, -1].float()
    runner_up = int(logits.topk(2).indices[1])
    ours = reference[:3] + [runner_up, 1, 1]
    found = divergence(model, torch.tensor([prompt]), reference, ours, eos_id=None)
    expected = (logits[reference[3]] - logits[runner_up]).item()
    assert found.position == 3 and found.margin == pytest.approx(expected, abs=1e-5) and found.margin >= 0
    assert found.spacings == pytest.approx(expected / spacing(logits[reference[3]].item(), torch.float32), rel=1e-3)


def test_an_output_that_stopped_early_chose_eos_there(verifier):
    model, prompt = verifier.model, [5, 17, 99, 4]
    reference = _greedy(model, prompt, 5)
    found = divergence(model, torch.tensor([prompt]), reference, reference[:2], eos_id=7)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + reference[:2]])).logits[0, -1].float()
    assert found.position == 2 and found.margin == pytest.approx((logits[reference[2]] - logits[7]).item(), abs=1e-5)
    assert math.isnan(divergence(model, torch.tensor([prompt]), reference, reference[:2], eos_id=None).margin)
