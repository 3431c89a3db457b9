"""The report's aggregates against numbers worked out by hand on a small fixed table."""

from __future__ import annotations

import pandas as pd
import pytest
from specdiff.evals import report
from specdiff.evals.sweep import ROW_COLUMNS


def _row(
    prompt_id,
    method,
    block,
    steps,
    new,
    rounds,
    proposed,
    accepted,
    draft,
    verify,
    other,
    setup,
    output,
    judged=(),
    kept=(),
):
    total = draft + verify + other + setup
    return dict(
        suite="s",
        prompt_id=prompt_id,
        method=method,
        proposer="plain" if method == "ar" else "diffusion",
        block_size=block,
        denoising_steps=steps,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        seed=0,
        max_new_tokens=10,
        batch_size=1,
        prompt_tokens=20,
        new_tokens=new,
        rounds=rounds,
        proposed=proposed,
        accepted=accepted,
        mean_acceptance_length=new / rounds,
        acceptance_rate=accepted / proposed if proposed else 0.0,
        denoising_steps_used=steps,
        draft_s=draft,
        verify_s=verify,
        other_s=other,
        setup_s=setup,
        total_s=total,
        tokens_per_s=new / total,
        loop_share=0.1,
        output_hash=output,
        position_judged=list(judged),
        position_accepted=list(kept),
        drafter="d",
        verifier="v",
    )


@pytest.fixture
def table():
    rows = [
        _row("p1", "ar", 0, 0, 10, 10, 0, 0, 0.0, 2.0, 0.0, 0.0, "h1"),
        _row("p2", "ar", 0, 0, 10, 10, 0, 0, 0.0, 3.0, 0.0, 0.0, "h2"),
        _row("p1", "specdiff", 4, 1, 10, 4, 12, 6, 0.5, 0.3, 0.2, 0.0, "h1", [4, 3, 2, 1], [3, 2, 1, 0]),
        _row("p2", "specdiff", 4, 1, 10, 5, 16, 5, 0.6, 0.3, 0.1, 0.0, "h2", [5, 2, 1, 0], [2, 1, 0, 0]),
        _row("p1", "specdiff", 8, 2, 10, 2, 16, 8, 1.0, 0.5, 0.5, 0.5, "h1", [2] * 8, [2] * 4 + [0] * 4),
        _row("p2", "specdiff", 8, 2, 10, 2, 16, 8, 1.0, 0.5, 0.5, 0.5, "hX", [2] * 8, [2] * 4 + [0] * 4),
    ]
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == ROW_COLUMNS
    return frame


def _config(summary, block):
    return summary[summary["block_size"] == block].iloc[0]


def test_summary_pools_the_rows_of_each_configuration(table):
    summary = report.summarize(table, gpu_price_per_hour=3.0)
    ar, fast, slow = _config(summary, 0), _config(summary, 4), _config(summary, 8)
    assert ar["tokens_per_s"] == pytest.approx(20 / 5)
    assert fast["mean_acceptance_length"] == pytest.approx(20 / 9)
    assert fast["acceptance_rate"] == pytest.approx(11 / 28)
    assert fast["tokens_per_s"] == pytest.approx(10.0)
    assert fast["speedup"] == pytest.approx(2.5)
    assert (fast["draft_share"], fast["verify_share"], fast["other_share"]) == pytest.approx((0.55, 0.3, 0.15))
    assert fast["cost_per_million_tokens"] == pytest.approx(3.0 / 3600 / 10 * 1e6)
    assert slow["mean_acceptance_length"] == pytest.approx(5.0)
    assert slow["speedup"] == pytest.approx(1.0)
    assert slow["setup_share"] == pytest.approx(1.0 / 5.0)
    assert pd.isna(ar["acceptance_rate"]) and ar["speedup"] == 1.0 and ar["verify_share"] == 1.0
    assert summary.iloc[0]["block_size"] == 4  # fastest first


def test_the_best_configuration_is_the_fastest_speculative_one(table):
    best = report.best_configs(report.summarize(table))
    assert len(best) == 1 and (best.iloc[0]["block_size"], best.iloc[0]["denoising_steps"]) == (4, 1)


def test_acceptance_by_position_sums_the_counts_of_all_prompts(table):
    positions = report.position_acceptance(table)
    fast = positions[positions["block_size"] == 4]
    assert list(fast["judged"]) == [9, 5, 3, 1]
    assert list(fast["accepted"]) == [5, 3, 1, 0]
    assert list(fast["conditional_rate"]) == pytest.approx([5 / 9, 3 / 5, 1 / 3, 0.0])
    assert list(fast["reach_rate"]) == pytest.approx([5 / 9, 3 / 9, 1 / 9, 0.0])
    assert len(positions[positions["block_size"] == 8]) == 8


def test_greedy_agreement_counts_prompts_whose_outputs_all_match(table):
    agreement = report.greedy_agreement(table)
    assert agreement.to_dict("records") == [{"suite": "s", "identical": 1, "prompts": 2}]


def test_plots_and_markdown_are_written(table, tmp_path):
    from specdiff.evals.plots import write_plots

    paths = write_plots(table, tmp_path / "plots")
    assert [p.name for p in paths] == [
        "acceptance_heatmap.png",
        "acceptance_by_position.png",
        "tokens_per_s.png",
        "time_split.png",
    ]
    assert all(p.stat().st_size > 5000 for p in paths)
    text = report.markdown_report(table, gpu_price_per_hour=3.0, plots=paths, folder=tmp_path / "plots")
    assert "## Best configuration per suite" in text
    assert "| s | specdiff | diffusion | 4 | 1 | 0.00 | 2.22 | 0.39 | 10.00 | 2.50 |" in text
    assert "![tokens_per_s](tokens_per_s.png)" in text


def test_the_position_plot_draws_the_conditional_rate_the_text_prints(table):
    from specdiff.evals.plots import figures_for

    best = report.best_configs(report.summarize(table)).iloc[0]
    assert report.best_position_rates(table, best) == pytest.approx([5 / 9, 3 / 5, 1 / 3, 0.0])
    ax = figures_for(table)["acceptance_by_position"].axes[0]
    (bold,) = [line for line in ax.get_lines() if line.get_linewidth() > 2]
    assert list(bold.get_ydata()) == pytest.approx([5 / 9, 3 / 5, 1 / 3, 0.0])  # not the reach rate 5/9, 3/9, 1/9
