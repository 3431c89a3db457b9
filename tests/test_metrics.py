"""Round statistics: hand-computed tables."""

from __future__ import annotations

import pytest

from specdiff.metrics import GenerationResult, RoundStats, loop_share, position_counts


def stats(proposed: int, accepted: int, committed: int) -> RoundStats:
    return RoundStats(0, proposed, 1, 1, proposed, accepted, committed, 0.01, 0.02, 0.001)


def test_loop_share_table():
    assert loop_share([1, 2, 3, 4, 5, 6]) == 0.0
    assert loop_share([1, 2, 3, 4, 1, 2, 3, 4]) == pytest.approx(1 / 5)  # 5 grams, (1,2,3,4) seen twice
    assert loop_share([7] * 10) == pytest.approx(6 / 7)
    assert loop_share([1, 2, 3]) == 0.0  # no 4-gram at all


def test_position_counts_table():
    rounds = [stats(4, 4, 5), stats(4, 1, 2), stats(4, 0, 1), stats(0, 0, 1)]
    judged, accepted = position_counts(rounds, 4)
    # position 0 judged in the three drafting rounds, accepted in two; position 1 judged in two...
    assert judged == [3, 2, 1, 1]
    assert accepted == [2, 1, 1, 1]


def test_result_aggregates():
    rounds = (stats(4, 4, 5), stats(4, 1, 2), stats(0, 0, 1))
    result = GenerationResult(token_ids=list(range(8)), text="", prompt_ids=[1], elapsed_s=0.5, stats=rounds)
    assert result.mean_acceptance_length == pytest.approx(8 / 3)
    assert result.acceptance_rate == pytest.approx(5 / 8)
    assert result.tokens_per_s == pytest.approx(16.0)
    assert result.time_split()["draft_s"] == pytest.approx(0.03)
