"""The cost model: straight-line fits from measured seconds, by hand-written points."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdiff.cost import MIN_SECONDS, CostModel, LinearFit
from specdiff.metrics import RoundStats

LONG_MEMORY = 1e9  # forgets nothing: the fit is plain least squares


def fit_points(fit: LinearFit, points: list[tuple[float, float]]) -> LinearFit:
    for x, y in points:
        fit = fit.updated(x, y)
    return fit


def round_stats(proposed: int, draft_s: float, verify_s: float, other_s: float = 0.0, steps_used: int = 1):
    steps = steps_used if proposed else 0
    return RoundStats(0, proposed, steps, steps, proposed, 0, 1, draft_s, verify_s, other_s)


def test_fit_recovers_a_line():
    fit = fit_points(LinearFit(memory=LONG_MEMORY, ridge=1e-9), [(1, 3.0), (2, 5.0), (4, 9.0), (8, 17.0)])
    intercept, slope = fit.coefficients()
    assert intercept == pytest.approx(1.0, abs=1e-6)
    assert slope == pytest.approx(2.0, abs=1e-6)
    assert fit.predict(16) == pytest.approx(33.0, abs=1e-5)


def test_slope_prior_without_spread():
    points = [(1, 0.010)] * 5
    # elasticity 1: cost in proportion to x (drafting seconds per denoising step)
    proportional = fit_points(LinearFit(elasticity=1.0), points)
    assert proportional.predict(4) == pytest.approx(0.040)
    # elasticity 0: flat (verifying one token or many costs one forward)
    flat = fit_points(LinearFit(elasticity=0.0), [(17, 0.010)] * 5)
    assert flat.predict(1) == pytest.approx(0.010)


def test_slope_never_negative_and_prediction_floored():
    fit = fit_points(LinearFit(memory=LONG_MEMORY), [(1, 2.0), (2, 1.0)])
    assert fit.coefficients()[1] == 0.0
    assert LinearFit().predict(3) == MIN_SECONDS  # no data yet
    assert fit_points(LinearFit(), [(1, 0.0)]).predict(1) == MIN_SECONDS


def test_fit_forgets_old_points():
    fit = fit_points(LinearFit(memory=8, ridge=1e-9), [(1, 1.0), (2, 2.0)] * 20)
    fit = fit_points(fit, [(1, 5.0), (2, 6.0)] * 40)
    assert fit.predict(1) == pytest.approx(5.0, rel=1e-3)
    assert fit.predict(2) == pytest.approx(6.0, rel=1e-3)


def test_cost_model_splits_draft_and_verify():
    model = CostModel()
    model = model.updated(round_stats(16, draft_s=0.050, verify_s=0.010, other_s=0.002), teach_draft=False)
    assert model.draft.empty  # the first draft also encoded the prompt: kept out
    assert model.verify.predict(17) == pytest.approx(0.012)  # bookkeeping counts as verifying
    model = model.updated(round_stats(16, draft_s=0.005, verify_s=0.010, other_s=0.002))
    model = model.updated(round_stats(0, draft_s=0.0, verify_s=0.006, other_s=0.001))  # plain round
    assert model.draft.predict(1) == pytest.approx(0.005)
    assert model.round_s(0, 0) == pytest.approx(0.007, rel=0.05)  # plain: scores 1 token, no draft
    assert model.round_s(16, 2) == pytest.approx(0.010 + 0.012, rel=0.05)


@given(st.lists(st.tuples(st.integers(0, 300), st.floats(0, 10)), max_size=40), st.integers(0, 300))
def test_prediction_is_finite_and_positive(points, x):
    # x counts denoising steps or tokens scored
    fit = fit_points(LinearFit(elasticity=1.0), points)
    y = fit.predict(x)
    assert math.isfinite(y) and y >= MIN_SECONDS
