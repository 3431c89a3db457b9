"""Per-round statistics and the result of one generation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import pandas as pd

from specdiff.protocols import Proposer


@dataclass(frozen=True)
class RoundStats:
    """One draft-verify round.

    ``proposed`` draft tokens were verified and the leading ``accepted`` of them kept; the verifier
    then added its own token, so the round committed ``accepted + 1`` tokens unless EOS or
    ``max_new_tokens`` cut the block short (``committed`` is what was kept). Draft positions
    ``0..accepted-1`` were accepted, position ``accepted`` (when < proposed) was rejected, and the
    positions after it were never judged. ``block_size`` is the block the controller chose (capped
    so a round never drafts past the end of the output); ``proposed`` is less when the controller
    cut the drafted block on the drafter's confidence. ``proposer`` is who drafted (``PLAIN``: no
    draft). ``side_reach`` is how many of the committed tokens the draft's side report (another
    proposer's guess, computed for free: ``specdiff.protocols.SideReport``) had right, from the
    first (-1: no side report): a controller learns about that proposer while another drafts.
    """

    round_index: int
    block_size: int
    denoising_steps: int
    denoising_steps_used: int
    proposed: int
    accepted: int
    committed: int
    draft_s: float
    verify_s: float
    other_s: float
    canvas_recycled: bool = False
    proposer: Proposer = Proposer.DIFFUSION
    side_reach: int = -1

    @property
    def total_s(self) -> float:
        return self.draft_s + self.verify_s + self.other_s

    @property
    def fully_accepted(self) -> bool:
        return self.proposed > 0 and self.accepted == self.proposed


ROUND_COLUMNS = [f.name for f in fields(RoundStats)]


def loop_share(tokens: list[int] | tuple[int, ...], n: int = 4) -> float:
    """The share of ``n``-grams of ``tokens`` that already occurred earlier in them.

    Small verifiers loop under greedy decoding, and loops are trivially easy to draft, so every
    acceptance figure is reported beside this (real held-out stdlib code scores about 0.09).
    """
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def rounds_frame(stats: tuple[RoundStats, ...] | list[RoundStats]) -> pd.DataFrame:
    """One tidy row per round, with a ``total_s`` column."""
    frame = pd.DataFrame([asdict(s) | {"proposer": s.proposer.value} for s in stats], columns=ROUND_COLUMNS)
    frame["total_s"] = frame["draft_s"] + frame["verify_s"] + frame["other_s"]
    return frame


def position_counts(stats: tuple[RoundStats, ...] | list[RoundStats], max_positions: int) -> tuple[
    list[int], list[int]
]:
    """Per draft position: how often it was judged, and how often it was accepted.

    Position i is judged in a round when every earlier position was accepted (``i <= accepted``) and
    it was proposed (``i < proposed``).
    """
    judged = [0] * max_positions
    accepted = [0] * max_positions
    for s in stats:
        for i in range(min(s.proposed, s.accepted + 1, max_positions)):
            judged[i] += 1
            accepted[i] += int(i < s.accepted)
    return judged, accepted


@dataclass(frozen=True)
class GenerationResult:
    """The output of ``SpeculativeDecoder.generate``.

    Attributes:
        token_ids: the new tokens only (prompt excluded), EOS included when one ended the output.
        text: their decoding, or ``""`` when no tokenizer is attached.
        prompt_ids: the prompt as the verifier saw it.
        elapsed_s: wall-clock seconds of the whole call (tokenization excluded).
        stats: one record per round.
    """

    token_ids: list[int]
    text: str
    prompt_ids: list[int]
    elapsed_s: float
    stats: tuple[RoundStats, ...]

    @property
    def num_rounds(self) -> int:
        return len(self.stats)

    @property
    def mean_acceptance_length(self) -> float:
        """Tokens committed per round, the verifier's own token included."""
        return len(self.token_ids) / self.num_rounds if self.stats else 0.0

    @property
    def proposed(self) -> int:
        """Draft tokens proposed, over all rounds."""
        return sum(s.proposed for s in self.stats)

    @property
    def accepted(self) -> int:
        """Draft tokens accepted, over all rounds."""
        return sum(s.accepted for s in self.stats)

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens over proposed draft tokens (0 when nothing was proposed)."""
        proposed = self.proposed
        return self.accepted / proposed if proposed else 0.0

    @property
    def tokens_per_s(self) -> float:
        return len(self.token_ids) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def time_split(self) -> dict[str, float]:
        """Seconds spent drafting, verifying and on everything else, summed over rounds."""
        return {
            "draft_s": sum(s.draft_s for s in self.stats),
            "verify_s": sum(s.verify_s for s in self.stats),
            "other_s": sum(s.other_s for s in self.stats),
        }

    def stats_frame(self) -> pd.DataFrame:
        return rounds_frame(self.stats)
