"""``Adaptive``: the decoder's default policy, expected committed tokens per second learnt online.

Per decision it predicts, for every drafting setting (the n-gram lookup; the diffusion drafter at
each denoising-steps option) and block size K on ``block_grid``, the expected committed tokens
(``specdiff.controllers.reach``) over the predicted seconds (``specdiff.controllers.cost``), and
compares the best with plain decoding. Its mechanisms, and why each is there:

- Regimes: acceptance comes in stretches (a loop, a passage the context already holds), so the
  counts and the current choice are kept per regime (``regime_of``: the last drafted round's
  accepted count bucket, and whether it accepted its whole block); a rare regime borrows from the
  pooled estimates until it has data.
- Warm-up: the first rounds follow a fixed schedule (the fewest steps twice, the lookup or a second
  step count, a small block, a plain round) so both cost fits have slope and intercept.
- Exploration: every ``explore_every`` rounds a neighbour of the current choice runs once, in a
  fixed rotation; the policy has no randomness and never touches the decode generator.
- Hysteresis: a choice changes only when the best beats it by ``hysteresis``.
- Side reports: a diffusion round reports how far the lookup's guess (its canvas seed) went, which
  counts as lookup evidence, so a few early failed lookup rounds do not keep the policy off it.
- Escalation: an n-gram block accepted whole doubles the next; how far its run went is censored.
- Fall-back and probes: when nothing beats plain decoding, rounds run plain; a probe drafts after
  ``probe_after`` plain rounds, and each failed probe doubles the wait.
- ``decide_every``: the choice is re-weighed every few rounds (at once on entering a regime or
  after a probe), since weighing is most of the policy's own compute.

Later generations on the same decoder start from what earlier ones learnt: the cost fits, and the
acceptance counts faded. docs/controllers.md has the measured ablation of each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from specdiff.controllers.base import Limits, canvas_of
from specdiff.controllers.cost import CostModel
from specdiff.controllers.reach import ReachCounts, block_grid, regime_of
from specdiff.controllers.settings import Settings, next_move
from specdiff.errors import SpecdiffError
from specdiff.metrics import RoundStats
from specdiff.protocols import PLAIN, Choice, Proposer


@dataclass
class Adaptive:
    """Picks the proposer, block size, denoising steps and canvas recycling that maximise expected
    committed tokens per second; falls back to plain decoding when nothing beats it (see the
    module docstring for each setting's mechanism)."""

    start_block_size: int = 16
    # The diffusion drafter's step counts to weigh (the n-gram lookup is weighed whenever present).
    steps_options: tuple[int, ...] = (1, 2, 4, 8)
    # Recycling lowered acceptance on the pocket pair, so it is off unless asked for.
    recycle_options: tuple[bool, ...] = (False,)
    explore_every: int = 32
    hysteresis: float = 0.1
    probe_after: int = 8
    max_probe_after: int = 64
    memory: float = 16.0
    prior_acceptance: float = 0.5
    prior_strength: float = 2.0
    regime_edges: tuple[int, ...] = (16,)  # (): no buckets (the whole-block flag still splits)
    escalate: bool = True
    decide_every: int = 4

    def __post_init__(self) -> None:
        if not self.steps_options or min(self.steps_options) < 1:
            raise SpecdiffError(
                f"steps_options must be non-empty, each >= 1 (got {self.steps_options}); the n-gram "
                "lookup is weighed as its own proposer, not as 0 steps"
            )
        if not self.recycle_options:
            raise SpecdiffError("recycle_options must name at least one of False, True")
        if self.start_block_size < 1 or self.explore_every < 2:
            raise SpecdiffError("Adaptive needs start_block_size >= 1 and explore_every >= 2")
        if not 1 <= self.probe_after <= self.max_probe_after:
            raise SpecdiffError("Adaptive needs 1 <= probe_after <= max_probe_after")
        if list(self.regime_edges) != sorted(set(self.regime_edges)) or min(self.regime_edges, default=1) < 1:
            raise SpecdiffError(f"regime_edges must be ascending distinct counts >= 1 (got {self.regime_edges})")
        if self.decide_every < 1:
            raise SpecdiffError(f"decide_every must be >= 1 round (got {self.decide_every})")
        # Regimes: one per bucket of the last drafted round's accepted count and whole-block flag
        # (``regime_of``), and one for a generation's start (nothing drafted yet), the last index.
        self.regimes = 2 * (len(self.regime_edges) + 1) + 1
        self.fresh = self.regimes - 1
        self.limits: dict[Proposer, int] = {}
        self.settings: Settings | None = None  # set by reset: it depends on the proposers
        self.cost = CostModel()
        self.warmed_up = False

    # -- the protocol ------------------------------------------------------------------------------

    def reset(self, limits: Limits) -> None:
        available = {p: k for p, k in limits.items() if p is not Proposer.PLAIN}
        canvas_of(available)
        if available != self.limits or not self.warmed_up:
            self._learn_afresh(available)
        else:
            # The same proposers again: the costs carry over, and so do the acceptance counts, faded
            # as if ``memory`` rounds had passed, a prior that the new prompt's rounds soon outweigh.
            self.counts.fade((1.0 - 1.0 / self.memory) ** self.memory)
            self.warmup = []
        self.rounds_seen = 0
        self.since_decision = 0  # rounds since the current regime's choice was last weighed
        self.regime = self.fresh
        self.drafted_last = False  # the first draft encodes the prompt: keep it out of the cost fit
        self.probing = False
        self.binding = 0
        self.probe_interval = self.probe_after
        # A new prompt is a natural time to probe: plain decoding left over from the last one
        # starts with a probe round.
        self.plain_streak = self.probe_interval
        self.explore_turn = 0
        if self.warmed_up:
            # Only the start of a generation is in the fresh regime, so its choice is made here, from
            # the first rounds of earlier generations and (through the shrinkage) everything else.
            self.current = self._best(*self._expected_tokens())[0]

    def choose(self) -> Choice:
        if self.rounds_seen < len(self.warmup):
            return self.warmup[self.rounds_seen]
        if self.current.proposer is Proposer.PLAIN:
            if self.plain_streak < self.probe_interval:
                return PLAIN
            # A probe is a measurement: it drafts at least the starting block, so that one fully
            # accepted round can show that drafting pays again.
            self.probing = True
            best = self._best(*self._expected_tokens())[0]
            return replace(best, block_size=max(best.block_size, min(self.start_block_size, self.limit_of(best))))
        if (self.rounds_seen - len(self.warmup)) % self.explore_every == self.explore_every - 1:
            return self._neighbour()
        if self.escalate and self.binding and self.current.proposer is Proposer.NGRAM:
            # The last round's whole block was accepted, so its run went on past the block: how
            # far is censored, and only a longer block can tell.
            return replace(self.current, block_size=max(self.current.block_size,
                                                        min(2 * self.binding, self.limit_of(self.current))))
        return self.current

    def observe(self, stats: RoundStats) -> None:
        # A round from a proposer this policy does not weigh (one the decoder lacks) teaches only costs.
        drafted = stats.proposer is not Proposer.PLAIN and stats.proposer in self.limits
        self.cost = self.cost.updated(stats, teach_draft=self.drafted_last)
        # Only a model round encodes the committed tokens: after any other, the next model round
        # also encodes what was committed meanwhile, so its seconds stay out of the fit.
        self.drafted_last = stats.denoising_steps_used > 0
        self.counts.fade(1.0 - 1.0 / self.memory)
        if drafted:
            entered = self._count(stats)
            self.plain_streak = 0  # plain rounds are counted since the last draft
        else:
            entered = False
            self.plain_streak += 1  # no draft, no news: the regime stays
        probed, self.probing = self.probing, False
        self.rounds_seen += 1
        if self.warmup and self.rounds_seen == len(self.warmup):  # warm-up over: start from its first choice
            self.choices = [self.warmup[0]] * self.regimes
            self.plain_streak, self.warmed_up = 0, True
        if self.rounds_seen >= len(self.warmup):
            self.since_decision += 1
            if probed or entered or self.since_decision >= self.decide_every or self.rounds_seen == len(self.warmup):
                self.current = self._decide(probed, entered)
                self.since_decision = 0

    # -- deciding ----------------------------------------------------------------------------------

    def plain_rate(self) -> float:
        return 1.0 / self.cost.round_s(Proposer.PLAIN, 0)

    def _rate(self, choice: Choice, tokens: np.ndarray) -> float:
        r = self.settings.index(choice.proposer, choice.denoising_steps, choice.recycle_canvas)
        seconds = self.cost.round_s(choice.proposer, choice.block_size, self.steps_used[r])
        return float(tokens[r, choice.block_size] / seconds)

    def _best(self, tokens: np.ndarray, overall: np.ndarray) -> tuple[Choice, float]:
        """The best choice in the current regime, and its predicted rate, from the regime's and the
        overall expected tokens (``_expected_tokens``).

        The drafting setting is picked on every regime's counts together and only the block size on
        the regime's: how steps and recycling change a draft is the drafter's trait, while a regime's
        few rounds at a rarely tried setting are mostly noise. So is whether to run the model at all
        or copy the lookup's guess (picking that per regime replayed no faster).
        """
        seconds = self.round_seconds()  # [R, G]
        rates = np.where(self.grid_ok, tokens[:, self.grid] / seconds, -np.inf)  # [R, G]
        overall_rates = np.where(self.grid_ok, overall[:, self.grid] / seconds, -np.inf)
        r = int(np.argmax(overall_rates.max(1))) if len(self.settings) > 1 else 0
        g = int(np.argmax(rates[r]))
        return self.settings.choice(r, int(self.grid[g])), float(rates[r, g])

    def _decide(self, probed: bool, entered: bool) -> Choice:
        """The current regime's next choice, after a probe round, a round that entered this regime,
        or any other round."""
        plain = self.current.proposer is Proposer.PLAIN
        if plain and not (probed or entered):
            return PLAIN  # a plain round says nothing new about drafting (and this keeps it cheap)
        tokens, overall = self._expected_tokens()
        best, best_rate = self._best(tokens, overall)
        # Hysteresis guards leaving plain decoding too, so that a marginal regime does not flap.
        if best_rate < self.plain_rate() * (1.0 + self.hysteresis if plain else 1.0):
            if probed:  # a failed probe: wait twice as long for the next
                self.probe_interval = min(2 * self.probe_interval, self.max_probe_after)
            self.plain_streak = 0
            return PLAIN
        if plain:
            self.probe_interval = self.probe_after
            return best
        if best_rate > self._rate(self.current, tokens) * (1.0 + self.hysteresis):
            return best
        return self.current

    def _neighbour(self) -> Choice:
        """The next exploration move in a fixed rotation: K up, recycling, setting up, K down, setting
        down (the settings' ladder: the lookup, then the drafter by steps)."""
        current = self.current
        k, r = current.block_size, current.recycle_canvas
        grid = self.grid.tolist()
        ladder, settings = self.settings.ladder, self.settings
        rung = ladder.index((current.proposer, current.denoising_steps))
        up, down = ladder[min(rung + 1, len(ladder) - 1)], ladder[max(rung - 1, 0)]
        moves = [
            replace(current, block_size=min([g for g in grid if g > k], default=k)),
            replace(current, recycle_canvas=not r) if settings.recycles(current) else current,
            settings.rung_choice(up, k, r),
            replace(current, block_size=max([g for g in grid if g < k], default=k)),
            settings.rung_choice(down, k, r),
        ]
        move, self.explore_turn = next_move(moves, self.explore_turn, current, settings.runs)
        return move

    # -- state -------------------------------------------------------------------------------------

    def _learn_afresh(self, limits: dict[Proposer, int]) -> None:
        """The first generation (or other proposers): learn everything afresh, after a warm-up."""
        self.limits = limits
        self.settings = settings = Settings(limits, self.steps_options, self.recycle_options)
        self.canvas_length = canvas_of(limits)
        self.counts = ReachCounts(self.regimes, len(settings), self.canvas_length, settings.families,
                                  self.prior_acceptance, self.prior_strength)
        self.cost = CostModel()
        self.grid = np.array(block_grid(self.canvas_length))  # [G]
        self.grid_ok = settings.fits(self.grid)  # [R, G]: the blocks each setting's proposer can draft
        self.steps_used = np.array([float(s) for _, s, _ in settings.rows])  # [R] mean steps per cap
        self.warmup = settings.warmup(self.start_block_size)
        self.choices = [self.warmup[0]] * self.regimes  # the current choice per regime

    @property
    def current(self) -> Choice:
        """The current regime's choice."""
        return self.choices[self.regime]

    @current.setter
    def current(self, choice: Choice) -> None:
        self.choices[self.regime] = choice

    def limit_of(self, choice: Choice) -> int:
        return self.limits[choice.proposer]

    # -- learning ----------------------------------------------------------------------------------

    def _count(self, stats: RoundStats) -> bool:
        """Count a drafting round's evidence; whether it entered another regime."""
        keep = 1.0 - 1.0 / self.memory
        r = self.settings.index(stats.proposer, stats.denoising_steps, stats.canvas_recycled)
        self.counts.add(self.regime, r, *self._reach_counts(stats))
        if stats.proposer is Proposer.DIFFUSION and stats.side_reach >= 0 and Proposer.NGRAM in self.limits:
            # How far the lookup's guess would have gone: the committed tokens judge its first
            # positions (reached up to the first mismatch; past them nothing is known).
            judged = min(stats.side_reach + 1, stats.committed, self.canvas_length)
            lookup = self.settings.index(Proposer.NGRAM, 0, False)
            self.counts.add_run(self.regime, lookup, judged, stats.side_reach)
        self.steps_used[r] = keep * self.steps_used[r] + (1.0 - keep) * stats.denoising_steps_used
        # The block accepted whole: the run was stopped by the block, not the proposer.
        self.binding = stats.block_size if stats.accepted >= stats.proposed == stats.block_size else 0
        regime = regime_of(min(stats.accepted, stats.proposed), max(stats.proposed, 1), self.regime_edges)
        entered, self.regime = regime != self.regime, regime
        return entered

    @staticmethod
    def _reach_counts(stats: RoundStats) -> tuple[np.ndarray, np.ndarray]:
        """What a drafted round says about reaching each position of its block: ``[K]`` weights of
        evidence and ``[K]`` reaches, accepted up to the first rejection (a lookup without a guess
        proposed nothing: one miss at position 0)."""
        accepted = min(stats.accepted, stats.proposed)
        cap = max(stats.proposed, 1)
        proposed, reached = np.ones(cap), np.zeros(cap)
        reached[:accepted] = 1.0
        return proposed, reached

    def _expected_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        return self.counts.expected_tokens(self.regime)

    def round_seconds(self) -> np.ndarray:
        """``[R, G]`` predicted seconds of a round per drafting setting and grid block size."""
        lookup = self.settings.is_lookup[:, None]
        draft_s = self.cost.draft_many(self.steps_used[:, None], self.grid[None, :], lookup)
        return draft_s + self.cost.verify.predict_many(self.grid + 1)[None, :]
