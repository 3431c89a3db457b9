"""A policy's drafting settings: the rows its acceptance counts keep, and moves between them.

A setting is ``(proposer, denoising steps, recycle canvas)``: the n-gram lookup (never recycled: it
has no canvas), then the diffusion drafter per step count and recycling option. The ladder orders
them for exploration (the lookup, then the drafter by steps); the warm-up measures enough of them
that both cost fits have slope and intercept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from specdiff.errors import SpecdiffError
from specdiff.protocols import PLAIN, Choice, Proposer

Setting = tuple[Proposer, int, bool]


class Settings:
    """The settings a decoder's proposers offer (``limits``: the largest block of each)."""

    def __init__(self, limits: Mapping[Proposer, int], steps_options: tuple[int, ...],
                 recycle_options: tuple[bool, ...]) -> None:
        rows: list[Setting] = []
        if Proposer.NGRAM in limits:
            rows.append((Proposer.NGRAM, 0, False))
        if Proposer.DIFFUSION in limits:
            recycles = list(dict.fromkeys(recycle_options))
            rows += [(Proposer.DIFFUSION, s, r) for s in sorted(set(steps_options)) for r in recycles]
        if not rows:
            have = ", ".join(p.value for p in limits)
            raise SpecdiffError(f"Adaptive weighs the diffusion and n-gram proposers; this decoder has {have}")
        self.rows, self.limits = rows, dict(limits)
        self.ladder = list(dict.fromkeys((p, s) for p, s, _ in rows))
        self.is_lookup = np.array([p is Proposer.NGRAM for p, _, _ in rows])  # [R]
        # Rows whose acceptance estimates pool together: one proposer's.
        self.families = [f for f in ([r for r, (p, _, _) in enumerate(rows) if p is kind] for kind in Proposer) if f]

    def __len__(self) -> int:
        return len(self.rows)

    def fits(self, grid: np.ndarray) -> np.ndarray:
        """``[R, G]``: whether each setting's proposer drafts each grid block."""
        return np.array([[k <= self.limits[p] for k in grid] for p, _, _ in self.rows])

    def index(self, proposer: Proposer, steps: int, recycled: bool) -> int:
        """The nearest setting of ``proposer``: a step count outside the options (a round the policy
        did not pick) still teaches the closest one."""
        rows = [r for r, (p, _, _) in enumerate(self.rows) if p is proposer]
        return min(rows, key=lambda r: (abs(self.rows[r][1] - steps), self.rows[r][2] != recycled))

    def choice(self, r: int, block_size: int) -> Choice:
        proposer, steps, recycle = self.rows[r]
        return Choice(proposer, block_size, steps, recycle)

    def rung_choice(self, rung: tuple[Proposer, int], block_size: int, recycle: bool) -> Choice | None:
        """A choice at another rung of the ladder, keeping the block and recycling (None when that
        rung has no such setting)."""
        proposer, steps = rung
        if (proposer, steps, recycle) not in self.rows:
            return None
        return Choice(proposer, block_size, steps, recycle)

    def recycles(self, choice: Choice) -> bool:
        """Whether both recycling settings exist at this choice's steps."""
        return all((choice.proposer, choice.denoising_steps, r) in self.rows for r in (False, True))

    def runs(self, choice: Choice) -> bool:
        return ((choice.proposer, choice.denoising_steps, choice.recycle_canvas) in self.rows
                and choice.block_size <= self.limits[choice.proposer])

    def warmup(self, start_block_size: int) -> list[Choice]:
        """Two rounds at the fewest model steps; one at the cheapest other setting (the lookup where
        there is one, else the next step count: the draft fit's slope in steps); a small block and a
        plain round (the verify fit's slope)."""
        first = self.rows[1] if self.rows[0][0] is Proposer.NGRAM and len(self.rows) > 1 else self.rows[0]
        k = min(start_block_size, self.limits[first[0]])
        start = Choice(first[0], k, first[1], first[2])
        schedule = [start, start]
        model_steps = sorted({s for p, s, _ in self.rows if p is Proposer.DIFFUSION})
        if Proposer.NGRAM in self.limits and first[0] is Proposer.DIFFUSION:
            schedule.append(Choice.ngram(min(k, self.limits[Proposer.NGRAM])))
        elif len(model_steps) > 1:
            schedule.append(Choice(first[0], k, model_steps[1], first[2]))
        return [*schedule, Choice(first[0], max(1, k // 4), first[1], first[2]), PLAIN]


def next_move(moves: list[Choice | None], turn: int, current: Choice,
              runs: Callable[[Choice], bool]) -> tuple[Choice, int]:
    """The exploration rotation both adaptive policies share: from ``turn``, the first of ``moves``
    that exists, differs from ``current`` and ``runs``; returns it (``current`` if none) and the turn
    after it."""
    for _ in moves:
        move = moves[turn % len(moves)]
        turn += 1
        if move is not None and move != current and runs(move):
            return move, turn
    return current, turn
