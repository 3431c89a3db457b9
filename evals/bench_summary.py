"""The bench's summary: one row per method from its per-prompt runs (``specdiff.evals.bench``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


# The identity columns of a sampled bench: its outputs are draws, not one answer to compare.
SAMPLED = "n/a (sampled)"


def summarize_bench(
    runs: pd.DataFrame, methods: list[str], best: Any | None, mismatched: tuple[str, ...] | None,
    temperature: float = 0.0,
) -> pd.DataFrame:
    """One row per method, in the order asked; ``mismatched`` None: sampled, the identity columns
    say ``n/a (sampled)`` (``greedy_identical``) and NaN (``identical_share``, ``max_divergence_spacings``)."""
    import pandas as pd
    from specdiff.evals.report import SUMMED_COLUMNS, rate_columns, summed

    sums = (
        runs.groupby("method")
        .agg(
            prompts=("prompt_id", "nunique"),
            **summed(SUMMED_COLUMNS),
        )
        .reindex(methods)
    )
    summary = pd.DataFrame({"method": methods})
    summary["proposer"] = [best.proposer.value if m == "fixed_best" and best else "" for m in methods]
    summary["block_size"] = [best.block_size if m == "fixed_best" and best else 0 for m in methods]
    summary["denoising_steps"] = [best.denoising_steps if m == "fixed_best" and best else 0 for m in methods]
    for column in ("prompts", "new_tokens", "total_s"):
        summary[column] = sums[column].to_numpy()
    rates = rate_columns(sums)
    summary["tokens_per_s"] = rates["tokens_per_s"].to_numpy()
    ar = summary.loc[summary["method"] == "ar", "tokens_per_s"]
    summary["speedup_vs_ar"] = summary["tokens_per_s"] / float(ar.iloc[0]) if len(ar) else float("nan")
    for column in ("mean_acceptance_length", "acceptance_rate", "draft_share", "verify_share", "other_share"):
        summary[column] = rates[column].to_numpy()
    # Read every acceptance figure beside how much the output repeats itself (a loop is easy to draft).
    summary["loop_share"] = runs.groupby("method")["loop_share"].mean().reindex(methods).to_numpy()
    summary["temperature"] = temperature
    if mismatched is None:
        summary["greedy_identical"] = SAMPLED
        summary["identical_share"] = summary["max_divergence_spacings"] = float("nan")
        return summary
    summary["greedy_identical"] = not mismatched
    if "first_divergence" in runs.columns:
        # bfloat16's exactness in two numbers: how often a method equals ar, and the widest margin it parted at.
        by_method = runs.groupby("method")
        summary["identical_share"] = by_method["first_divergence"].apply(lambda s: (s < 0).mean()).reindex(
            methods).to_numpy()
        summary["max_divergence_spacings"] = by_method["divergence_spacings"].max().reindex(methods).to_numpy()
    return summary
