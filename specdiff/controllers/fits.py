"""Online fits of seconds, one point at a time, forgetting old points exponentially: a line
(``LinearFit``), a non-decreasing piecewise-linear curve through fixed knots (``KnotFit``), and a
plane (``PlaneFit``). Pure: a fit is a frozen dataclass, ``updated`` returns a new one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

# Predictions never fall below this (seconds): a rate over a zero cost would be infinite.
MIN_SECONDS = 1e-6


@dataclass(frozen=True)
class LinearFit:
    """``y ~ intercept + slope * x`` by exponentially weighted least squares, one point at a time.

    The state is the decayed sufficient statistics (total weight and weighted sums of x, y, x*x,
    x*y). Until x has varied, the slope cannot be measured, so it shrinks toward a prior slope of
    ``elasticity * mean(y) / mean(x)``: elasticity 1 assumes y grows in proportion to x (drafting
    seconds per denoising step), 0 that y stays flat (verifying K tokens costs one forward on a
    parallel device). ``ridge`` is how much x-spread (weight * x^2) the data needs to outweigh it.

    Attributes:
        memory: about how many recent points the fit remembers (each update keeps ``1 - 1/memory``).
        elasticity, ridge: the slope prior, as above.
    """

    memory: float = 32.0
    elasticity: float = 0.0
    ridge: float = 0.1
    weight: float = 0.0
    sum_x: float = 0.0
    sum_y: float = 0.0
    sum_xx: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        assert self.memory >= 1.0, "memory must be >= 1 point"
        assert self.ridge > 0.0, "ridge must be > 0, or a fit without x-spread has no slope"

    @property
    def empty(self) -> bool:
        return self.weight == 0.0

    def updated(self, x: float, y: float) -> LinearFit:
        """The fit after one more point."""
        keep = 1.0 - 1.0 / self.memory
        return replace(
            self,
            weight=keep * self.weight + 1.0,
            sum_x=keep * self.sum_x + x,
            sum_y=keep * self.sum_y + y,
            sum_xx=keep * self.sum_xx + x * x,
            sum_xy=keep * self.sum_xy + x * y,
        )

    def coefficients(self) -> tuple[float, float]:
        """``(intercept, slope)``; ``(0, 0)`` before the first point."""
        if self.empty:
            return 0.0, 0.0
        mean_x, mean_y = self.sum_x / self.weight, self.sum_y / self.weight
        spread_xx = max(self.sum_xx - self.weight * mean_x * mean_x, 0.0)  # rounding can dip below 0
        spread_xy = self.sum_xy - self.weight * mean_x * mean_y
        prior_slope = self.elasticity * mean_y / mean_x if mean_x > 0 else 0.0
        # Costs never fall as x grows; a negative slope is timing noise.
        slope = max((spread_xy + self.ridge * prior_slope) / (spread_xx + self.ridge), 0.0)
        return mean_y - slope * mean_x, slope

    def predict(self, x: float) -> float:
        intercept, slope = self.coefficients()
        return max(intercept + slope * x, MIN_SECONDS)

    def predict_many(self, xs: np.ndarray) -> np.ndarray:
        """``predict`` over an array of any shape."""
        intercept, slope = self.coefficients()
        return np.maximum(intercept + slope * np.asarray(xs, dtype=float), MIN_SECONDS)


# Tokens scored at which ``KnotFit`` places its knots: every count up to 5, then powers of two
# and 1.5x them, plus one (a block of K scores K + 1), far past any canvas this project meets.
VERIFY_KNOTS = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0, 13.0, 17.0, 25.0, 33.0, 49.0, 65.0, 97.0, 129.0,
                193.0, 257.0, 385.0, 513.0)


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted least-squares non-decreasing fit to ``values`` ``[N]`` (pool adjacent violators).

    Costs never fall as a block grows; where noise says they do, the neighbours are averaged.
    """
    blocks: list[list[float]] = []  # [mean, weight, count] of pooled runs
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, weight, count = blocks.pop()
            last = blocks[-1]
            total = last[1] + weight
            last[0] = (last[0] * last[1] + mean * weight) / total if total > 0 else (last[0] + mean) / 2
            last[1], last[2] = total, last[2] + count
    return np.repeat([mean for mean, _, _ in blocks], [count for _, _, count in blocks])


@dataclass(frozen=True)
class KnotFit:
    """``y ~`` a non-decreasing piecewise-linear function of x with knots at ``knots``, fitted online.

    Each point is shared between the two knots around its x by linear-interpolation weights, so a
    knot's value is its (decayed) weighted mean of y; a knot with little weight shrinks toward a
    straight-line fit of every point (``line``, which also carries the curve past the last knot),
    and the knot values are made non-decreasing by ``isotonic``. Predictions interpolate between
    knots.

    Attributes:
        knots: ascending x positions.
        line: the straight-line fit of all points (the fall-back shape).
        memory: about how many recent points each knot remembers.
        shrink: how many points' weight the line's prediction has at each knot.
        weight, sum_y: per knot, the decayed interpolation weights and weighted sums of y.
        values: per knot, the curve's value (derived from the rest on the first prediction after
            an update and kept, so that the many predictions between updates cost an
            interpolation each, and updates with no prediction between them cost nothing more).
    """

    knots: tuple[float, ...] = VERIFY_KNOTS
    line: LinearFit = field(default_factory=lambda: LinearFit(elasticity=0.0))
    memory: float = 64.0
    shrink: float = 1.0
    weight: tuple[float, ...] = ()
    sum_y: tuple[float, ...] = ()
    values: tuple[float, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        assert len(self.knots) >= 2 and list(self.knots) == sorted(set(self.knots)), "knots must ascend"
        assert self.memory >= 1.0 and self.shrink > 0.0, "memory must be >= 1 and shrink > 0"
        if not self.weight:  # a fresh fit: no weight anywhere
            object.__setattr__(self, "weight", (0.0,) * len(self.knots))
            object.__setattr__(self, "sum_y", (0.0,) * len(self.knots))

    @property
    def empty(self) -> bool:
        return self.line.empty

    def updated(self, x: float, y: float) -> KnotFit:
        """The fit after one more point."""
        keep = 1.0 - 1.0 / self.memory
        share = _interpolation_weights(np.asarray(self.knots), float(x))  # [N]
        weight = keep * np.asarray(self.weight) + share
        sum_y = keep * np.asarray(self.sum_y) + share * y
        return replace(self, line=self.line.updated(x, y), weight=tuple(weight.tolist()), sum_y=tuple(sum_y.tolist()),
                       values=())

    def _knot_values(self) -> np.ndarray:
        """``[N]``: the curve's value at each knot."""
        knots, weight, sum_y = np.asarray(self.knots), np.asarray(self.weight), np.asarray(self.sum_y)
        return isotonic((sum_y + self.shrink * self._prior(knots, weight, sum_y)) / (weight + self.shrink),
                        weight + self.shrink)

    def _prior(self, knots: np.ndarray, weight: np.ndarray, sum_y: np.ndarray) -> np.ndarray:
        """``[N]``: what a knot without points is assumed to cost: interpolated between the knots
        around it that have points, and along the line's slope outside them.

        Not the line itself: where the curve is flat and then steep (a CPU scoring 3 or 17 tokens in
        the same time), the line has the flat stretch rising, and a policy that believed it would
        never propose the blocks that would show it wrong.
        """
        seen = weight > 1e-3 * weight.max()  # all False before the first point
        if not seen.any():
            return self.line.predict_many(knots)
        anchors, means = knots[seen], sum_y[seen] / weight[seen]
        slope = self.line.coefficients()[1]
        inside = np.interp(knots, anchors, means)
        before = means[0] - slope * (anchors[0] - knots)
        after = means[-1] + slope * (knots - anchors[-1])
        return np.where(knots < anchors[0], before, np.where(knots > anchors[-1], after, inside))

    def predict_many(self, xs: np.ndarray) -> np.ndarray:
        """The curve over an array of any shape."""
        if self.empty:
            return np.full(np.shape(xs), MIN_SECONDS)
        if not self.values:
            object.__setattr__(self, "values", tuple(self._knot_values().tolist()))
        knots, values = np.asarray(self.knots), np.asarray(self.values)
        xs = np.asarray(xs, dtype=float)
        beyond = values[-1] + self.line.coefficients()[1] * np.maximum(xs - knots[-1], 0.0)
        return np.maximum(np.where(xs > knots[-1], beyond, np.interp(xs, knots, values)), MIN_SECONDS)

    def predict(self, x: float) -> float:
        return float(self.predict_many(np.asarray(x)))


def _interpolation_weights(knots: np.ndarray, x: float) -> np.ndarray:
    """``[N]``: weights that sum to 1 on the two knots around ``x`` (all on the end knot outside)."""
    share = np.zeros(len(knots))
    i = int(np.searchsorted(knots, x, side="right"))
    if i == 0:
        share[0] = 1.0
    elif i == len(knots):
        share[-1] = 1.0
    else:
        left, right = knots[i - 1], knots[i]
        share[i - 1], share[i] = (right - x) / (right - left), (x - left) / (right - left)
    return share


@dataclass(frozen=True)
class PlaneFit:
    """``y ~ intercept + slope_x * x + slope_w * w`` by exponentially weighted ridge least squares.

    For drafting seconds: x the denoising steps used, w the block drafted. The state is the decayed
    sufficient statistics. Each slope shrinks toward a prior (``elasticity`` for x, as in
    ``LinearFit``: 1 assumes y in proportion to x; 0 for w: the block costs nothing extra) until
    the data's spread (weight * variance, ``ridge`` of it) outweighs it; slopes never go negative.

    Attributes:
        memory, elasticity, ridge: as in ``LinearFit``.
        weight: the decayed count of points.
        sums: decayed sums of x, w, y, x*x, x*w, w*w, x*y, w*y.
    """

    memory: float = 32.0
    elasticity: float = 1.0
    ridge: float = 0.1
    weight: float = 0.0
    sums: tuple[float, ...] = (0.0,) * 8

    def __post_init__(self) -> None:
        assert self.memory >= 1.0, "memory must be >= 1 point"
        assert self.ridge > 0.0, "ridge must be > 0, or a fit without spread has no slope"

    @property
    def empty(self) -> bool:
        return self.weight == 0.0

    def updated(self, x: float, w: float, y: float) -> PlaneFit:
        """The fit after one more point."""
        keep = 1.0 - 1.0 / self.memory
        point = (x, w, y, x * x, x * w, w * w, x * y, w * y)
        sums = tuple(keep * total + value for total, value in zip(self.sums, point, strict=True))
        return replace(self, weight=keep * self.weight + 1.0, sums=sums)

    def coefficients(self) -> tuple[float, float, float]:
        """``(intercept, slope_x, slope_w)``; all 0 before the first point."""
        if self.empty:
            return 0.0, 0.0, 0.0
        n = self.weight
        sx, sw, sy, sxx, sxw, sww, sxy, swy = self.sums
        mx, mw, my = sx / n, sw / n, sy / n
        # Centred spreads: [[xx, xw], [xw, ww]] slopes = [xy, wy], plus the ridge toward the priors.
        xx, xw, ww = max(sxx - n * mx * mx, 0.0), sxw - n * mx * mw, max(sww - n * mw * mw, 0.0)
        xy, wy = sxy - n * mx * my, swy - n * mw * my
        prior_x = self.elasticity * my / mx if mx > 0 else 0.0
        a, b, d = xx + self.ridge, xw, ww + self.ridge
        rhs_x, rhs_w = xy + self.ridge * prior_x, wy  # the w prior is 0
        det = a * d - b * b  # > 0: the ridge makes the matrix positive definite
        slope_x, slope_w = (d * rhs_x - b * rhs_w) / det, (a * rhs_w - b * rhs_x) / det
        # Costs never fall as either grows; a negative slope is timing noise (refit the other alone).
        if slope_w < 0:
            slope_w, slope_x = 0.0, rhs_x / a
        if slope_x < 0:
            slope_x, slope_w = 0.0, max(rhs_w / d, 0.0)
        return my - slope_x * mx - slope_w * mw, slope_x, slope_w

    def predict_many(self, xs: np.ndarray, ws: np.ndarray) -> np.ndarray:
        """Predictions over broadcastable arrays of x and w."""
        intercept, slope_x, slope_w = self.coefficients()
        return np.maximum(intercept + slope_x * np.asarray(xs, dtype=float) + slope_w * np.asarray(ws, dtype=float),
                          MIN_SECONDS)

    def predict(self, x: float, w: float) -> float:
        return float(self.predict_many(np.asarray(x), np.asarray(w)))
