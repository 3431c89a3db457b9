"""What the report and the bench show: tables within 80 columns, rate axes from 0, and the
per-position plot drawing the very numbers the text beside it prints."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from specdiff.evals import report
from specdiff.evals.bench import BenchConfig, run_bench
from specdiff.evals.plots import figures_for
from specdiff.evals.sweep import SweepConfig, run_sweep


@pytest.fixture(scope="module")
def both(drafter, verifier):
    """The tiny pair with the n-gram lookup beside the drafter, as ``load_decoder`` builds it."""
    from specdiff.drafts import ContextSeed, NgramLookup

    from specdiff import SpeculativeDecoder

    lookup = NgramLookup(verifier.vocab_size, drafter.context_seed or ContextSeed(), drafter.canvas_length)
    return SpeculativeDecoder([drafter, lookup], verifier)


@pytest.fixture(scope="module")
def results(both, tmp_path_factory):
    """A real sweep of the tiny pair: both proposers, two block sizes, two step counts."""
    import json

    folder = tmp_path_factory.mktemp("report")
    suite = folder / "two.jsonl"
    suite.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n"
                             for i, p in (("a", "def add(a, b):\n    return"), ("b", "import os\n"))))
    config = SweepConfig(out=folder / "t.csv", suite=str(suite), block_sizes=(2, 4), denoising_steps=(1, 2),
                         max_new_tokens=8)
    return run_sweep(config, both, progress=False)


def _printed(monkeypatch, width: int | None, show) -> str:
    console = Console(width=width, file=io.StringIO()) if width else Console(file=io.StringIO())
    monkeypatch.setattr("specdiff.cli_tables.console", console)
    show()
    return console.file.getvalue()


def _no_cut(text: str, width: int) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("width", [80, None])  # None: piped output, rich's default width
def test_report_tables_fit_80_columns_with_every_speedup(results, monkeypatch, width):
    from specdiff.cli_tables import print_report

    summary = report.summarize(results, gpu_price_per_hour=2.5)
    text = _printed(monkeypatch, width, lambda: print_report(results, summary, 8))
    _no_cut(text, 80)
    for value in summary["speedup"]:
        assert f"{value:.2f}x" in text


@pytest.mark.parametrize("width", [80, None])
def test_bench_table_fits_80_columns_with_every_speedup(both, ar_drafter, tmp_path, monkeypatch, width):
    import json

    from specdiff.cli_tables import print_bench

    suite = tmp_path / "one.jsonl"
    suite.write_text(json.dumps({"id": "a", "prompt": "def add(a, b):\n    return"}) + "\n")
    config = BenchConfig(out=tmp_path / "b.csv", suite=str(suite), max_new_tokens=6, grid_block_sizes=(2, 4),
                         grid_steps=(1,), grid_prompts=1)
    result = run_bench(config, both, ar_drafter=ar_drafter, progress=False)
    text = _printed(monkeypatch, width, lambda: print_bench(result))
    _no_cut(text, 80)
    for method, value in zip(result.summary["method"], result.summary["speedup_vs_ar"], strict=True):
        line = next(line for line in text.splitlines() if line.startswith(method))
        assert f"{value:.2f}x" in line


def test_rate_and_speed_axes_start_at_zero(results):
    figures = figures_for(results)
    for name in ("tokens_per_s", "acceptance_by_position"):
        for ax in figures[name].axes:
            assert ax.get_ylim()[0] == 0
    assert figures["acceptance_heatmap"].axes[0].images[0].get_clim()[0] == 0


def test_the_position_plot_draws_what_the_text_prints(results, monkeypatch, tmp_path):
    from specdiff.cli_tables import print_report

    summary = report.summarize(results)
    best = report.best_configs(summary).iloc[0]
    rates = report.best_position_rates(results, best)
    ax = figures_for(results)["acceptance_by_position"].axes[0]
    bold = [line for line in ax.get_lines() if line.get_linewidth() > 2]
    assert len(bold) == 1 and bold[0].get_label() == report.config_label(best) + " (best)"
    assert [y for y in bold[0].get_ydata() if y == y] == pytest.approx(rates)  # NaN: a position never judged

    text = " ".join(_printed(monkeypatch, 80, lambda: print_report(results, summary, 8)).split())
    printed = re.search(r"\(given the earlier positions accepted\): ([0-9. ]+)", text).group(1).split()
    assert [float(v) for v in printed] == pytest.approx(rates, abs=0.005)

    from specdiff.evals.plots import write_plots

    paths = write_plots(results, tmp_path / "plots")
    markdown = report.markdown_report(results, plots=paths, folder=tmp_path)
    caption = markdown.split("acceptance_by_position.png)")[1].split("(the bold line): ")[1].splitlines()[0]
    assert [float(v) for v in caption.split()] == pytest.approx(rates, abs=0.005)
