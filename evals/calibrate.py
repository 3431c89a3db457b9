"""Fitting a hardware profile's efficiency and overheads to measured (or published) seconds.

An ``Observation`` is a measured duration and the forwards that filled it (model, new tokens,
head positions, context). ``fit_hardware`` searches the bandwidth and compute efficiencies on a
grid and, at each grid point, solves the fixed overheads (per forward, and per layer when asked)
by least squares, all in relative error: each observation counts alike, whatever its size.

Two sources of observations:

- published plain-decoding figures (``anchor_observation``): one verifier forward per token, or
  a drafter's canvas per ``canvas_length`` tokens; only these calibrate the GPU profiles;
- a sweep on this machine (``sweep_observations``): per configuration, the drafting, verifying
  and bookkeeping seconds per round, and the verifier alone's seconds per generation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from specdiff.evals.estimate import Forward, draft_forwards
from specdiff.evals.roofline import (
    DTYPE_BYTES,
    Combine,
    HardwareProfile,
    ModelProfile,
    forward_bytes,
    forward_flops,
)

from specdiff.errors import SpecdiffError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Observation:
    """``seconds`` measured over ``forwards`` of ``model`` at ``dtype``."""

    model: ModelProfile
    forwards: tuple[Forward, ...]
    seconds: float
    dtype: str
    label: str = ""


@dataclass(frozen=True)
class Fit:
    """The fitted profile and its relative error on each observation (predicted / measured - 1)."""

    hardware: HardwareProfile
    errors: tuple[float, ...]

    @property
    def worst(self) -> float:
        return max(abs(e) for e in self.errors) if self.errors else 0.0


def _raw_times(hardware: HardwareProfile, obs: list[Observation]) -> tuple[np.ndarray, ...]:
    """Per forward: its observation, count, layers, memory seconds and compute seconds at efficiency 1."""
    index, count, layers, memory, compute = [], [], [], [], []
    for i, o in enumerate(obs):
        DTYPE_BYTES[o.dtype]  # noqa: B018 - a KeyError here names an unknown dtype early
        for f in o.forwards:
            index.append(i)
            count.append(f.count)
            layers.append(o.model.num_layers)
            nbytes = forward_bytes(o.model, f.tokens, f.head_positions, f.context, o.dtype, f.sampled_positions)
            memory.append(nbytes / (hardware.memory_bandwidth_gbs * 1e9))
            compute.append(forward_flops(o.model, f.tokens, f.head_positions, f.context) / hardware.peak_flops(o.dtype))
    return tuple(np.asarray(v, dtype=float) for v in (index, count, layers, memory, compute))


def fit_hardware(hardware: HardwareProfile, observations: list[Observation], *, fit_flops: bool = True,
                 per_layer: bool = False, combine: Combine | None = None) -> Fit:
    """The efficiencies and overheads that best predict ``observations`` (relative least squares).

    With ``fit_flops=False`` the profile's ``flops_efficiency`` is kept (published batch-1
    figures are memory-bound and cannot measure it). ``combine`` defaults to the profile's.
    """
    if not observations:
        raise SpecdiffError("nothing to fit: no observations")
    combine = combine or hardware.combine
    index, count, layers, memory, compute = _raw_times(hardware, observations)
    measured = np.asarray([o.seconds for o in observations])
    n = len(observations)
    forwards = np.bincount(index.astype(int), weights=count, minlength=n)
    layer_forwards = np.bincount(index.astype(int), weights=count * layers, minlength=n)
    columns = [forwards / measured] + ([layer_forwards / measured] if per_layer else [])
    design = np.stack(columns, axis=1) * 1e-3  # overheads in ms
    bw_grid = np.geomspace(0.02, 1.0, 120)
    flops_grid = np.geomspace(0.005, 1.0, 120) if fit_flops else np.asarray([hardware.flops_efficiency])
    best = None
    for eff_flops in flops_grid:
        for eff_bw in bw_grid:
            mem, comp = memory / eff_bw, compute / eff_flops
            per_forward = np.maximum(mem, comp) if combine is Combine.MAX else mem + comp
            roofline = np.bincount(index.astype(int), weights=count * per_forward, minlength=n)
            target = 1.0 - roofline / measured
            overheads = _nonnegative_lstsq(design, target)
            loss = float(np.sum((design @ overheads - target) ** 2))
            if best is None or loss < best[0]:
                best = (loss, eff_bw, eff_flops, overheads)
    _, eff_bw, eff_flops, overheads = best
    fitted = replace(hardware, bandwidth_efficiency=round(float(eff_bw), 4),
                     flops_efficiency=round(float(eff_flops), 4),
                     overhead_ms=round(float(overheads[0]), 4),
                     overhead_per_layer_ms=round(float(overheads[1]), 4) if per_layer else 0.0, combine=combine)
    return Fit(fitted, tuple(predict(fitted, o) / o.seconds - 1.0 for o in observations))


def _nonnegative_lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0 (an overhead is never negative); 1 or 2 unknowns."""
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    if (solution >= 0).all():
        return solution
    best = np.zeros(design.shape[1])
    best_loss = float(np.sum(target**2))
    for j in range(design.shape[1]):
        column = design[:, j]
        value = max(float(column @ target) / float(column @ column), 0.0) if column @ column > 0 else 0.0
        loss = float(np.sum((column * value - target) ** 2))
        if loss < best_loss:
            best, best_loss = np.eye(design.shape[1])[j] * value, loss
    return best


def predict(hardware: HardwareProfile, observation: Observation) -> float:
    """Predicted seconds for an observation's forwards."""
    from specdiff.evals.estimate import seconds_of

    return seconds_of(hardware, observation.model, list(observation.forwards), observation.dtype)


# -- published plain-decoding figures -------------------------------------------------------------------


def plain_decoding_observation(verifier: ModelProfile, tokens_per_s: float, context: float, dtype: str,
                               label: str = "") -> Observation:
    """An autoregressive model decoding at ``tokens_per_s``: one 1-token forward per token."""
    return Observation(verifier, (Forward(1, 1, 1, context),), 1.0 / tokens_per_s, dtype, label)


def canvas_observation(drafter: ModelProfile, tokens_per_s: float, steps: float, context: float, dtype: str,
                       label: str = "") -> Observation:
    """A diffusion model generating alone: ``steps`` forwards a canvas, the head over the whole
    canvas every step (all of it is output), the previous canvas encoded in the first step."""
    canvas = drafter.canvas_length
    forwards = tuple(draft_forwards(drafter, canvas, steps, canvas, context))
    return Observation(drafter, forwards, canvas / tokens_per_s, dtype, label)


def implied_steps(hardware: HardwareProfile, drafter: ModelProfile, tokens_per_s: float, context: float,
                  dtype: str) -> float:
    """Denoising steps per canvas at which ``drafter`` on ``hardware`` generates at ``tokens_per_s``."""
    from specdiff.evals.estimate import seconds_of

    def seconds(steps: float) -> float:
        return seconds_of(hardware, drafter, draft_forwards(drafter, drafter.canvas_length, steps,
                                                            drafter.canvas_length, context), dtype)

    target = drafter.canvas_length / tokens_per_s
    low, high = 1.0, 1024.0
    if seconds(low) > target:
        raise SpecdiffError(f"{drafter.name} cannot reach {tokens_per_s} tokens/s on {hardware.name} even at 1 step")
    for _ in range(60):  # bisection: seconds(steps) is increasing
        mid = (low + high) / 2
        low, high = (mid, high) if seconds(mid) < target else (low, mid)
    return (low + high) / 2


# -- a sweep on this machine ----------------------------------------------------------------------------------


def sweep_observations(results: pd.DataFrame, drafter: ModelProfile, verifier: ModelProfile,
                       dtype: str) -> tuple[list[Observation], float]:
    """Per configuration, observations of its drafting and verifying seconds per round, and per
    verifier-alone row its whole generation; with the mean bookkeeping seconds per round."""
    obs: list[Observation] = []
    spec = results[results["method"] == "specdiff"]
    for (block, steps), group in spec.groupby(["block_size", "denoising_steps"], sort=True):
        rounds = float(group["rounds"].sum())
        drafts = float(sum(j[0] for j in group["position_judged"] if len(j)))
        context = float((group["prompt_tokens"] + group["new_tokens"] / 2).mean())
        tokens = float(group["new_tokens"].sum()) / rounds
        share = drafts / rounds
        verify = (Forward(share, block + 1, block + 1, context), Forward(1 - share, 1, 1, context))
        obs.append(Observation(verifier, verify, float(group["verify_s"].sum()) / rounds, dtype,
                               f"verify {block}x{steps}"))
        if steps > 0 and drafts > 0:
            used = float(np.average(group["denoising_steps_used"], weights=group["rounds"]))
            forwards = tuple(draft_forwards(drafter, int(block), used, tokens, context))
            obs.append(Observation(drafter, forwards, float(group["draft_s"].sum()) / drafts, dtype,
                                   f"draft {block}x{steps}"))
    for row in results[results["method"] == "ar"].itertuples(index=False):
        context = row.prompt_tokens + row.new_tokens / 2
        forwards = (Forward(1, row.prompt_tokens, 1, 0), Forward(row.new_tokens, 1, 1, context))
        obs.append(Observation(verifier, forwards, float(row.total_s), dtype, f"ar {row.prompt_id}"))
    other = float(spec["other_s"].sum() / spec["rounds"].sum()) if len(spec) else 0.0
    return obs, other
