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


def summarize(results: pd.DataFrame, gpu_price_per_hour: float | None = None) -> pd.DataFrame:
    """One row per configuration and suite (the baseline included), sorted by suite and speed."""
    sums = results.groupby(CONFIG_COLUMNS, as_index=False, sort=True).agg(
        prompts=("prompt_id", "nunique"),
        runs=("prompt_id", "size"),
        new_tokens=("new_tokens", "sum"),
        rounds=("rounds", "sum"),
        proposed=("proposed", "sum"),
        accepted=("accepted", "sum"),
        draft_s=("draft_s", "sum"),
        verify_s=("verify_s", "sum"),
        other_s=("other_s", "sum"),
        setup_s=("setup_s", "sum"),
        total_s=("total_s", "sum"),
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


def greedy_agreement(results: pd.DataFrame) -> pd.DataFrame:
    """Per suite, greedy prompts whose outputs agree across every method and configuration."""
    greedy = results[results["temperature"] == 0]
    per_prompt = greedy.groupby(["suite", "prompt_id", "max_new_tokens"])["output_hash"].nunique()
    table = (per_prompt == 1).groupby(level="suite").agg(["sum", "size"]).reset_index()
    return table.rename(columns={"sum": "identical", "size": "prompts"})


# -- plots ---------------------------------------------------------------------------------------------


def write_plots(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """PNGs: acceptance-length heatmap, acceptance by position, tokens/s by block size, time split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    temperature = sorted(summary["temperature"].unique())[0]
    summary = summary[summary["temperature"] == temperature]
    spec = summary[summary["method"] == SPECDIFF].assign(setting=lambda f: _settings(f))
    suites = sorted(spec["suite"].unique())
    tag = f"temperature {temperature:g}"
    paths = []
    if not suites:
        return paths

    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        grid = spec[spec["suite"] == suite].pivot_table(
            index="setting", columns="block_size", values="mean_acceptance_length"
        )
        image = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                color="white" if value < grid.to_numpy().mean() else "black",
                fontsize=9,
            )
        ax.set(title=suite, xlabel="block size", ylabel="proposer")
        fig.colorbar(image, ax=ax, label="mean acceptance length")
    paths.append(_save(fig, out / "acceptance_heatmap.png", f"Mean acceptance length (tokens per round), {tag}"))

    positions = position_acceptance(results[results["temperature"] == temperature])
    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        best = best_configs(spec[spec["suite"] == suite]).iloc[0]
        mine = positions[(positions["suite"] == suite) & (positions["block_size"] == best["block_size"])]
        for setting, curve in mine.assign(setting=_settings(mine)).groupby("setting"):
            ax.plot(curve["position"] + 1, curve["reach_rate"], marker=".", label=setting)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(
            title=f"{suite}, block {best['block_size']}",
            xlabel="draft position",
            ylabel="rounds accepting through it",
            ylim=(0, 1.02),
        )
        ax.grid(alpha=0.3)
    _legend_outside(axes[len(suites) - 1])
    paths.append(_save(fig, out / "acceptance_by_position.png", f"Acceptance by draft position, {tag}"))

    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        mine = spec[spec["suite"] == suite]
        for setting, curve in mine.groupby("setting"):
            ax.plot(
                curve.sort_values("block_size")["block_size"],
                curve.sort_values("block_size")["tokens_per_s"],
                marker="o",
                label=setting,
            )
        ar = summary[(summary["suite"] == suite) & (summary["method"] == AR)]["tokens_per_s"]
        if len(ar):
            ax.axhline(float(ar.iloc[0]), color="black", linestyle="--", label="verifier alone")
        ax.set_xscale("log", base=2)
        blocks = sorted(mine["block_size"].unique())
        ax.set_xticks(blocks, [str(b) for b in blocks])
        ax.minorticks_off()
        ax.set(title=suite, xlabel="block size", ylabel="tokens/s")
        ax.grid(alpha=0.3)
    _legend_outside(axes[len(suites) - 1])
    paths.append(_save(fig, out / "tokens_per_s.png", f"Tokens per second by block size, {tag}"))

    best = best_configs(spec)
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.5 * len(best)))
    labels = [f"{r.suite}: {config_label(r)}" for r in best.itertuples()]
    left = np.zeros(len(best))
    for column, colour in (
        ("draft_share", "tab:blue"),
        ("verify_share", "tab:orange"),
        ("other_share", "tab:red"),
    ):
        bars = ax.barh(labels, best[column], left=left, color=colour, label=column.replace("_share", ""))
        ax.bar_label(bars, [f"{v:.0%}" for v in best[column]], label_type="center", fontsize=8, color="white")
        left += best[column].to_numpy()
    ax.set(xlim=(0, 1), xlabel="share of round time (other: acceptance, rollback, bookkeeping)")
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    paths.append(_save(fig, out / "time_split.png", f"Round time at each suite's best configuration, {tag}"))
    return paths


def config_label(row: Any) -> str:
    """A configuration as people read it: ``ar``, ``ngram 16``, ``diffusion 16 x 2``."""
    if row.method == AR:
        return "ar"
    if row.proposer == "diffusion":
        return f"diffusion {row.block_size} x {row.denoising_steps}"
    return f"{row.proposer} {row.block_size}"


def _legend_outside(ax) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _settings(frame: pd.DataFrame) -> pd.Series:
    """Each row's drafting setting: ``ngram``, or the diffusion drafter's ``N steps``."""
    plural = np.where(frame["denoising_steps"] == 1, "", "s")
    steps = frame["denoising_steps"].astype(int).astype(str) + " step" + plural
    return steps.where(frame["proposer"] == "diffusion", frame["proposer"])


def _panels(plt, n: int):
    fig, axes = plt.subplots(1, n, figsize=(max(4.8 * n, 6.4), 3.9), squeeze=False)
    return fig, list(axes[0])


def _save(fig, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


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
    for path in plots or []:
        link = Path(os.path.relpath(Path(path).resolve(), Path(folder or ".").resolve())).as_posix()
        parts += [f"![{path.stem}]({link})", ""]
    return "\n".join(parts)
