"""The acceptance rule: hand-written tables, a brute-force reference, and statistical checks."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import chi2_pvalue
from hypothesis import example, given, settings
from hypothesis import strategies as st

from specdiff.acceptance import accepted_prefix_length, greedy_accept, stochastic_accept


def test_prefix_length_table():
    accepted = torch.tensor([[1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert accepted_prefix_length(accepted).tolist() == [2, 0, 4, 1]


def test_greedy_table():
    # vocab 4; target argmaxes per row: [2, 1, 3, 0]
    logits = torch.full((2, 4, 4), -5.0)
    for i, t in enumerate([2, 1, 3, 0]):
        logits[:, i, t] = 5.0
    drafts = torch.tensor([[2, 1, 0], [2, 1, 3]])
    out = greedy_accept(drafts, logits)
    assert out.num_accepted.tolist() == [2, 3]
    assert out.next_token.tolist() == [3, 0]  # recovered at the mismatch; bonus after a full block


def test_greedy_empty_draft_is_plain_decoding():
    logits = torch.tensor([[[0.0, 3.0, 1.0]]])
    out = greedy_accept(torch.empty((1, 0), dtype=torch.long), logits)
    assert out.num_accepted.tolist() == [0] and out.next_token.tolist() == [1]


def test_identical_distributions_accept_everything():
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(64, 5, 7, generator=gen), dim=-1)
    tokens = torch.multinomial(probs[:, :4].reshape(-1, 7), 1, generator=gen).view(64, 4)
    out = stochastic_accept(tokens, probs[:, :4], probs, gen)
    assert out.num_accepted.tolist() == [4] * 64


def test_draft_token_impossible_under_target_is_always_rejected():
    gen = torch.Generator().manual_seed(1)
    target = torch.tensor([[[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]]).repeat(500, 1, 1)
    draft_probs = torch.tensor([[[1.0, 0.0, 0.0]]]).repeat(500, 1, 1)
    out = stochastic_accept(torch.zeros((500, 1), dtype=torch.long), draft_probs, target, gen)
    assert out.num_accepted.sum() == 0
    assert set(out.next_token.tolist()) == {1, 2}  # the residual excludes the rejected token


def brute_force_first_token(draft_probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Exact law of the first committed token under the rule, by enumerating every draft block.

    ``draft_probs [K, V]`` and ``target_probs [K + 1, V]`` are position-wise (the target does not
    depend on earlier tokens). Returns ``[V]``.
    """
    k, vocab = draft_probs.shape
    law = torch.zeros(vocab, dtype=torch.float64)
    d, t = draft_probs.double(), target_probs.double()
    for x0 in range(vocab):
        accept = min(1.0, float(t[0, x0] / d[0, x0])) if d[0, x0] > 0 else 0.0
        law[x0] += d[0, x0] * accept
    residual = (t[0] - d[0]).clamp(min=0)
    rejected_mass = 1.0 - float(law.sum())
    if residual.sum() > 0:
        law += rejected_mass * residual / residual.sum()
    return law


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3), vocab=st.integers(2, 5))
@example(seed=234, k=3, vocab=2)
def test_brute_force_reference_equals_target(seed, k, vocab):
    """The rule's exact law (enumerated) is the target's, for arbitrary draft distributions.

    In float64: a float32 softmax sums to 1 only within ~1e-7, while the law's rejected mass is
    ``1 - accepted`` exactly, so a float32 target misses the 1e-9 tolerance on some draws (seed 234)."""
    gen = torch.Generator().manual_seed(seed)
    draft = torch.softmax(3 * torch.randn(k, vocab, generator=gen, dtype=torch.float64), dim=-1)
    target = torch.softmax(3 * torch.randn(k + 1, vocab, generator=gen, dtype=torch.float64), dim=-1)
    assert torch.allclose(brute_force_first_token(draft, target), target[0], atol=1e-9)


def simulate(draft_table, target_table, length, rows, gen, rule_draft_table=None):
    """Run the rule round after round on ``rows`` independent sequences until ``length`` tokens each.

    The target and draft distributions depend only on the output position: ``target_table [P, V]``,
    ``draft_table [P, V]``. ``rule_draft_table`` is what the rule is *told* the draft probs are
    (the negative control lies here). Returns ``[rows, length]`` committed tokens.
    """
    k = 3
    vocab = target_table.shape[1]
    rule_draft_table = draft_table if rule_draft_table is None else rule_draft_table
    out = torch.full((rows, length + k + 1), -1, dtype=torch.long)
    filled = torch.zeros(rows, dtype=torch.long)
    while bool((filled < length).any()):
        active = filled < length
        pos = (filled[:, None] + torch.arange(k + 1)).clamp(max=target_table.shape[0] - 1)  # [rows, K + 1]
        target = target_table[pos]  # [rows, K + 1, V]
        draft_probs = draft_table[pos[:, :k]]
        tokens = torch.multinomial(draft_probs.reshape(-1, vocab), 1, generator=gen).view(rows, k)
        res = stochastic_accept(tokens, rule_draft_table[pos[:, :k]], target, gen)
        committed = torch.cat([tokens, res.next_token[:, None]], dim=1)
        n = res.num_accepted
        committed[torch.arange(rows), n] = res.next_token  # the verifier token lands right after the prefix
        width = torch.where(active, n + 1, 0)  # finished rows stay as they are
        for j in range(k + 1):
            write = j < width
            out[write, filled[write] + j] = committed[write, j]
        filled += width
    return out[:, :length]


@pytest.fixture(scope="module")
def tables():
    gen = torch.Generator().manual_seed(7)
    positions, vocab = 8, 4
    target = torch.softmax(2 * torch.randn(positions, vocab, generator=gen), dim=-1)
    draft = torch.softmax(2 * torch.randn(positions, vocab, generator=gen), dim=-1)
    return draft, target


def test_committed_tokens_follow_target_jointly(tables):
    draft, target = tables
    gen = torch.Generator().manual_seed(3)
    out = simulate(draft, target, length=3, rows=40_000, gen=gen)
    vocab = target.shape[1]
    pair = torch.bincount(out[:, 0] * vocab + out[:, 1], minlength=vocab * vocab)
    expected_pair = torch.outer(target[0], target[1]).reshape(-1)
    assert chi2_pvalue(pair, expected_pair) > 1e-3
    third = torch.bincount(out[:, 2], minlength=vocab)
    assert chi2_pvalue(third, target[2]) > 1e-3


def test_negative_control_wrong_draft_probs_is_detected(tables):
    """Telling the rule a distribution other than the one the tokens came from must break it."""
    draft, target = tables
    gen = torch.Generator().manual_seed(4)
    uniform = torch.full_like(draft, 1.0 / draft.shape[1])
    out = simulate(draft, target, length=2, rows=40_000, gen=gen, rule_draft_table=uniform)
    vocab = target.shape[1]
    pair = torch.bincount(out[:, 0] * vocab + out[:, 1], minlength=vocab * vocab)
    assert chi2_pvalue(pair, torch.outer(target[0], target[1]).reshape(-1)) < 1e-6


def test_chi2_helper_flags_a_biased_sample():
    probs = torch.tensor([0.25, 0.25, 0.25, 0.25])
    assert chi2_pvalue(torch.tensor([2600, 2400, 2500, 2500]), probs) > 1e-3
    assert chi2_pvalue(torch.tensor([3000, 2000, 2500, 2500]), probs) < 1e-6


def test_shapes_are_checked():
    with pytest.raises(AssertionError, match="target_logits must be"):
        greedy_accept(torch.zeros((1, 3), dtype=torch.long), torch.zeros((1, 3, 5)))
    with pytest.raises(AssertionError, match="draft_probs must be"):
        stochastic_accept(torch.zeros((1, 2), dtype=torch.long), torch.ones((1, 3, 5)), torch.ones((1, 3, 5)))


@pytest.mark.parametrize("k", [0, 1, 4])
def test_deterministic_given_generator(k):
    probs = torch.softmax(torch.randn(3, k + 1, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    tokens = torch.zeros((3, k), dtype=torch.long)
    runs = [stochastic_accept(tokens, probs[:, :k], probs, torch.Generator().manual_seed(9)) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in itertools.pairwise(r.next_token for r in runs))


def test_sample_categorical_draws_the_categorical():
    from specdiff.sampling import sample_categorical

    probs = torch.tensor([0.5, 0.0, 0.2, 0.3]) * 7  # unnormalised on purpose
    gen = torch.Generator().manual_seed(0)
    draws = sample_categorical(probs.expand(50_000, 4), gen)
    counts = torch.bincount(draws, minlength=4)
    assert counts[1] == 0
    assert chi2_pvalue(counts, probs / probs.sum()) > 1e-3
    assert chi2_pvalue(counts, torch.tensor([0.45, 0.0, 0.25, 0.3])) < 1e-6  # and it can tell
