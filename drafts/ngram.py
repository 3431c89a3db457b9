"""The n-gram context lookup: a proposer that copies the continuation from earlier in the text.

Text repeats itself (identifiers, call patterns, and, from a small verifier, whole loops), and a
verifier's greedy continuation often copies what followed an earlier occurrence of the last few
tokens. ``context_continuation`` finds the most recent earlier occurrence of the context's last
``n`` tokens (longest ``n`` first) and returns what followed it. ``NgramLookup`` proposes that
guess as a draft: no model runs, and the guess is a deterministic function of the committed
tokens, so its distribution is one-hot and the acceptance test stays exact under sampling. Where
the context holds no earlier occurrence of its last tokens there is no guess, and the round
proposes nothing (the decoder then runs a plain verifier step).

The diffusion drafter can also start its canvas from the same guess
(``DiffusionGemmaDrafter(context_seed=...)``), and then reports it as a side report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from specdiff.batch_drafts import RaggedDraft
from specdiff.errors import SpecdiffError
from specdiff.protocols import Choice, Draft, Proposer

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
        ``[length]`` ids (on the history's device), or ``[0]`` when no n-gram in range recurs. When
        the match ends ``p`` tokens before the end of the history, the copy runs past the end by
        repeating those ``p`` tokens: continuing a copy of a loop of period ``p`` is the loop itself.
    """
    guess = _continuation(history.cpu().numpy(), length, seed)
    return history[:0] if guess is None else torch.from_numpy(guess).to(history.device)


def context_continuations(histories: Sequence[torch.Tensor], length: int,
                          seed: ContextSeed = ContextSeed()) -> tuple[torch.Tensor, torch.Tensor]:
    """``context_continuation`` for a batch of rows ``[T_i]``: ``[B, length]`` guesses (a row without
    one holds zeros) and ``[B]`` bool, whether row i has one; on the first row's device."""
    guesses = [_continuation(h.cpu().numpy(), length, seed) for h in histories]
    tokens = np.zeros((len(guesses), length), dtype=np.int64)
    for row, guess in enumerate(guesses):
        if guess is not None:
            tokens[row] = guess
    device = histories[0].device if len(histories) else torch.device("cpu")
    found = torch.tensor([g is not None for g in guesses], dtype=torch.bool, device=device)
    return torch.from_numpy(tokens).to(device), found


def _continuation(history: np.ndarray, length: int, seed: ContextSeed) -> np.ndarray | None:
    """``context_continuation`` on a ``[T]`` array, None for no guess. On numpy, not torch: a lookup
    over a few hundred ids is a dozen tiny array operations, where a torch call's own overhead is
    several times a numpy one's (``NgramBatchSession`` has the round's figure)."""
    total = history.shape[0]
    for n in range(seed.max_ngram, seed.min_ngram - 1, -1):
        if total <= n:
            continue
        span = total - n  # the n-grams starting at 0 .. span - 1 end before the last token
        match = history[:span] == history[span]
        for j in range(1, n):
            match &= history[j : span + j] == history[span + j]
        hits = np.flatnonzero(match)
        if hits.size:
            end = int(hits[-1]) + n  # first token after the most recent match, < T
            return history[end + np.arange(length) % (total - end)]
    return None


class NgramLookup:
    """The context lookup as a draft engine (``specdiff.protocols.DraftEngine``).

    Args:
        vocab_size: the verifier's vocabulary (the lookup copies ids, so any tokenizer fits).
        seed: the n-gram sizes matched.
        max_block_size: the largest block a round may ask for.
        tokenizer: optional; the decoder's for string prompts when no other is given.
    """

    kind = Proposer.NGRAM

    def __init__(self, vocab_size: int, seed: ContextSeed = ContextSeed(), max_block_size: int = 64,
                 tokenizer: Any | None = None) -> None:
        if max_block_size < 1:
            raise SpecdiffError(f"max_block_size must be >= 1 (got {max_block_size})")
        self.vocab_size = int(vocab_size)
        self.seed = seed
        self.max_block_size = int(max_block_size)
        self.tokenizer = tokenizer

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> NgramSession:
        del greedy  # the guess is deterministic either way
        return NgramSession(self, prompt_ids)

    def batch_session(self, greedy: bool = True) -> NgramBatchSession:
        """A session for a batch of rows that join and leave (``specdiff.batch_drafts.BatchDraftSession``)."""
        del greedy
        return NgramBatchSession(self)


class NgramSession:
    """One generation's lookup state: every committed token, per row."""

    def __init__(self, lookup: NgramLookup, prompt_ids: torch.Tensor) -> None:
        assert prompt_ids.dim() == 2 and prompt_ids.shape[1] >= 1, "prompt_ids must be [B, T] with T >= 1"
        self.lookup = lookup
        self.history = prompt_ids  # [B, T]

    def propose(self, new_tokens: torch.Tensor, choice: Choice, generator: torch.Generator) -> Draft:
        """The lookup's guess at the next ``choice.block_size`` tokens: a one-hot draft without
        confidence, ``[B, K]``, or ``[B, 0]`` when a row has no guess."""
        del generator  # nothing random
        block_size = choice.block_size
        assert 1 <= block_size <= self.lookup.max_block_size, f"block_size {block_size} outside 1..max"
        if new_tokens.shape[1]:
            self.history = torch.cat([self.history, new_tokens.to(self.history.device)], dim=1)
        tokens, found = context_continuations(list(self.history), block_size, self.lookup.seed)
        if not bool(found.all()):
            return Draft(tokens=self.history[:, :0], probs=None)
        return Draft(tokens=tokens, probs=None)


class NgramBatchSession:
    """The lookup over a batch of rows (``specdiff.batch_drafts.BatchDraftSession``): every row's
    committed tokens, and one ``context_continuations`` call a round for all of them. A B = 8 lookup
    round of the pocket pair drafts in 0.5-0.7 ms this way, against 1.2-1.7 ms with one torch lookup
    session per row (``benchmarks/batch_costs.py``, table 2)."""

    def __init__(self, lookup: NgramLookup) -> None:
        self.lookup = lookup
        self.history: list[torch.Tensor] = []  # per row [T_i]

    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        assert all(p.dim() == 1 and p.shape[0] >= 1 for p in prompts), "each prompt must be [T] with T >= 1"
        self.history += list(prompts)

    def remove_rows(self, keep: Sequence[int]) -> None:
        self.history = [self.history[i] for i in keep]

    def propose(self, new_tokens: Sequence[torch.Tensor], choice: Choice, generator: torch.Generator) -> RaggedDraft:
        """Append each row's newly committed tokens ``[n_i]``; propose ``choice.block_size`` tokens for
        every row that has a guess (one-hot), none for a row without."""
        del generator  # nothing random
        assert len(new_tokens) == len(self.history), "one tensor of new tokens per row"
        block_size = choice.block_size
        assert 1 <= block_size <= self.lookup.max_block_size, f"block_size {block_size} outside 1..max"
        self.history = [torch.cat([h, t.to(h.device)]) if t.numel() else h
                        for h, t in zip(self.history, new_tokens, strict=True)]
        tokens, found = context_continuations(self.history, block_size, self.lookup.seed)
        return RaggedDraft(Draft(tokens=tokens, probs=None), lengths=found.long().cpu() * block_size)
