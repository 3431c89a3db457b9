"""What the batch loop knows of the models: batched sessions, ragged drafts, a per-row fallback.

A batched draft session answers ``DraftSession.propose`` for every row at once, and a row may
propose fewer tokens than the block (an n-gram lookup without a guess proposes none), so a batch's
proposal is a ``RaggedDraft``: the tokens padded to ``[B, K]`` and each row's length.

``batch_draft_session(engine, greedy)`` gives the engine's own batched session where it has one
(``engine.batch_session``: the diffusion drafter's is ``specdiff.drafts.batched_diffusion``, the
n-gram lookup's ``specdiff.drafts.ngram.NgramBatchSession``), and otherwise ``PerRowDraftSessions``,
one single-row session per row, proposed row by row: correct for any engine. The verifier's batched
session (``BatchVerifierSession``) is the adapter's ``batch_session()``
(``specdiff.verifiers.batched``). Everything here is the core's: adapters implement these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from specdiff.errors import SpecdiffError
from specdiff.protocols import Choice, Draft, DraftEngine, DraftSession, SideReport


@dataclass(frozen=True)
class RaggedDraft:
    """A batch's proposal: ``draft`` padded to ``[B, K]``, row i's first ``lengths[i]`` tokens real.

    Past a row's length its tokens, distributions and scores are filler: never verified, never read.
    ``draft.side``, when there, holds one guess per row.
    """

    draft: Draft
    lengths: torch.Tensor  # [B] long

    def __post_init__(self) -> None:
        batch, k = self.draft.tokens.shape
        assert self.lengths.shape == (batch,), f"lengths must be [B={batch}]"
        assert bool((self.lengths <= k).all()) and bool((self.lengths >= 0).all()), "lengths must lie in 0..K"

    @property
    def width(self) -> int:
        return int(self.draft.tokens.shape[1])

    def row(self, i: int) -> Draft:
        """Row i's real draft, ``[1, lengths[i]]``, each token with the distribution it was drawn from."""
        d, n = self.draft, int(self.lengths[i])
        side = None if d.side is None else SideReport(d.side.proposer, (d.side.tokens[i],))
        return Draft(
            tokens=d.tokens[i : i + 1, :n],
            probs=None if d.probs is None else d.probs[i : i + 1, :n],
            denoising_steps_used=d.denoising_steps_used,
            scores=None if d.scores is None else d.scores[i : i + 1, :n],
            side=side,
        )

    @classmethod
    def from_rows(cls, drafts: Sequence[Draft]) -> RaggedDraft:
        """Pad single-row drafts ``[1, k_i]`` into one (scores kept only when every row has them)."""
        width = max((d.tokens.shape[1] for d in drafts), default=0)
        lengths = torch.tensor([d.tokens.shape[1] for d in drafts], dtype=torch.long)

        def pad(tensors: list[torch.Tensor]) -> torch.Tensor:
            out = tensors[0].new_zeros((len(tensors), width, *tensors[0].shape[2:]))
            for i, t in enumerate(tensors):
                out[i, : t.shape[1]] = t[0]
            return out

        tokens = pad([d.tokens for d in drafts])
        scores = pad([d.scores for d in drafts]) if all(d.scores is not None for d in drafts) else None
        probs = None
        # Rows without probs are one-hot (Draft.distribution): mixed with rows that have them, the
        # padded batch carries every row's distribution explicitly.
        if any(d.probs is not None for d in drafts):
            vocab = next(d.probs for d in drafts if d.probs is not None).shape[-1]
            probs = pad([d.distribution(vocab) for d in drafts])
        sides = [d.side for d in drafts]
        side = None
        if sides and all(s is not None for s in sides) and len({s.proposer for s in sides}) == 1:
            side = SideReport(sides[0].proposer, tuple(s.tokens[0] for s in sides))
        steps = max((d.denoising_steps_used for d in drafts), default=0)
        return cls(Draft(tokens=tokens, probs=probs, denoising_steps_used=steps, scores=scores, side=side), lengths)


class BatchDraftSession(Protocol):
    """Drafting state for a batch of rows that join and leave between rounds."""

    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        """Append rows, each from its prompt ``[T]`` (the context the first proposal continues)."""

    def remove_rows(self, keep: Sequence[int]) -> None:
        """Keep only the rows at indices ``keep``, in that order."""

    def propose(self, new_tokens: Sequence[torch.Tensor], choice: Choice, generator: torch.Generator) -> RaggedDraft:
        """Append each row's tokens committed since its last proposal (``[n_i]``) and propose up to
        ``choice.block_size`` tokens per row."""


class BatchVerifierSession(Protocol):
    """The verifier's state for a batch of rows, each holding back its pending token."""

    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        """Append rows; each prompt ``[T]`` but its last token goes into the cache."""

    def remove_rows(self, keep: Sequence[int]) -> None:
        """Keep only the rows at indices ``keep``, in that order."""

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + K]`` (pending, draft, filler) -> ``[B, 1 + K, V]`` float32 logits."""

    def keep(self, num_scored_kept: torch.Tensor) -> None:
        """Row i keeps the first ``num_scored_kept[i]`` ``[B]`` of the slots the last ``score`` appended."""


class PerRowDraftSessions:
    """``BatchDraftSession`` over any draft engine: one single-row session per row."""

    def __init__(self, engine: DraftEngine, greedy: bool) -> None:
        self.engine, self.greedy = engine, greedy
        self.sessions: list[DraftSession] = []

    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        self.sessions.extend(self.engine.session(p[None], greedy=self.greedy) for p in prompts)

    def remove_rows(self, keep: Sequence[int]) -> None:
        self.sessions = [self.sessions[i] for i in keep]

    def propose(self, new_tokens: Sequence[torch.Tensor], choice: Choice, generator: torch.Generator) -> RaggedDraft:
        assert len(new_tokens) == len(self.sessions), "one tensor of new tokens per row"
        drafts = [s.propose(t[None], choice, generator) for s, t in zip(self.sessions, new_tokens, strict=True)]
        return RaggedDraft.from_rows(drafts)


def batch_draft_session(engine: Any, greedy: bool) -> BatchDraftSession:
    """The engine's batched session (``engine.batch_session(greedy)``), else one session per row."""
    factory = getattr(engine, "batch_session", None)
    return factory(greedy=greedy) if factory is not None else PerRowDraftSessions(engine, greedy)


def batch_verifier_session(verifier: Any) -> BatchVerifierSession:
    """The verifier adapter's batched session, or a clear error for an adapter without one."""
    factory = getattr(verifier, "batch_session", None)
    if factory is None:
        raise SpecdiffError(
            f"the verifier {type(verifier).__name__} has no batch_session(); batched decoding needs one "
            "(specdiff.verifiers.CausalLMVerifier has it), or decode the prompts one by one with generate()"
        )
    return factory()
