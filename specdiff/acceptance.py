"""The acceptance rule: which draft tokens the verifier keeps, and the one token it adds.

Output of a round = accepted draft tokens + one verifier token. The verifier token is the *bonus*
token (drawn from the last target distribution) when every draft token is accepted, and otherwise
the *recovered* token (drawn from the normalised residual at the first rejected position).

Both rules are pure functions over batched tensors:

- greedy: keep the longest prefix of the draft that equals the verifier's argmax, then the argmax
  at the first mismatch (or after the block). This is exactly the verifier's own greedy output.
- stochastic (speculative sampling, Leviathan et al. 2023; Chen et al. 2023): accept draft token x
  at position i with probability ``min(1, target_probs[i, x] / draft_probs[i, x])``; on the first
  rejection draw from ``max(0, target_probs[i] - draft_probs[i])`` normalised. The committed tokens
  then follow the target distribution exactly, whatever the draft distribution, provided
  ``draft_probs`` is the distribution each draft token was actually drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specdiff.sampling import sample_categorical


@dataclass(frozen=True)
class AcceptanceOutcome:
    """What the verifier keeps of one round's draft.

    Attributes:
        num_accepted: ``[B]`` long, the number of leading draft tokens kept (0..K).
        next_token: ``[B]`` long, the verifier's own token (recovered or bonus).
    """

    num_accepted: torch.Tensor
    next_token: torch.Tensor


def accepted_prefix_length(accepted: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of ``True`` per row.

    Args:
        accepted: ``[B, K]`` bool.

    Returns:
        ``[B]`` long.
    """
    return accepted.long().cumprod(dim=-1).sum(dim=-1)


def greedy_accept(draft_tokens: torch.Tensor, target_logits: torch.Tensor) -> AcceptanceOutcome:
    """Greedy acceptance.

    Args:
        draft_tokens: ``[B, K]`` long.
        target_logits: ``[B, K + 1, V]``; row i scores the token after the context plus ``i`` draft tokens.
    """
    batch, k = draft_tokens.shape
    assert target_logits.shape[:2] == (batch, k + 1), (
        f"target_logits must be [B, K + 1, V] = [{batch}, {k + 1}, V], got {tuple(target_logits.shape)}"
    )
    target_argmax = target_logits.argmax(dim=-1)  # [B, K + 1]
    num_accepted = accepted_prefix_length(draft_tokens == target_argmax[:, :k])
    next_token = target_argmax.gather(1, num_accepted[:, None]).squeeze(1)
    return AcceptanceOutcome(num_accepted=num_accepted, next_token=next_token)


def stochastic_accept(
    draft_tokens: torch.Tensor,
    draft_probs: torch.Tensor,
    target_probs: torch.Tensor,
    generator: torch.Generator | None = None,
) -> AcceptanceOutcome:
    """Speculative-sampling acceptance.

    Args:
        draft_tokens: ``[B, K]`` long.
        draft_probs: ``[B, K, V]``; row i is the distribution draft token i was drawn from.
        target_probs: ``[B, K + 1, V]``; the verifier's processed distributions (see
            ``specdiff.sampling.target_probs``).
        generator: the source of randomness (on the tensors' device).
    """
    batch, k = draft_tokens.shape
    vocab = target_probs.shape[-1]
    assert draft_probs.shape == (batch, k, vocab), (
        f"draft_probs must be [B, K, V] = [{batch}, {k}, {vocab}], got {tuple(draft_probs.shape)}"
    )
    assert target_probs.shape == (batch, k + 1, vocab), (
        f"target_probs must be [B, K + 1, V] = [{batch}, {k + 1}, {vocab}], got {tuple(target_probs.shape)}"
    )
    rows = torch.arange(batch, device=draft_tokens.device)
    if k == 0:
        num_accepted = torch.zeros(batch, dtype=torch.long, device=draft_tokens.device)
        next_dist = target_probs[:, 0]
    else:
        target_at = target_probs[:, :k].gather(-1, draft_tokens[..., None]).squeeze(-1)  # [B, K]
        draft_at = draft_probs.gather(-1, draft_tokens[..., None]).squeeze(-1)  # [B, K]
        assert bool((draft_at > 0).all()), "a draft token has zero probability under its own draft distribution"
        uniform = torch.rand((batch, k), generator=generator, device=draft_tokens.device)
        # P(u < r) = r for u ~ U[0, 1): acceptance with probability min(1, target / draft).
        num_accepted = accepted_prefix_length(uniform < target_at / draft_at)
        # Residual at the first rejection; after a fully accepted block the draft term is zero, so the
        # same expression yields the bonus distribution target_probs[:, K].
        draft_term = draft_probs[rows, num_accepted.clamp(max=k - 1)]  # [B, V]
        draft_term = torch.where((num_accepted < k)[:, None], draft_term, torch.zeros_like(draft_term))
        next_dist = (target_probs[rows, num_accepted] - draft_term).clamp(min=0.0)
        # A rejection implies target < draft at the drawn token, so the residual has mass; rounding can
        # still zero it when both distributions agree to float precision, and then target is exact.
        empty = next_dist.sum(dim=-1, keepdim=True) <= 0
        next_dist = torch.where(empty, target_probs[rows, num_accepted], next_dist)
    next_token = sample_categorical(next_dist, generator)
    return AcceptanceOutcome(num_accepted=num_accepted, next_token=next_token)
