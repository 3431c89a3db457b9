"""The sampled output-layer loss and the distilled rows' batching."""

from __future__ import annotations

import math

import torch

from specdiff.training.distill import DistilledRow, crop_batch, length_batches, valid_length
from specdiff.training.drafter_models import projected_embedding
from specdiff.training.heads import sampled_head_loss
from specdiff.training.lm import IGNORE_INDEX


def test_sampled_loss_of_flat_logits_is_log_vocab():
    # All logits 0: the targets count once each and the drawn ids stand for the other V - U ids,
    # so the estimated partition function is exactly V.
    torch.manual_seed(0)
    targets = torch.tensor([3, 7, 7, 11])
    loss = sampled_head_loss(torch.zeros(4, 8), targets, torch.randn(1000, 8), softcap=30.0, n_negatives=50)
    assert torch.allclose(loss, torch.full((4,), math.log(1000)), atol=1e-5)


def test_gradient_reaches_only_scored_rows():
    weight = torch.randn(100, 4, requires_grad=True)
    sampled_head_loss(torch.randn(3, 4), torch.tensor([1, 2, 3]), weight, None, 0).sum().backward()
    touched = (weight.grad.abs().sum(-1) > 0).nonzero().flatten().tolist()
    assert touched == [1, 2, 3]


def test_projected_embedding_keeps_the_strongest_directions():
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16)).Q
    table = torch.randn(500, 16) * torch.tensor([10.0, 5.0] + [0.1] * 14) @ basis.T
    projected = projected_embedding(table, 2, target_std=0.05)
    assert projected.shape == (500, 2)
    assert abs(float(projected.std()) - 0.05) < 1e-4
    # Two principal directions carry nearly all of the table's variance: distances are kept.
    d_table = torch.cdist(table[:50], table[:50])
    d_proj = torch.cdist(projected[:50], projected[:50]) * (table.std() / projected.std())
    corr = torch.corrcoef(torch.stack([d_table.flatten(), d_proj.flatten()]))[0, 1]
    assert corr > 0.99


def test_valid_length_and_crop_batch():
    eos = [2]
    assert valid_length(torch.tensor([5, 6, 2, 2, 2]), eos) == 3
    assert valid_length(torch.tensor([5, 6, 7]), eos) == 3
    rows = [DistilledRow(torch.tensor([9, 8, 7, 6]), torch.tensor([1, 2, 2]), 2, False, "chat"),
            DistilledRow(torch.tensor([5, 4]), torch.tensor([3, 4, 5]), 3, True, "code")]
    ids, labels = crop_batch(rows)
    assert ids.tolist() == [[7, 6, 1, 2, 2], [5, 4, 3, 4, 5]]  # the longer prompt lost its first tokens
    assert labels.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 1, 2, IGNORE_INDEX],
                               [IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5]]


def test_length_batches_group_similar_lengths():
    batches = length_batches([5, 1, 9, 2, 8, 1], 2)
    assert batches == [[1, 5], [3, 0], [4, 2]]
