"""Summaries of a sweep table: acceptance, speed, cost and where a round's time goes.

Every function takes the sweep's DataFrame (``specdiff.evals.sweep.read_results``) and returns a
DataFrame, so a notebook gets the numbers the terminal shows. Aggregates pool the rows of a
configuration (all prompts and seeds) rather than averaging per-prompt ratios:

- mean acceptance length = sum(new_tokens) / sum(rounds);
- acceptance rate = sum(accepted) / sum(proposed);
- tokens/s = sum(new_tokens) / sum(total_s); speedup = tokens/s over the verifier alone's (``ar``)
  on the same suite and sampling setting;
- cost per million tokens = price per hour / 3600 / tokens/s x 1e6;
- draft, verify and other shares = each phase's time over the round time (draft + verify + other);
  for ``ar`` all of it is verifying. ``setup_share`` is the time outside rounds over ``total_s``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from specdiff.evals.table import AR, KEY_COLUMNS, SPECDIFF

# A configuration is a row's key without the prompt and the seed: what a summary pools over.
CONFIG_COLUMNS = [c for c in KEY_COLUMNS if c not in ("prompt_id", "seed")]
# What a speedup compares within: a configuration without the method and the drafting setting.
SETTING_COLUMNS = [c for c in CONFIG_COLUMNS if c not in ("method", "proposer", "block_size", "denoising_steps")]


# The per-run columns a summary adds up (the rates follow from their sums, ``rate_columns``).
SUMMED_COLUMNS = ("new_tokens", "rounds", "proposed", "accepted", "draft_s", "verify_s", "other_s", "total_s")


def summed(columns: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Named aggregations summing each column, for ``DataFrame.groupby(...).agg(**summed(...))``."""
    return {column: (column, "sum") for column in columns}


def summarize(results: pd.DataFrame, gpu_price_per_hour: float | None = None) -> pd.DataFrame:
    """One row per configuration and suite (the baseline included), sorted by suite and speed."""
    sums = results.groupby(CONFIG_COLUMNS, as_index=False, sort=True).agg(
        prompts=("prompt_id", "nunique"),
        runs=("prompt_id", "size"),
        **summed(SUMMED_COLUMNS + ("setup_s",)),
        loop_share=("loop_share", "mean"),
    )
    summary = sums[CONFIG_COLUMNS + ["prompts", "runs", "new_tokens", "rounds"]].copy()
    rates = rate_columns(sums)
    for column in ("mean_acceptance_length", "acceptance_rate", "tokens_per_s"):
        summary[column] = rates[column]
    baseline = summary.loc[summary["method"] == AR, SETTING_COLUMNS + ["tokens_per_s"]]
    baseline = baseline.rename(columns={"tokens_per_s": "ar_tokens_per_s"})
    summary = summary.merge(baseline, on=SETTING_COLUMNS, how="left")
    summary["speedup"] = summary["tokens_per_s"] / summary["ar_tokens_per_s"]
    summary = summary.drop(columns="ar_tokens_per_s")
    for column in ("draft_share", "verify_share", "other_share"):
        summary[column] = rates[column]
    summary["setup_share"] = _ratio(sums["setup_s"], sums["total_s"])
    summary["loop_share"] = sums["loop_share"]
    if gpu_price_per_hour is not None:
        summary["cost_per_million_tokens"] = gpu_price_per_hour / 3600.0 / summary["tokens_per_s"] * 1e6
    return summary.sort_values(
        ["suite", "temperature", "tokens_per_s"], ascending=[True, True, False], ignore_index=True
    )


def rate_columns(sums: pd.DataFrame) -> pd.DataFrame:
    """Rates from summed counts and seconds, row by row (the sweep report's and the bench's).

    ``sums`` has ``new_tokens, rounds, proposed, accepted, total_s, draft_s, verify_s, other_s``;
    the result (same index) ``mean_acceptance_length, acceptance_rate, tokens_per_s`` and the round
    time split ``draft_share, verify_share, other_share`` (NaN where a denominator is 0).
    """
    round_s = sums["draft_s"] + sums["verify_s"] + sums["other_s"]
    return pd.DataFrame(
        {
            "mean_acceptance_length": _ratio(sums["new_tokens"], sums["rounds"]),
            "acceptance_rate": _ratio(sums["accepted"], sums["proposed"]),
            "tokens_per_s": _ratio(sums["new_tokens"], sums["total_s"]),
            "draft_share": _ratio(sums["draft_s"], round_s),
            "verify_share": _ratio(sums["verify_s"], round_s),
            "other_share": _ratio(sums["other_s"], round_s),
        },
        index=sums.index,
    )


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator != 0)).astype(float)


def best_configs(summary: pd.DataFrame) -> pd.DataFrame:
    """Per suite and sampling setting, the speculative configuration with the most tokens/s."""
    spec = summary[summary["method"] == SPECDIFF]
    if spec.empty:
        return spec.copy()
    best = spec.loc[spec.groupby(SETTING_COLUMNS, sort=True)["tokens_per_s"].idxmax()]
    return best.reset_index(drop=True)


def position_acceptance(results: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and draft position (0-based): rounds that judged and accepted it.

    ``conditional_rate`` = accepted / judged (given every earlier position was accepted);
    ``reach_rate`` = accepted / rounds that drafted (how often a round's accepted run reaches it).
    """
    rows = []
    spec = results[results["method"] == SPECDIFF]
    for key, group in spec.groupby(CONFIG_COLUMNS, sort=True):
        width = max(len(v) for v in group["position_judged"])
        judged, accepted = np.zeros(width, dtype=np.int64), np.zeros(width, dtype=np.int64)
        for j, a in zip(group["position_judged"], group["position_accepted"], strict=True):
            judged[: len(j)] += np.asarray(j, dtype=np.int64)
            accepted[: len(a)] += np.asarray(a, dtype=np.int64)
        for position in range(width):
            rows.append(
                dict(
                    zip(CONFIG_COLUMNS, key, strict=True),
                    position=position,
                    judged=int(judged[position]),
                    accepted=int(accepted[position]),
                    drafts=int(judged[0]),
                )
            )
    table = pd.DataFrame(rows, columns=CONFIG_COLUMNS + ["position", "judged", "accepted", "drafts"])
    table["conditional_rate"] = _ratio(table["accepted"], table["judged"])
    table["reach_rate"] = _ratio(table["accepted"], table["drafts"])
    return table.drop(columns="drafts")


def best_position_rates(results: pd.DataFrame, best: pd.Series, positions: int = 16) -> list[float]:
    """Acceptance by draft position at the configuration ``best`` (a ``best_configs`` row), given
    every earlier position was accepted: what the terminal, the markdown and the plot all show."""
    table = position_acceptance(results)
    mine = table[
        (table["suite"] == best["suite"])
        & (table["temperature"] == best["temperature"])
        & (table["top_k"] == best["top_k"])
        & (table["top_p"] == best["top_p"])
        & (table["max_new_tokens"] == best["max_new_tokens"])
        & (table["proposer"] == best["proposer"])
        & (table["block_size"] == best["block_size"])
        & (table["denoising_steps"] == best["denoising_steps"])
    ]
    return [float(r) for r in mine["conditional_rate"].head(positions) if r == r]


def greedy_agreement(results: pd.DataFrame) -> pd.DataFrame:
    """Per suite, greedy prompts whose outputs agree across every method and configuration."""
    greedy = results[results["temperature"] == 0]
    per_prompt = greedy.groupby(["suite", "prompt_id", "max_new_tokens"])["output_hash"].nunique()
    table = (per_prompt == 1).groupby(level="suite").agg(["sum", "size"]).reset_index()
    return table.rename(columns={"sum": "identical", "size": "prompts"})


def config_label(row: Any) -> str:
    """A configuration as people read it: ``ar``, ``ngram 16``, ``diffusion 16 x 2``."""
    if row.method == AR:
        return "ar"
    if row.proposer == "diffusion":
        return f"diffusion {row.block_size} x {row.denoising_steps}"
    return f"{row.proposer} {row.block_size}"


# -- markdown -----------------------------------------------------------------------------------------


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub markdown table (no extra dependency)."""

    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


SUMMARY_VIEW = [
    "suite",
    "method",
    "proposer",
    "block_size",
    "denoising_steps",
    "temperature",
    "mean_acceptance_length",
    "acceptance_rate",
    "tokens_per_s",
    "speedup",
    "draft_share",
    "verify_share",
    "other_share",
    "loop_share",
]


def markdown_report(
    results: pd.DataFrame,
    gpu_price_per_hour: float | None = None,
    plots: list[Path] | None = None,
    top: int = 10,
    folder: Path | None = None,
) -> str:
    """A report to paste into a pull request; ``folder`` is where the markdown file will live (image
    links are relative to it; None: the current directory)."""
    summary = summarize(results, gpu_price_per_hour)
    view = SUMMARY_VIEW + (["cost_per_million_tokens"] if gpu_price_per_hour is not None else [])
    agreement = greedy_agreement(results)
    parts = [
        "# specdiff sweep report",
        "",
        f"{len(results)} generations, suites: {', '.join(sorted(results['suite'].unique()))}.",
        "",
        "## Best configuration per suite",
        "",
        markdown_table(best_configs(summary)[view]),
        "",
    ]
    if len(agreement):
        parts += [
            "## Greedy outputs",
            "",
            markdown_table(agreement),
            "",
            "A prompt is identical when every method and configuration produced the same tokens.",
            "",
        ]
    for suite, group in summary.groupby("suite"):
        parts += [
            f"## {suite} (top {top} by tokens/s, and the verifier alone)",
            "",
            markdown_table(
                pd.concat([group[group["method"] == SPECDIFF].head(top), group[group["method"] == AR]])[view]
            ),
            "",
        ]
    best = best_configs(summary)
    for path in plots or []:
        link = Path(os.path.relpath(Path(path).resolve(), Path(folder or ".").resolve())).as_posix()
        parts += [f"![{path.stem}]({link})", ""]
        if path.stem == "acceptance_by_position":
            for row in best[best["temperature"] == best["temperature"].min()].itertuples():
                rates = " ".join(f"{r:.2f}" for r in best_position_rates(results, pd.Series(row._asdict())))
                parts += [f"Acceptance by draft position given the earlier positions accepted, {row.suite}, "
                          f"{config_label(row)} (the bold line): {rates}", ""]
    return "\n".join(parts)
