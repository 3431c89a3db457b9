"""The sweep report's plots, one function per figure (each returns its matplotlib figure).

Rates and speeds are drawn from 0, so a bar or a line's height reads as a ratio. The per-position
plot draws what the report's text prints beside it: acceptance at each draft position given every
earlier one was accepted (``specdiff.evals.report.best_position_rates``), with the best
configuration's line in bold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from specdiff.evals.report import best_configs, config_label, position_acceptance, summarize
from specdiff.evals.table import AR, SPECDIFF

PLOT_NAMES = ("acceptance_heatmap", "acceptance_by_position", "tokens_per_s", "time_split")


def write_plots(results: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """PNGs: acceptance-length heatmap, acceptance by position, tokens/s by block size, time split.

    Plots show the lowest temperature in the table; returns the files written (none without a
    speculative row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = figures_for(results)
    paths = []
    for name, fig in figures.items():
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=110)
        plt.close(fig)
        paths.append(out / f"{name}.png")
    return paths


def figures_for(results: pd.DataFrame) -> dict[str, Any]:
    """Every plot's figure by name, at the table's lowest temperature."""
    import matplotlib.pyplot as plt

    summary = summarize(results)
    temperature = sorted(summary["temperature"].unique())[0]
    summary = summary[summary["temperature"] == temperature]
    spec = summary[summary["method"] == SPECDIFF].assign(setting=lambda f: _settings(f))
    if spec.empty:
        return {}
    suites = sorted(spec["suite"].unique())
    tag = f"temperature {temperature:g}"
    at_t = results[results["temperature"] == temperature]
    return {
        "acceptance_heatmap": heatmap(plt, spec, suites, tag),
        "acceptance_by_position": by_position(plt, at_t, spec, suites, tag),
        "tokens_per_s": tokens_per_s(plt, summary, spec, suites, tag),
        "time_split": time_split(plt, best_configs(spec), tag),
    }


def heatmap(plt: Any, spec: pd.DataFrame, suites: list[str], tag: str) -> Any:
    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        grid = spec[spec["suite"] == suite].pivot_table(
            index="setting", columns="block_size", values="mean_acceptance_length"
        )
        values = grid.to_numpy()
        image = ax.imshow(values, cmap="viridis", aspect="auto", origin="lower", vmin=0)
        ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
        ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
        for (i, j), value in np.ndenumerate(values):
            colour = "white" if value < np.nanmean(values) else "black"
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=9)
        ax.set(title=suite, xlabel="block size", ylabel="proposer")
        fig.colorbar(image, ax=ax, label="mean acceptance length")
    fig.suptitle(f"Mean acceptance length (tokens per round), {tag}", fontsize=11)
    return fig


def by_position(plt: Any, results: pd.DataFrame, spec: pd.DataFrame, suites: list[str], tag: str) -> Any:
    """Per suite, every setting at the best configuration's block size; the best one in bold."""
    from matplotlib.ticker import MaxNLocator

    positions = position_acceptance(results)
    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        best = best_configs(spec[spec["suite"] == suite]).iloc[0]
        mine = positions[(positions["suite"] == suite) & (positions["block_size"] == best["block_size"])]
        for _, curve in mine.groupby(["proposer", "denoising_steps"], sort=True):
            row = curve.iloc[0]
            is_best = (row["proposer"], row["denoising_steps"]) == (best["proposer"], best["denoising_steps"])
            rates = curve["conditional_rate"]
            ax.plot(curve["position"] + 1, rates, marker=".", linewidth=2.6 if is_best else 1.0,
                    label=config_label(row) + (" (best)" if is_best else ""), zorder=3 if is_best else 2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{suite}, block {best['block_size']}", xlabel="draft position",
               ylabel="accepted, given earlier ones were", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    _legend_outside(axes[len(suites) - 1])
    fig.suptitle(f"Acceptance by draft position, given the earlier positions accepted, {tag}", fontsize=11)
    return fig


def tokens_per_s(plt: Any, summary: pd.DataFrame, spec: pd.DataFrame, suites: list[str], tag: str) -> Any:
    fig, axes = _panels(plt, len(suites))
    for ax, suite in zip(axes, suites, strict=False):
        mine = spec[spec["suite"] == suite]
        for setting, curve in mine.groupby("setting"):
            curve = curve.sort_values("block_size")
            ax.plot(curve["block_size"], curve["tokens_per_s"], marker="o", label=setting)
        ar = summary[(summary["suite"] == suite) & (summary["method"] == AR)]["tokens_per_s"]
        if len(ar):
            ax.axhline(float(ar.iloc[0]), color="black", linestyle="--", label="verifier alone")
        ax.set_xscale("log", base=2)
        blocks = sorted(mine["block_size"].unique())
        ax.set_xticks(blocks, [str(b) for b in blocks])
        ax.minorticks_off()
        ax.set(title=suite, xlabel="block size", ylabel="tokens/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    _legend_outside(axes[len(suites) - 1])
    fig.suptitle(f"Tokens per second by block size, {tag}", fontsize=11)
    return fig


def time_split(plt: Any, best: pd.DataFrame, tag: str) -> Any:
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.5 * len(best)))
    labels = [f"{r.suite}: {config_label(r)}" for r in best.itertuples()]
    left = np.zeros(len(best))
    for column, colour in (("draft_share", "tab:blue"), ("verify_share", "tab:orange"), ("other_share", "tab:red")):
        bars = ax.barh(labels, best[column], left=left, color=colour, label=column.replace("_share", ""))
        ax.bar_label(bars, [f"{v:.0%}" for v in best[column]], label_type="center", fontsize=8, color="white")
        left += best[column].to_numpy()
    ax.set(xlim=(0, 1), xlabel="share of round time (other: acceptance, rollback, bookkeeping)")
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(f"Round time at each suite's best configuration, {tag}", fontsize=11)
    return fig


def _legend_outside(ax: Any) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _settings(frame: pd.DataFrame) -> pd.Series:
    """Each row's drafting setting: ``ngram``, or the diffusion drafter's ``N steps``."""
    plural = np.where(frame["denoising_steps"] == 1, "", "s")
    steps = frame["denoising_steps"].astype(int).astype(str) + " step" + plural
    return steps.where(frame["proposer"] == "diffusion", frame["proposer"])


def _panels(plt: Any, n: int) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, n, figsize=(max(4.8 * n, 6.4), 3.9), squeeze=False)
    return fig, list(axes[0])

