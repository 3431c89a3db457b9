"""What the decode loop knows of the models: proposers that draft, and a verifier that scores.

A round is proposed by one of several *proposers*, peers behind one interface (``DraftEngine``):
the diffusion drafter (block size x denoising steps), the n-gram context lookup (block size; no
model), and whatever comes next (an autoregressive assistant, a suffix tree, a grammar-forced
span). The controller's ``Choice`` names the proposer; the loop dispatches on it and never
inspects a step count to tell proposers apart. The verifier (``Verifier``) scores a block in one
forward and rolls its cache back to the accepted length.

Everything here is the core's: draft engines and verifier adapters (``specdiff.drafts``,
``specdiff.verifiers``) implement these protocols, and the core imports neither.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch  # imported where used: the CLI reads these types before any model loads


class Proposer(enum.Enum):
    """Who proposes a round's draft. ``PLAIN``: nobody, the verifier decodes one token alone."""

    PLAIN = "plain"
    DIFFUSION = "diffusion"
    NGRAM = "ngram"

    @property
    def denoises(self) -> bool:
        """Whether a choice for this proposer carries a number of denoising steps."""
        return self is Proposer.DIFFUSION


@dataclass(frozen=True)
class Choice:
    """What the next round runs: ``block_size`` draft tokens from ``proposer`` (with
    ``denoising_steps`` for a diffusion drafter; 0 for every other proposer)."""

    proposer: Proposer
    block_size: int
    denoising_steps: int = 0
    recycle_canvas: bool = False

    def __post_init__(self) -> None:
        assert (self.proposer is Proposer.PLAIN) == (self.block_size == 0), "a plain round drafts 0 tokens"
        assert self.proposer.denoises or (self.denoising_steps == 0 and not self.recycle_canvas), (
            f"{self.proposer.value} rounds run no denoising steps"
        )

    @classmethod
    def diffusion(cls, block_size: int, denoising_steps: int, recycle_canvas: bool = False) -> Choice:
        return cls(Proposer.DIFFUSION, block_size, denoising_steps, recycle_canvas)

    @classmethod
    def ngram(cls, block_size: int) -> Choice:
        return cls(Proposer.NGRAM, block_size)


PLAIN = Choice(Proposer.PLAIN, 0)


@dataclass(frozen=True)
class SideReport:
    """What another proposer would have drafted this round, computed for free by the one that
    did (the diffusion drafter seeds its canvas from the n-gram lookup's guess). Never verified,
    never committed: the decoder scores it against what the round committed
    (``RoundStats.side_reach``), so a controller learns about that proposer while it is not used.

    Attributes:
        proposer: whose proposal this is.
        tokens: per row, ``[G]`` ids (empty: that proposer had nothing to offer).
    """

    proposer: Proposer
    tokens: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Draft:
    """A proposed block.

    Attributes:
        tokens: ``[B, K]`` long.
        probs: ``[B, K, V]`` float32, row i the exact distribution ``tokens[:, i]`` was drawn from;
            None for a deterministic proposal (one-hot at ``tokens``), which ``distribution``
            builds only when a sampled acceptance test needs it: at a real vocabulary a one-hot
            block is tens of MB a round that greedy verification never reads.
        denoising_steps_used: steps actually run (0 for a proposer that does not denoise).
        scores: ``[B, K, V]`` float32 or None: the logits the tokens were taken from (argmax or
            drawn from their softmax), kept so that ``confidence`` can be computed on demand;
            None for a proposer that offers no confidence.
        side: another proposer's proposal at the same place, when this one computed it anyway.
    """

    tokens: torch.Tensor
    probs: torch.Tensor | None
    denoising_steps_used: int = 0
    scores: torch.Tensor | None = None
    side: SideReport | None = None

    def __post_init__(self) -> None:
        batch, k = self.tokens.shape
        assert self.probs is None or self.probs.shape[:2] == (batch, k), (
            f"probs must be [B, K, V] with [B, K] = {(batch, k)}, got {tuple(self.probs.shape)}"
        )
        assert self.scores is None or self.scores.shape[:2] == (batch, k), "scores must be [B, K, V]"

    def confidence(self) -> torch.Tensor | None:
        """``[B, K]`` in (0, 1]: the proposer's confidence in each position, the largest probability
        of the distribution its token came from (None without ``scores``).

        A controller may cut the block on it: a cut that depends only on the proposer's
        distributions, never on the tokens drawn from them or on the verifier, leaves every kept
        token's acceptance test exact. Computed on demand: at a real vocabulary it costs more than
        the argmax itself.
        """
        if self.scores is None:
            return None
        if self.probs is not None:
            return self.probs.amax(dim=-1)
        import torch

        # The largest probability is the argmax's: exp(max - logsumexp), without a softmax copy.
        return torch.exp(self.scores.amax(dim=-1) - torch.logsumexp(self.scores, dim=-1))

    def truncated(self, k: int) -> Draft:
        """The first ``k`` positions of this draft (each keeps the distribution it was drawn from)."""
        return Draft(
            tokens=self.tokens[:, :k],
            probs=None if self.probs is None else self.probs[:, :k],
            denoising_steps_used=self.denoising_steps_used,
            scores=None if self.scores is None else self.scores[:, :k],
            side=self.side,
        )

    def distribution(self, vocab_size: int) -> torch.Tensor:
        """``[B, K, V]``: the distribution each token was drawn from (one-hot when ``probs`` is None)."""
        if self.probs is not None:
            return self.probs
        import torch

        return torch.nn.functional.one_hot(self.tokens, vocab_size).to(torch.float32)


class DraftSession(Protocol):
    """One generation's drafting state (for a diffusion drafter: its encoder cache)."""

    def propose(self, new_tokens: torch.Tensor, choice: Choice, generator: torch.Generator) -> Draft:
        """Append ``new_tokens`` ``[B, n]`` (committed since this session's last call) and propose
        up to ``choice.block_size`` tokens (fewer, even none, only where the proposer has nothing
        to offer: an n-gram lookup whose context never repeats)."""


class DraftEngine(Protocol):
    """A proposer: its kind, the largest block it drafts, a vocabulary, and sessions per prompt."""

    kind: Proposer
    max_block_size: int
    vocab_size: int
    tokenizer: object | None

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> DraftSession:
        """A new session whose context is ``prompt_ids`` ``[B, T]``; ``greedy`` says whether the
        decode it serves is greedy (a proposer may draft differently for sampling)."""


class VerifierSession(Protocol):
    """One generation's verifier state: a KV cache over every committed token but the newest
    (the *pending* token, which the next ``score`` call feeds first)."""

    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """Score ``tokens`` ``[B, 1 + K]`` (the pending token, then the draft) in one forward:
        ``[B, 1 + K, V]`` float32 logits, row i the distribution of the token after ``tokens[:, i]``."""

    def keep(self, num_scored_kept: int, num_scored: int) -> None:
        """Roll back so that only the first ``num_scored_kept`` of the last ``num_scored`` stay,
        exactly as if the rejected tokens had never been fed (sliding-window layers included)."""


class Verifier(Protocol):
    """A verifier adapter: vocabulary, stop ids, limits, and sessions per prompt."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    max_positions: int | None
    tokenizer: object | None

    @property
    def device(self) -> torch.device: ...

    def session(self, prompt_ids: torch.Tensor) -> VerifierSession:
        """A session whose cache holds ``prompt_ids[:, :-1]`` ``[B, T - 1]``; the last is pending."""
