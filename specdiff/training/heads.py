"""Output-layer losses for drafters over a large vocabulary.

A small drafter sharing a 49,152-id vocabulary spends most of its training time in its tied
output layer: scoring every id at every supervised position is memory-bound on a CPU (about 2 s
for 1,024 positions, forward and backward, at hidden 64). `sampled_head_loss` scores the batch's
target ids plus a uniform sample of the others instead, about ten times cheaper at the same
positions; held-out losses are still computed over the full vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from specdiff.training.lm import IGNORE_INDEX


def sampled_head_loss(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, softcap: float | None,
                      n_negatives: int) -> torch.Tensor:
    """Per-position cross-entropy ``[N]`` of a tied output layer ``weight`` ``[V, H]`` on ``hidden`` ``[N, H]``,
    the softmax taken over the targets' ids plus ``n_negatives`` uniformly drawn other ids.

    The drawn ids stand for every non-target id: their logits get ``log((V - U) / n_negatives)``
    added (U distinct targets), so the partition function is estimated without bias in expectation
    and every row of the table is pushed down now and then, not only the targets' (uses the
    global torch RNG).
    """
    vocab = weight.shape[0]
    present = targets.unique()  # [U], sorted
    drawn = torch.randint(vocab, (n_negatives,), device=targets.device)
    drawn = drawn[~torch.isin(drawn, present)]
    columns = torch.cat([present, drawn])
    logits = hidden @ weight[columns].T  # [N, U + R]
    if softcap is not None:
        logits = torch.tanh(logits.float() / softcap) * softcap
    if drawn.numel():
        correction = torch.zeros(columns.numel(), device=logits.device)
        correction[present.numel() :] = math.log(max(vocab - present.numel(), 1) / drawn.numel())
        logits = logits + correction
    return F.cross_entropy(logits, torch.searchsorted(present, targets), reduction="none")


def causal_lm_loss(model, ids: torch.Tensor, labels: torch.Tensor, n_negatives: int | None) -> torch.Tensor:
    """A causal LM's next-token loss on the supervised labels; with ``n_negatives``, sampled
    (`sampled_head_loss`) and scored only where labels are supervised."""
    if n_negatives is None:
        return model(input_ids=ids, labels=labels).loss
    hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]  # [B, L-1, H]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    cap = getattr(model.config, "final_logit_softcapping", None)
    return sampled_head_loss(hidden[keep], targets[keep], model.lm_head.weight, cap, n_negatives).mean()
