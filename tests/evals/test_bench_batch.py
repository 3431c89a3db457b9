"""``specdiff bench --batch-size B``: groups of B prompts, generate_batch beside transformers' batched
generate() and one by one, interleaved, every output identical."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from specdiff.evals.batch_bench import BATCH_METHODS, groups, hf_batched_generate
from specdiff.evals.bench import BenchConfig, run_bench
from typer.testing import CliRunner

from specdiff.errors import SpecdiffError

NEW = 6


def test_groups_keep_order_and_the_last_may_be_short():
    assert groups([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert groups([1, 2], 4) == [[1, 2]]


def test_hf_batched_rows_equal_each_prompt_alone(decoder, verifier):
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    alone = [hf_batched_generate(verifier, [p], NEW)[0] for p in prompts]
    assert hf_batched_generate(verifier, prompts, NEW) == alone
    assert decoder.generate(prompts[1], max_new_tokens=NEW).token_ids == alone[1]


def test_batch_bench_is_interleaved_per_group_and_lossless(decoder, three_prompts):
    config = BenchConfig(out=Path("b.csv"), suite=str(three_prompts), max_new_tokens=NEW, batch_size=2, repeats=2)
    result = run_bench(config, decoder, progress=False)
    summary, runs = result.summary.set_index("method"), result.runs
    assert list(result.summary["method"]) == list(BATCH_METHODS) and result.identical
    assert len(runs) == 2 * 3 * 3 and set(runs["new_tokens"]) == {NEW}
    assert sorted(runs.drop_duplicates(["group"])["batch_size"]) == [1, 2]  # the last group is short
    # Each group runs every method before the next group; the order rotates per group and per repeat.
    firsts = runs.drop_duplicates(["repeat", "group", "method"])
    assert list(firsts["method"][:3]) == list(BATCH_METHODS)
    assert list(firsts["method"][3:6]) == [*BATCH_METHODS[1:], BATCH_METHODS[0]]
    assert summary.loc["hf_batched", "speedup_vs_hf_batched"] == pytest.approx(1.0)
    walls = runs.drop_duplicates(["method", "repeat", "group"]).groupby("method")["group_s"].sum()
    for method in BATCH_METHODS:
        assert summary.loc[method, "new_tokens"] == 2 * 3 * NEW
        assert summary.loc[method, "tokens_per_s"] == pytest.approx(2 * 3 * NEW / walls[method])
        rows = runs[runs["method"] == method]
        assert summary.loc[method, "per_row_tokens_per_s"] == pytest.approx((rows["new_tokens"] / rows["row_s"]).mean())
    # A batch's rows finish no later than the batch: a row's seconds never exceed its group's.
    assert (runs["row_s"] <= runs["group_s"] + 1e-9).all()


def test_batch_methods_can_be_picked(decoder, three_prompts):
    config = BenchConfig(out=Path("b.csv"), suite=str(three_prompts), max_new_tokens=NEW, batch_size=3,
                         methods=("hf_batched", "specdiff_batch"))
    result = run_bench(config, decoder, progress=False)
    assert list(result.summary["method"]) == ["hf_batched", "specdiff_batch"] and result.identical
    assert set(result.runs["batch_size"]) == {3}


@pytest.mark.parametrize(("change", "message"), [
    (dict(batch_size=0), "--batch-size must be >= 1"),
    (dict(batch_size=2, methods=("ar",)), "pick from specdiff_batch, hf_batched, one_by_one"),
])
def test_bad_batch_arguments_are_refused_before_loading(tiny_dirs, monkeypatch, change, message):
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("loaded a model"))
    config = dict(out=Path("b.csv"), drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0]))
    with pytest.raises(SpecdiffError, match=message):
        run_bench(BenchConfig(**{**config, **change}), progress=False)


def test_the_cli_writes_the_batch_table(evals_app, tiny_dirs, three_prompts, tmp_path):
    out = tmp_path / "bench.csv"
    args = ["bench", "--suite", str(three_prompts), "--max-new-tokens", "4", "--batch-size", "2",
            "--drafter", str(tiny_dirs[1]), "--verifier", str(tiny_dirs[0]), "--out", str(out)]
    result = CliRunner().invoke(evals_app, args)
    assert result.exit_code == 0, result.output
    assert "greedy outputs identical" in result.output and "batched" in result.output
    table = pd.read_csv(out)
    assert list(table["method"]) == list(BATCH_METHODS)
    assert {"tokens_per_s", "per_row_tokens_per_s", "speedup_vs_hf_batched", "batch_size"} <= set(table.columns)
    assert len(pd.read_csv(tmp_path / "bench.runs.csv")) == 3 * 3
