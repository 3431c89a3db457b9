"""Training canvases for the drafter's objective (``specdiff.training.diffusion.DiffusionObjective``):
uniform-noise corruption (DiffusionGemma's canvas and the next-token canvas) and context seeding.
Each takes the objective's settings and draws from the global torch RNG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from specdiff.drafts.ngram import context_continuation

if TYPE_CHECKING:  # the objective's module imports this one
    from specdiff.training.diffusion import DiffusionObjective


def corrupt(target: torch.Tensor, vocab_size: int, obj: DiffusionObjective) -> torch.Tensor:
    """Uniform-noise corruption of canvas targets [B, Q] (uses the global torch RNG).

    One noise level per canvas: positions [k*C, (k+1)*C) share the k-th level; with probability
    ``anchor_prob`` a canvas keeps its first position clean.
    """
    batch, total = target.shape
    n_canvases = total // obj.canvas_length
    noise = torch.empty(batch, n_canvases).uniform_(obj.min_noise, 1.0)
    noise = torch.where(torch.rand(batch, n_canvases) < obj.pure_noise_prob, torch.ones_like(noise), noise)
    noise = noise.repeat_interleave(obj.canvas_length, dim=1)  # [B, Q]
    replaced = torch.rand(target.shape) < noise
    anchored = torch.rand(batch, n_canvases) < obj.anchor_prob  # [B, K]: first position left clean
    replaced.view(batch, n_canvases, obj.canvas_length)[:, :, 0] &= ~anchored
    return torch.where(replaced, torch.randint_like(target, vocab_size), target)


def corrupt_next_token(target: torch.Tensor, vocab_size: int, obj: DiffusionObjective) -> torch.Tensor:
    """Corruption of next-token canvas inputs [B, K*C] (uses the global torch RNG): per canvas a clean
    prefix (position 0 always; with probability ``clean_prefix_prob`` a length uniform in 2..C), then
    uniform noise at one level (pure noise with probability ``pure_noise_prob``, else U(min_noise, 1))."""
    batch, total = target.shape
    n_canvases, length = total // obj.canvas_length, obj.canvas_length
    noise = torch.empty(batch, n_canvases, 1).uniform_(obj.min_noise, 1.0)
    noise = torch.where(torch.rand(batch, n_canvases, 1) < obj.pure_noise_prob, torch.ones_like(noise), noise)
    prefix = torch.where(torch.rand(batch, n_canvases) < obj.clean_prefix_prob,
                         torch.randint(2, length + 1, (batch, n_canvases)), torch.ones(batch, n_canvases,
                                                                                       dtype=torch.long))
    beyond = torch.arange(length)[None, None] >= prefix[..., None]  # [B, K, C]
    replaced = (torch.rand(batch, n_canvases, length) < noise) & beyond
    return torch.where(replaced.view(batch, total), torch.randint_like(target, vocab_size), target)


def seed_canvases(canvas: torch.Tensor, ids: torch.Tensor, cuts: Sequence[int],
                  obj: DiffusionObjective) -> torch.Tensor:
    """Replace a share of the corrupted canvases ``[B, K*C]`` by the context lookup's guess.

    Canvas k of row b starts at ``cuts[k]`` and its guess is ``context_continuation(ids[b, :cuts[k]])``
    (uses the global torch RNG); canvases whose context has no recurring n-gram stay as they are.
    """
    if obj.context_seed_prob <= 0:
        return canvas
    seeded = canvas.clone()
    chosen = torch.rand(ids.shape[0], len(cuts)) < obj.context_seed_prob  # [B, K]
    for b, k in chosen.nonzero().tolist():
        guess = context_continuation(ids[b, : cuts[k]], obj.canvas_length, obj.context_seed)
        if guess.numel():
            seeded[b, k * obj.canvas_length : (k + 1) * obj.canvas_length] = guess
    return seeded
