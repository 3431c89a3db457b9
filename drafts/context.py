"""Context lookup: a guess at the continuation, copied from earlier in the same text.

Text repeats itself (identifiers, call patterns, and, from a small verifier, whole loops), and a
verifier's greedy continuation often copies what followed an earlier occurrence of the last few
tokens. ``context_continuation`` finds the most recent earlier occurrence of the context's last
``n`` tokens (longest ``n`` first) and returns what followed it. The diffusion drafter can start its
canvas from that guess instead of pure noise (``DiffusionGemmaDrafter(context_seed=...)``): the
guess is only the canvas's starting point, and what the drafter proposes is still its own denoised
output, with the distribution it was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# The model-config key under which a drafter trained for seeded canvases records its lookup (the
# generation config would be the natural home, but DiffusionGemma's refuses unknown keys on load).
CONFIG_KEY = "specdiff_context_seed"


@dataclass(frozen=True)
class ContextSeed:
    """Which n-grams a lookup matches: the last ``max_ngram`` tokens first, down to ``min_ngram``."""

    min_ngram: int = 1
    max_ngram: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram}, {self.max_ngram}")

    @classmethod
    def from_config(cls, config: Any) -> ContextSeed | None:
        """The lookup a checkpoint was trained with (``CONFIG_KEY`` of its config), None if it was not."""
        recorded = getattr(config, CONFIG_KEY, None)
        return None if recorded is None else cls(**recorded)

    @classmethod
    def resolve(cls, setting: ContextSeed | bool | None, config: Any) -> ContextSeed | None:
        """A drafter's lookup: None follows the checkpoint's config, True the default lookup, False none."""
        if setting is None:
            return cls.from_config(config)
        if isinstance(setting, bool):
            return cls() if setting else None
        return setting


def context_continuation(history: torch.Tensor, length: int, seed: ContextSeed = ContextSeed()) -> torch.Tensor:
    """What followed the most recent earlier occurrence of the history's last n tokens.

    Args:
        history: ``[T]`` token ids, oldest first.
        length: tokens wanted.
        seed: the n-gram sizes to try, longest first.

    Returns:
        ``[length]`` ids, or ``[0]`` when no n-gram in range recurs. When the match ends ``p``
        tokens before the end of the history, the copy runs past the end by repeating those ``p``
        tokens: continuing a copy of a loop of period ``p`` is the loop itself.
    """
    total = history.shape[0]
    for n in range(seed.max_ngram, seed.min_ngram - 1, -1):
        if total <= n:
            continue
        windows = history[: total - 1].unfold(0, n, 1)  # [T - n, n]: every n-gram ending before the last token
        hits = (windows == history[total - n :]).all(dim=1).nonzero()
        if hits.numel() == 0:
            continue
        end = int(hits[-1]) + n  # first token after the most recent match, < T
        period = total - end
        return history[end + torch.arange(length, device=history.device) % period]
    return history[:0]
