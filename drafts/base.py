"""The draft-engine interface that the decode loop knows."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import torch


class ProposalMode(enum.Enum):
    """Which tokens of the denoised canvas a drafter proposes, and with what distribution.

    ARGMAX: the final argmax canvas. Given the drafter's own random noise (drawn independently of
        the verifier's randomness), the proposal is a deterministic function of the context, so the
        distribution each token was drawn from is one-hot. Speculative sampling is exact for any
        draft distribution, one-hot included, and greedy verification ignores it.
    RESAMPLE: each token re-drawn independently from the last denoising step's distribution (the
        temperature-scheduled logits). The tokens are conditionally independent given those
        logits, so the distribution of token i given the context and the earlier draft tokens is
        exactly that step's row i: the acceptance test sees the true draft distribution.
    AUTO: ARGMAX for greedy decoding, RESAMPLE when sampling. Under sampling a one-hot draft is
        accepted with the verifier's probability of that one token, while a resampled draft is
        accepted with the overlap of the two distributions: on the pocket pair at temperature
        0.7-1.0, 1.57-1.73 tokens a round against 1.13-1.31 (``benchmarks/draft_options.py``).
    """

    ARGMAX = "argmax"
    RESAMPLE = "resample"
    AUTO = "auto"

    def resolved(self, greedy: bool) -> ProposalMode:
        """The concrete mode for a greedy or a sampled decode (AUTO picks; the others stay)."""
        if self is ProposalMode.AUTO:
            return ProposalMode.ARGMAX if greedy else ProposalMode.RESAMPLE
        return self


@dataclass(frozen=True)
class Draft:
    """A proposed block.

    Attributes:
        tokens: ``[B, K]`` long.
        probs: ``[B, K, V]`` float32, row i the exact distribution ``tokens[:, i]`` was drawn from;
            None for a deterministic proposal (one-hot at ``tokens``), which ``distribution``
            builds only when a sampled acceptance test needs it: at a real vocabulary a one-hot
            block is tens of MB a round that greedy verification never reads.
        denoising_steps_used: steps actually run (the early stop may end before the cap).
        scores: ``[B, K, V]`` float32 or None: the logits the tokens were taken from (argmax or
            drawn from their softmax), kept so that ``confidence`` can be computed on demand;
            None for a drafter that offers no confidence.
        guesses: per row, ``[G]``: the context lookup's guess at the continuation, what a 0-step
            round would have proposed here (empty: no guess), when the drafter computed one; the
            decoder reports how far it went (``RoundStats.lookup_reach``), so a controller learns
            about the lookup in rounds the model drafted too. Never verified, never committed.
    """

    tokens: torch.Tensor
    probs: torch.Tensor | None
    denoising_steps_used: int
    scores: torch.Tensor | None = None
    guesses: tuple[torch.Tensor, ...] | None = None

    def __post_init__(self) -> None:
        batch, k = self.tokens.shape
        assert self.probs is None or self.probs.shape[:2] == (batch, k), (
            f"probs must be [B, K, V] with [B, K] = {(batch, k)}, got {tuple(self.probs.shape)}"
        )
        assert self.scores is None or self.scores.shape[:2] == (batch, k), "scores must be [B, K, V]"

    def confidence(self) -> torch.Tensor | None:
        """``[B, K]`` in (0, 1]: the drafter's confidence in each position, the largest probability of
        the distribution its token came from (None without ``scores``).

        A controller may cut the block on it (``Controller.cut``): a cut that depends only on the
        drafter's distributions, never on the tokens drawn from them or on the verifier, leaves every
        kept token's acceptance test exact. Computed on demand: it is a pass over the block's
        logits, at a real vocabulary dearer than the argmax itself, and only a cutting controller
        reads it.
        """
        if self.scores is None:
            return None
        if self.probs is not None:
            return self.probs.amax(dim=-1)
        # The largest probability is the argmax's: exp(max - logsumexp), without a softmax copy.
        return torch.exp(self.scores.amax(dim=-1) - torch.logsumexp(self.scores, dim=-1))

    def truncated(self, k: int) -> Draft:
        """The first ``k`` positions of this draft (each keeps the distribution it was drawn from)."""
        return Draft(
            tokens=self.tokens[:, :k],
            probs=None if self.probs is None else self.probs[:, :k],
            denoising_steps_used=self.denoising_steps_used,
            scores=None if self.scores is None else self.scores[:, :k],
            guesses=self.guesses,
        )

    def distribution(self, vocab_size: int) -> torch.Tensor:
        """``[B, K, V]``: the distribution each token was drawn from (one-hot when ``probs`` is None)."""
        if self.probs is not None:
            return self.probs
        return torch.nn.functional.one_hot(self.tokens, vocab_size).to(torch.float32)


class DraftSession(Protocol):
    """One generation's drafting state (for a diffusion drafter: its encoder cache)."""

    def propose(
        self,
        new_tokens: torch.Tensor,
        block_size: int,
        denoising_steps: int,
        generator: torch.Generator,
        recycle_canvas: bool = False,
    ) -> Draft:
        """Append ``new_tokens`` ``[B, n]`` (committed since the last call) and propose up to
        ``block_size`` tokens (fewer, even none, only where the drafter has nothing to offer: a
        0-step round without a context lookup guess)."""


class DraftEngine(Protocol):
    """A drafter: a canvas length, a vocabulary, and sessions that start from a prompt.

    Optional: ``min_denoising_steps`` (1 when absent), the fewest denoising steps a round may ask
    for. A drafter that can propose without running its model at all (the diffusion drafter's
    context lookup, at 0 steps) says 0; the decoder then lets controllers choose 0.
    """

    canvas_length: int
    vocab_size: int
    tokenizer: object | None

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> DraftSession:
        """A new session whose context is ``prompt_ids`` ``[B, T]``; ``greedy`` says whether the
        decode it serves is greedy (a drafter may propose differently for sampling)."""
