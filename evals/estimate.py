"""Will it pay on my GPU? Tokens/s and speedup of each block size x denoising steps, predicted.

The inputs are an acceptance table and a roofline of each forward (``specdiff.evals.roofline``):

- acceptance: per configuration, the expected tokens a round commits. From a sweep it is built
  per draft position: for block K, ``1 + draft_share x sum_{i<K} reach_rate_i``, where
  ``reach_rate_i`` is the share of drafting rounds whose accepted run reaches position i and
  ``draft_share`` the share of rounds that drafted at all (below 1 only for the 0-step context
  lookup, which has no guess on some rounds). Block sizes the sweep did not run are read off the
  largest block it ran at the same steps (a block is a prefix of the canvas, so positions before
  K do not depend on K). Published figures give a mean acceptance length instead
  (``acceptance_from_lengths``).
- a round: the drafter's forwards (``DraftMode``: S steps over the canvas, S over the block, or
  one per draft token), the verifier's forward over K + 1 tokens, and ``round_overhead_ms``.
  A DiffusionGemma step reads the canvas (all of its experts, at 256 tokens) and runs the LM head
  over the whole canvas except on the last step, which reads only the block (as
  ``drafts/diffusion_gemma.py`` does); the first step also encodes the tokens committed last round.
- plain decoding: one verifier forward per token; speedup = predicted tokens/s over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from specdiff.evals.roofline import DraftMode, HardwareProfile, ModelProfile, forward_seconds

from specdiff.errors import SpecdiffError

if TYPE_CHECKING:
    import pandas as pd

ACCEPTANCE_COLUMNS = ["block_size", "denoising_steps", "steps_used", "draft_share", "tokens_per_round", "derived"]
ESTIMATE_COLUMNS = ["block_size", "denoising_steps", "tokens_per_round", "draft_s", "verify_s", "other_s",
                    "round_s", "tokens_per_s", "ar_tokens_per_s", "speedup"]


@dataclass(frozen=True)
class Workload:
    """Where in a generation the forwards run: the context they attend over, and optionally a
    prompt to read first and a generation length (both 0: steady-state decoding speed)."""

    context: int = 2048
    prompt_tokens: int = 0
    new_tokens: int = 0


# -- acceptance ------------------------------------------------------------------------------------


def acceptance_from_results(results: pd.DataFrame, block_sizes: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Expected tokens per round per (block size, steps) from a sweep table (``ACCEPTANCE_COLUMNS``).

    ``block_sizes`` (default: the sweep's own and every power of two up to its largest) may only
    hold sizes up to the largest block the sweep ran at each step count. ``steps_used`` is the mean
    denoising steps a drafting round ran (the stopping rule ends some early). ``derived`` marks
    rows read off a larger block's per-position acceptance rather than measured.
    """
    import pandas as pd

    spec = results[results["method"] == "specdiff"]
    if spec.empty:
        raise SpecdiffError("the sweep table has no speculative rows (method 'specdiff') to read acceptance from")
    rows = []
    for steps, group in spec.groupby("denoising_steps", sort=True):
        per_block = {int(b): _position_reach(g) for b, g in group.groupby("block_size")}
        largest = max(per_block)
        powers = {2**i for i in range(largest.bit_length())}
        wanted = block_sizes or tuple(sorted(set(per_block) | powers))
        for block in wanted:
            if block > largest:
                raise SpecdiffError(f"block size {block} is larger than any the sweep ran at {steps} steps "
                                    f"(largest {largest}); its acceptance is unknown")
            measured = block in per_block
            reach, share, steps_used = per_block[block if measured else largest]
            rows.append(dict(block_size=block, denoising_steps=int(steps), steps_used=steps_used, draft_share=share,
                             tokens_per_round=expected_tokens_per_round(reach, block, share), derived=not measured))
    return pd.DataFrame(rows, columns=ACCEPTANCE_COLUMNS)


def _position_reach(group: pd.DataFrame) -> tuple[np.ndarray, float, float]:
    """Pooled over a configuration's rows: reach rate per position, the share of rounds that
    drafted, and the mean denoising steps of a drafting round."""
    width = max((len(v) for v in group["position_judged"]), default=0)
    accepted = np.zeros(width)
    for a in group["position_accepted"]:
        accepted[: len(a)] += np.asarray(a, dtype=float)
    drafts = float(sum(j[0] for j in group["position_judged"] if len(j)))
    rounds = float(group["rounds"].sum())
    reach = accepted / drafts if drafts else np.zeros(width)
    steps_used = float(np.average(group["denoising_steps_used"], weights=group["rounds"])) if rounds else 0.0
    return reach, (drafts / rounds if rounds else 0.0), steps_used


def expected_tokens_per_round(reach_rates: np.ndarray, block_size: int, draft_share: float = 1.0) -> float:
    """1 (the verifier's own token) + the expected accepted draft tokens of a block of ``block_size``."""
    return 1.0 + draft_share * float(np.sum(reach_rates[:block_size]))


def acceptance_from_lengths(entries: list[tuple[int, int, float]]) -> pd.DataFrame:
    """``ACCEPTANCE_COLUMNS`` from published (block size, steps, mean acceptance length) triples."""
    import pandas as pd

    for block, _steps, length in entries:
        if not 1.0 <= length <= block + 1:
            raise SpecdiffError(f"a mean acceptance length of {length} is outside 1..{block + 1} for block {block}")
    rows = [dict(block_size=b, denoising_steps=s, steps_used=float(s), draft_share=1.0, tokens_per_round=float(t),
                 derived=False) for b, s, t in entries]
    return pd.DataFrame(rows, columns=ACCEPTANCE_COLUMNS)


# -- the cost of a round -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """``count`` forwards of one model over ``tokens`` new tokens, the head over ``head_positions``."""

    count: float
    tokens: float
    head_positions: float
    context: float
    sampled_positions: float = 0.0  # positions the denoising sampler draws and renoises after it


def draft_forwards(drafter: ModelProfile, block_size: int, steps: float, committed: float,
                   context: float) -> list[Forward]:
    """The forwards that draft a block of ``block_size`` with ``steps`` denoising steps (a mean may be fractional)."""
    if steps <= 0 or block_size <= 0:
        return []  # the context lookup: no model call
    mode = drafter.draft_mode
    if mode is DraftMode.CANVAS:
        canvas = drafter.canvas_length
        # Every step but the last samples and renoises the whole canvas for the next.
        first = Forward(min(steps, 1.0), canvas + committed, canvas if steps > 1 else block_size, context,
                        canvas if steps > 1 else 0)
        if steps <= 1:
            return [first]
        middle = Forward(max(steps - 2.0, 0.0), canvas, canvas, context + canvas, canvas)
        last = Forward(min(steps - 1.0, 1.0), canvas, block_size, context + canvas)
        return [first, middle, last]
    if mode is DraftMode.BLOCK:
        return [Forward(steps, block_size, block_size, context)]
    if mode is DraftMode.AUTOREGRESSIVE:
        return [Forward(block_size, 1, 1, context)]
    raise SpecdiffError(f"{drafter.name} is a verifier-only profile (draft_mode 'none'); pick a drafter profile")


def seconds_of(hardware: HardwareProfile, model: ModelProfile, forwards: list[Forward], dtype: str) -> float:
    return sum(f.count * forward_seconds(hardware, model, f.tokens, f.head_positions, f.context, dtype,
                                         f.sampled_positions) for f in forwards if f.count > 0)


def draft_seconds(hardware: HardwareProfile, drafter: ModelProfile, block_size: int, steps: float,
                  committed: float, context: float, dtype: str) -> float:
    """Seconds to draft a block of ``block_size`` with ``steps`` denoising steps."""
    return seconds_of(hardware, drafter, draft_forwards(drafter, block_size, steps, committed, context), dtype)


def verify_seconds(hardware: HardwareProfile, verifier: ModelProfile, tokens: int, context: float,
                   dtype: str) -> float:
    """Seconds for the verifier to score ``tokens`` (K drafts + the pending token) in one forward."""
    return forward_seconds(hardware, verifier, tokens, tokens, context, dtype)


def plain_token_seconds(hardware: HardwareProfile, verifier: ModelProfile, context: float, dtype: str) -> float:
    return verify_seconds(hardware, verifier, 1, context, dtype)


def prefill_seconds(hardware: HardwareProfile, verifier: ModelProfile, prompt_tokens: int, dtype: str) -> float:
    if prompt_tokens <= 0:
        return 0.0
    return forward_seconds(hardware, verifier, prompt_tokens, 1, 0, dtype)


def estimate(acceptance: pd.DataFrame, hardware: HardwareProfile, drafter: ModelProfile, verifier: ModelProfile,
             dtype: str = "bf16", workload: Workload = Workload()) -> pd.DataFrame:
    """Predicted draft / verify / other seconds per round, tokens/s and speedup per configuration.

    ``acceptance`` has ``ACCEPTANCE_COLUMNS`` (``acceptance_from_results`` or ``..._from_lengths``);
    the result has ``ESTIMATE_COLUMNS``, fastest first. With ``workload.new_tokens`` set, tokens/s
    counts reading the prompt too (as a sweep's ``tokens_per_s`` does) for both sides.
    """
    import pandas as pd

    if acceptance.empty:
        raise SpecdiffError("the acceptance table is empty")
    if drafter.vocab_size != verifier.vocab_size:
        raise SpecdiffError(f"{drafter.name} (vocabulary {drafter.vocab_size}) cannot draft for {verifier.name} "
                            f"(vocabulary {verifier.vocab_size}): drafts are verified token for token")
    ctx = workload.context
    plain_s = plain_token_seconds(hardware, verifier, ctx, dtype)
    prefill = prefill_seconds(hardware, verifier, workload.prompt_tokens, dtype)
    rows = []
    for a in acceptance.itertuples(index=False):
        block, tokens = int(a.block_size), float(a.tokens_per_round)
        drafted = a.draft_share * draft_seconds(hardware, drafter, block, a.steps_used, tokens, ctx, dtype)
        verify = (a.draft_share * verify_seconds(hardware, verifier, block + 1, ctx, dtype)
                  + (1.0 - a.draft_share) * plain_s)
        other = hardware.round_overhead_ms / 1e3
        round_s = drafted + verify + other
        rate, ar_rate = tokens / round_s, 1.0 / plain_s
        if workload.new_tokens > 0:
            n = workload.new_tokens
            rate = n / (prefill + n / tokens * round_s)
            ar_rate = n / (prefill + n * plain_s)
        rows.append(dict(block_size=block, denoising_steps=int(a.denoising_steps), tokens_per_round=tokens,
                         draft_s=drafted, verify_s=verify, other_s=other, round_s=round_s, tokens_per_s=rate,
                         ar_tokens_per_s=ar_rate, speedup=rate / ar_rate))
    table = pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)
    return table.sort_values("tokens_per_s", ascending=False, ignore_index=True)


def best_configuration(estimated: pd.DataFrame) -> pd.Series:
    """The fastest row of an ``estimate`` table."""
    if estimated.empty:
        raise SpecdiffError("nothing was estimated")
    return estimated.loc[estimated["tokens_per_s"].idxmax()]


def estimate_beside_measured(results: pd.DataFrame, hardware: HardwareProfile, drafter: ModelProfile,
                             verifier: ModelProfile, dtype: str = "bf16",
                             workload: Workload = Workload()) -> pd.DataFrame:
    """Each configuration the sweep measured, with its measured and its predicted speed side by side.

    For ``specdiff report``: measured ``tokens_per_s`` / ``speedup`` (this machine) next to
    ``predicted_tokens_per_s`` / ``predicted_speedup`` on ``hardware`` at the same acceptance.
    """
    import pandas as pd
    from specdiff.evals.report import summarize

    parts = []
    for _key, group in results.groupby(["suite", "temperature"], sort=True):
        spec = summarize(group)
        spec = spec[spec["method"] == "specdiff"]
        if spec.empty:
            continue
        predicted = estimate(acceptance_from_results(group), hardware, drafter, verifier, dtype, workload)
        predicted = predicted[["block_size", "denoising_steps", "tokens_per_s", "speedup"]].rename(
            columns={"tokens_per_s": "predicted_tokens_per_s", "speedup": "predicted_speedup"})
        view = spec[["suite", "temperature", "block_size", "denoising_steps", "mean_acceptance_length",
                     "tokens_per_s", "speedup"]]
        parts.append(view.merge(predicted, on=["block_size", "denoising_steps"], how="left"))
    if not parts:
        raise SpecdiffError("the sweep table has no speculative rows to set an estimate beside")
    merged = pd.concat(parts, ignore_index=True)
    merged["hardware"] = hardware.name
    return merged.sort_values(["suite", "temperature", "predicted_tokens_per_s"], ascending=[True, True, False],
                              ignore_index=True)
