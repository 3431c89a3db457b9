"""The cost model: straight-line and knot fits from measured seconds, by hand-written points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdiff.controllers.cost import CostModel
from specdiff.controllers.fits import MIN_SECONDS, KnotFit, LinearFit, PlaneFit, isotonic
from specdiff.metrics import RoundStats
from specdiff.protocols import Proposer

LONG_MEMORY = 1e9  # forgets nothing: the fit is plain least squares


def fit_points(fit: LinearFit, points: list[tuple[float, float]]) -> LinearFit:
    for x, y in points:
        fit = fit.updated(x, y)
    return fit


def round_stats(proposed: int, draft_s: float, verify_s: float, other_s: float = 0.0, steps_used: int = 1):
    steps = steps_used if proposed else 0
    proposer = Proposer.DIFFUSION if proposed else Proposer.PLAIN
    return RoundStats(0, proposed, steps, steps, proposed, 0, 1, draft_s, verify_s, other_s, proposer=proposer)


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
    assert model.draft.predict(1, 16) == pytest.approx(0.005)
    assert model.round_s(Proposer.PLAIN, 0) == pytest.approx(0.007, rel=0.05)  # plain: scores 1 token, no draft
    assert model.round_s(Proposer.DIFFUSION, 16, 2) == pytest.approx(0.010 + 0.012, rel=0.05)


@given(st.lists(st.tuples(st.integers(0, 300), st.floats(0, 10)), max_size=40), st.integers(0, 300))
def test_prediction_is_finite_and_positive(points, x):
    # x counts denoising steps or tokens scored
    fit = fit_points(LinearFit(elasticity=1.0), points)
    y = fit.predict(x)
    assert math.isfinite(y) and y >= MIN_SECONDS


def flat_then_steep(x: float) -> float:
    """A CPU's verify seconds: one forward's cost up to 17 tokens scored, then 0.5 ms a token more."""
    return 0.020 + 0.0005 * max(x - 17.0, 0.0)


def test_knot_fit_learns_a_curve_a_line_cannot():
    xs = [2, 5, 9, 17, 33, 65] * 30
    knot = fit_points(KnotFit(memory=LONG_MEMORY), [(x, flat_then_steep(x)) for x in xs])
    line = fit_points(LinearFit(memory=LONG_MEMORY), [(x, flat_then_steep(x)) for x in xs])
    for x in (2, 5, 9, 17, 33, 65):
        assert knot.predict(x) == pytest.approx(flat_then_steep(x), rel=0.01)
    # The line has 17 tokens cost a tenth more than 5 where they cost the same: a saving that a cut
    # made on it would chase, giving away acceptance for nothing.
    assert line.predict(17) - line.predict(5) > 0.1 * flat_then_steep(5)
    assert knot.predict(17) - knot.predict(5) < 0.01 * flat_then_steep(5)
    assert knot.predict(25) == pytest.approx(flat_then_steep(25), rel=0.01)  # between knots: interpolated


def test_knot_fit_fills_unvisited_knots_from_their_visited_neighbours():
    fit = fit_points(KnotFit(memory=LONG_MEMORY), [(5, 0.020), (17, 0.022)] * 20)
    assert 0.020 <= fit.predict(9) <= 0.022  # knot 9 never measured: between its neighbours
    assert fit.predict(13) == pytest.approx(0.0215, rel=0.02)  # interpolated, not the line's value
    assert fit.predict(1) < fit.predict(5)  # before the first measured knot: the line's slope
    assert fit.predict(65) >= fit.predict(17)  # past the last: the line's slope, never falling


def test_knot_fit_forgets_old_points():
    fit = fit_points(KnotFit(memory=8), [(9, 0.010)] * 40)
    fit = fit_points(fit, [(9, 0.030)] * 80)
    assert fit.predict(9) == pytest.approx(0.030, rel=1e-2)


def test_isotonic_pools_only_what_falls():
    already = np.array([1.0, 2.0, 2.0, 5.0])
    assert np.array_equal(isotonic(already, np.ones(4)), already)
    # 3 then 1 falls: pooled to their weighted mean (3 * 1 + 1 * 3) / 4 = 1.5, the rest untouched
    assert np.allclose(isotonic(np.array([0.0, 3.0, 1.0, 4.0]), np.array([1.0, 1.0, 3.0, 1.0])),
                       [0.0, 1.5, 1.5, 4.0])


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=12), st.data())
def test_isotonic_is_non_decreasing_and_keeps_the_weighted_sum(values, data):
    weights = np.array(data.draw(st.lists(st.floats(0.1, 5), min_size=len(values), max_size=len(values))))
    fitted = isotonic(np.array(values), weights)
    assert np.all(np.diff(fitted) >= -1e-9)
    assert float(weights @ fitted) == pytest.approx(float(weights @ np.array(values)), abs=1e-6)


@given(st.lists(st.tuples(st.integers(1, 600), st.floats(0, 10)), max_size=40))
def test_knot_fit_predictions_never_fall_as_blocks_grow(points):
    fit = fit_points(KnotFit(), points)
    predictions = fit.predict_many(np.arange(1, 700))
    assert np.all(np.isfinite(predictions)) and np.all(predictions >= MIN_SECONDS)
    assert np.all(np.diff(predictions) >= -1e-12)


def fit_plane(fit: PlaneFit, points: list[tuple[float, float, float]]) -> PlaneFit:
    for x, w, y in points:
        fit = fit.updated(x, w, y)
    return fit


def test_plane_fit_recovers_steps_and_block_costs():
    # 5 ms a denoising step, 0.04 ms a drafted token (the LM head), 2 ms fixed
    points = [(s, w, 0.002 + 0.005 * s + 0.00004 * w) for s in (1, 2, 4) for w in (4, 16, 64)] * 3
    fit = fit_plane(PlaneFit(memory=LONG_MEMORY, ridge=1e-9), points)
    intercept, per_step, per_token = fit.coefficients()
    assert (intercept, per_step, per_token) == pytest.approx((0.002, 0.005, 0.00004), rel=1e-4)
    assert fit.predict(8, 32) == pytest.approx(0.002 + 0.040 + 0.00128, rel=1e-4)


def test_plane_fit_priors_without_spread():
    # One setting seen: cost in proportion to steps, the block costing nothing extra.
    fit = fit_plane(PlaneFit(), [(1, 16, 0.010)] * 5)
    assert fit.predict(2, 16) == pytest.approx(0.020)
    assert fit.predict(1, 64) == pytest.approx(0.010)


def test_plane_fit_slopes_never_negative():
    fit = fit_plane(PlaneFit(memory=LONG_MEMORY), [(1, 4, 0.02), (1, 64, 0.01), (2, 4, 0.03), (2, 64, 0.02)])
    _, per_step, per_token = fit.coefficients()
    assert per_token == 0.0 and per_step > 0.0
    assert PlaneFit().predict(3, 16) == MIN_SECONDS  # no data yet


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 300), st.floats(0, 10)), max_size=40),
       st.integers(0, 20), st.integers(0, 300))
def test_plane_prediction_is_finite_and_positive(points, x, w):
    y = fit_plane(PlaneFit(), points).predict(x, w)
    assert math.isfinite(y) and y >= MIN_SECONDS


def test_lookup_rounds_teach_their_own_fit_and_not_the_drafts():
    """An n-gram round ran no model: its seconds go to the lookup's fit, never the steps plane,
    whose intercept would otherwise sink toward zero and make every model round look cheap."""
    model = CostModel()
    for block in (4, 16, 4, 16):
        model = model.updated(RoundStats(0, block, 1, 1, block, 0, 1, 0.010 + 0.0001 * block, 0.02, 0.0))
        model = model.updated(RoundStats(0, block, 0, 0, block, 0, 1, 0.0003, 0.02, 0.0, proposer=Proposer.NGRAM))
    # a lookup without a guess
    model = model.updated(RoundStats(0, 8, 0, 0, 0, 0, 1, 0.0003, 0.018, 0.0, proposer=Proposer.NGRAM))
    assert model.lookup.predict(8) == pytest.approx(0.0003, rel=1e-6)
    assert model.draft.predict(1, 8) == pytest.approx(0.0108, rel=0.05)
    many = model.draft_many(np.array([[0], [1]]), np.array([8, 16]), np.array([[True], [False]]))  # [2, 2]
    assert many[0].tolist() == pytest.approx([0.0003, 0.0003], rel=1e-6)
    assert many[1].tolist() == pytest.approx([model.draft.predict(1, 8), model.draft.predict(1, 16)])
    assert model.round_s(Proposer.NGRAM, 8) == pytest.approx(0.0003 + model.verify.predict(9))
    assert model.round_s(Proposer.DIFFUSION, 8, 1) == pytest.approx(model.draft.predict(1, 8) + model.verify.predict(9))
