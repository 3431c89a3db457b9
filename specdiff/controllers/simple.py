"""The simple policies: ``Fixed`` (the same choice every round) and ``Heuristic`` (transformers' +2/-1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from specdiff.controllers.base import Limits, check_choice
from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats
from specdiff.protocols import Choice, Proposer


def _choice(proposer: Proposer, block_size: int, denoising_steps: int, recycle_canvas: bool) -> Choice:
    # Steps and recycling belong to a diffusion drafter; other proposers ignore them.
    if proposer.denoises:
        return Choice(proposer, block_size, denoising_steps, recycle_canvas)
    return Choice(proposer, block_size)


@dataclass
class Fixed:
    """The same proposer, block size and denoising steps every round (steps and recycling apply to
    the diffusion drafter only)."""

    block_size: int = 16
    denoising_steps: int = 1
    recycle_canvas: bool = False
    proposer: Proposer = Proposer.DIFFUSION

    @classmethod
    def ngram(cls, block_size: int = 16) -> Fixed:
        """The n-gram context lookup's guess, ``block_size`` tokens every round."""
        return cls(block_size, proposer=Proposer.NGRAM)

    @property
    def choice(self) -> Choice:
        return _choice(self.proposer, self.block_size, self.denoising_steps, self.recycle_canvas)

    def reset(self, limits: Limits) -> None:
        if self.proposer is Proposer.PLAIN:
            raise SpecdiffError("Fixed needs a drafting proposer; for plain decoding use the verifier alone")
        check_choice(self.choice, limits)

    def choose(self) -> Choice:
        return self.choice

    def observe(self, stats: RoundStats) -> None:
        del stats  # a fixed policy learns nothing


@dataclass
class Heuristic:
    """transformers' assisted-decoding schedule: +2 after a fully accepted block, -1 otherwise.

    The block size starts at ``start_block_size`` (transformers' ``num_assistant_tokens`` default,
    20) at every generation and stays within 1..the proposer's largest block; the proposer and the
    denoising steps never change.
    """

    start_block_size: int = 20
    denoising_steps: int = 1
    recycle_canvas: bool = False
    proposer: Proposer = Proposer.DIFFUSION
    block_size: int = field(default=0, init=False)
    limit: int = field(default=0, init=False)

    def reset(self, limits: Limits) -> None:
        check_choice(_choice(self.proposer, 1, self.denoising_steps, self.recycle_canvas), limits)
        if self.start_block_size < 1:
            raise SpecdiffError(f"start_block_size must be >= 1 (got {self.start_block_size})")
        self.limit = limits[self.proposer]
        self.block_size = min(self.start_block_size, self.limit)

    def choose(self) -> Choice:
        return _choice(self.proposer, self.block_size, self.denoising_steps, self.recycle_canvas)

    def observe(self, stats: RoundStats) -> None:
        if stats.proposed == 0:  # the last token of an output is never drafted: nothing to learn
            return
        step = 2 if stats.fully_accepted else -1
        self.block_size = min(max(self.block_size + step, 1), self.limit)
