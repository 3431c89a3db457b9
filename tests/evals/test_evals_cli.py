"""The three commands through Typer's CliRunner, on the tiny pair saved to disk."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

runner = CliRunner()


def _flat(output: str) -> str:
    """The output with rich's line wrapping (CliRunner pipes it: 80 columns) undone."""
    return " ".join(output.split())


@pytest.fixture(scope="session")
def models(tiny_dirs, ar_drafter, tmp_path_factory):
    """``--drafter/--verifier/--ar-drafter`` arguments for the tiny models."""
    ar_dir = tmp_path_factory.mktemp("ar_drafter")
    ar_drafter.save_pretrained(ar_dir)
    return ["--drafter", str(tiny_dirs[1]), "--verifier", str(tiny_dirs[0]), "--ar-drafter", str(ar_dir)]


def test_sweep_then_report(evals_app, models, mini_suite, tmp_path):
    out = tmp_path / "sweep.csv"
    args = [
        "sweep",
        "--suite",
        str(mini_suite),
        "--block-sizes",
        "2,4",
        "--steps",
        "1",
        "--max-new-tokens",
        "5",
    ]
    result = runner.invoke(evals_app, args + models[:4] + ["--out", str(out)])
    assert result.exit_code == 0, result.output
    # per prompt: the verifier alone, the drafter at blocks 2 and 4, the n-gram lookup at blocks 2 and 4
    assert "10 rows in" in result.output
    table = pd.read_csv(out)
    assert len(table) == 10 and table["proposer"].value_counts().to_dict() == {"diffusion": 4, "ngram": 4, "plain": 2}
    again = runner.invoke(evals_app, args + models[:4] + ["--out", str(out), "--resume"])
    assert again.exit_code == 0 and "10 rows in" in again.output

    plots, markdown = tmp_path / "plots", tmp_path / "report.md"
    shown = runner.invoke(
        evals_app,
        [
            "report",
            str(out),
            "--gpu-price-per-hour",
            "2.5",
            "--plots",
            str(plots),
            "--markdown",
            str(markdown),
        ],
    )
    assert shown.exit_code == 0, shown.output
    for text in (
        "best configuration per suite",
        "\nar ",  # the verifier-alone row
        "2 x 1",
        "$/1M",
        "acceptance by draft position",
        "greedy outputs, mini: identical across all methods on 2/2",
    ):
        assert text in shown.output or text in _flat(shown.output)
    assert len(list(plots.glob("*.png"))) == 4 and "# specdiff sweep report" in markdown.read_text()


def test_bench(evals_app, models, mini_suite, tmp_path):
    out = tmp_path / "bench.csv"
    result = runner.invoke(
        evals_app,
        [
            "bench",
            "--suite",
            str(mini_suite),
            "--max-new-tokens",
            "5",
            "--grid-block-sizes",
            "2,4",
            "--grid-steps",
            "1",
            "--grid-prompts",
            "1",
            *models,
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    methods = ["ar", "assisted_ar_drafter", "hf_prompt_lookup", "fixed_best", "heuristic", "adaptive"]
    assert f"greedy outputs identical across {', '.join(methods)} on all 2 prompts" in _flat(result.output)
    table = pd.read_csv(out)
    assert list(table["method"]) == methods
    assert {"tokens_per_s", "speedup_vs_ar", "mean_acceptance_length", "other_share"} <= set(table.columns)
    assert len(pd.read_csv(tmp_path / "bench.runs.csv")) == 2 * 6


def test_a_sampled_bench_says_its_outputs_are_not_compared(evals_app, models, mini_suite, tmp_path):
    out = tmp_path / "bench_t07.csv"
    args = ["bench", "--suite", str(mini_suite), "--max-new-tokens", "8", "--methods", "ar,hf_prompt_lookup,adaptive",
            "--grid-block-sizes", "2,4", "--temperature", "0.7", "--seed", "5", *models, "--out", str(out)]
    result = runner.invoke(evals_app, args)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    assert "sampled at temperature 0.7" in shown and "not compared token for token" in shown
    table = pd.read_csv(out)
    assert list(table["method"]) == ["ar", "hf_prompt_lookup", "adaptive"]
    assert (table["greedy_identical"] == "n/a (sampled)").all() and table["identical_share"].isna().all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--suite", "nope"], "unknown suite 'nope'"),
        (["sweep", "--block-sizes", ""], "--block-sizes is empty"),
        (["sweep", "--steps", ""], "--steps is empty"),
        (["sweep", "--block-sizes", "4,x"], "--block-sizes takes comma-separated ints"),
        (["sweep", "--block-sizes", "8,64"], "block size 64 exceeds the drafter's canvas of 16"),
        (["sweep", "--temperatures", "-0.5"], "temperature must be >= 0"),
        (["sweep", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
        (["bench", "--methods", "ar,warp"], "unknown method warp"),
        (["bench", "--grid-block-sizes", "128"], "exceeds the drafter's canvas of 16"),
        (["bench", "--repeats", "0"], "--repeats must be >= 1"),
        (["bench", "--temperature", "-1"], "temperature must be >= 0"),
        (["bench", "--temperature", "0.7", "--top-p", "2"], "top_p must be in (0, 1]"),
        (["bench", "--temperature", "0.7", "--top-k", "-3"], "--top-k must be a whole number >= 0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(evals_app, models, tmp_path, monkeypatch, args, message):
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("loaded a model"))
    named = models if args[0] == "bench" else models[:4]  # sweep takes no --ar-drafter
    result = runner.invoke(evals_app, args + named + ["--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert message in _flat(result.output) and "Traceback" not in result.output


def test_report_of_a_missing_file(evals_app, tmp_path):
    result = runner.invoke(evals_app, ["report", str(tmp_path / "none.csv")])
    assert result.exit_code == 2 and "no results file at" in result.output
