"""The controller protocol, and the checks every policy shares.

A controller sees every finished round's ``RoundStats`` through ``observe`` and answers ``choose``
before the next round with a ``Choice``: which proposer drafts, how many tokens, and (for a
diffusion drafter) how many denoising steps; ``PLAIN`` runs the verifier alone. A controller may
also have ``cut``: once a block is drafted, the decoder shows it the proposer's confidence in each
position and verifies only the leading tokens it keeps (``RoundStats.block_size`` is the block
chosen, ``proposed`` what was kept). A controller only picks sizes; which tokens are committed is
the acceptance rule's business, so no policy can change the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats
from specdiff.protocols import Choice, Proposer

# What a decoder offers a controller: the largest block each of its proposers drafts.
Limits = Mapping[Proposer, int]


class Controller(Protocol):
    def reset(self, limits: Limits) -> None:
        """Called at the start of each generation with the decoder's proposers and the largest
        block each drafts."""

    def choose(self) -> Choice:
        """The next round's proposer, block size and denoising steps."""

    def observe(self, stats: RoundStats) -> None:
        """Learn from a finished round."""

    # Optional (the decoder calls it when a controller has it and the draft carries confidence):
    # def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
    #     """How many of the drafted block's leading tokens to verify (1..K), from the proposer's
    #     confidence ``[K]`` in each position; called between ``choose`` and ``observe``."""


def check_steps(denoising_steps: int, name: str = "denoising_steps", maximum: int | None = None) -> None:
    """Refuse a diffusion step count below 1 or above the drafter's ``maximum``; ``name`` is what
    the message calls the value."""
    if denoising_steps < 1:
        raise SpecdiffError(
            f"{name} must be >= 1 (got {denoising_steps}); to draft without running a model, "
            "use the n-gram proposer (proposer 'ngram') instead of 0 steps"
        )
    if maximum is not None and denoising_steps > maximum:
        raise SpecdiffError(
            f"{name} {denoising_steps} is more than the drafter's {maximum} (each step denoises the whole "
            f"canvas, about one drafter forward); use at most {maximum}"
        )


def check_choice(choice: Choice, limits: Limits, max_steps: int | None = None) -> None:
    """Refuse a choice the decoder's proposers cannot run, naming the fix (``max_steps``: the
    diffusion drafter's most denoising steps, when known)."""
    if choice.proposer is Proposer.PLAIN:
        return
    if choice.proposer not in limits:
        have = ", ".join(p.value for p in limits) or "none"
        raise SpecdiffError(
            f"the {choice.proposer.value} proposer is not among this decoder's proposers ({have}); "
            f"add one to the decoder or choose another proposer"
        )
    limit = limits[choice.proposer]
    if not 1 <= choice.block_size <= limit:
        raise SpecdiffError(
            f"block_size must be between 1 and the {choice.proposer.value} proposer's largest block {limit} "
            f"(got {choice.block_size}); pick a block size in that range"
        )
    if choice.proposer.denoises:
        check_steps(choice.denoising_steps, maximum=max_steps)


def canvas_of(limits: Limits) -> int:
    """The largest block any proposer drafts: the positions a policy keeps statistics for."""
    if not limits:
        raise SpecdiffError("the decoder has no proposer; give it a drafter or an n-gram lookup")
    return max(limits.values())
