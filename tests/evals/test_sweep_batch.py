"""The sweep's batch-size axis: rows keyed with batch_size, groups decoded together, old tables still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Interrupt
from helpers import stop_after as _stop_after
from specdiff.evals import sweep as sw
from specdiff.evals.batch_sweep import batch_group
from specdiff.evals.report import summarize
from specdiff.evals.suites import load_suite
from specdiff.evals.sweep import Journal, SweepConfig, journal_path, plan, read_results, run_sweep

from specdiff.errors import SpecdiffError

SMALL = dict(proposers=("diffusion",), block_sizes=(2,), denoising_steps=(1,), max_new_tokens=5)


def test_groups_are_the_suite_order_cut_every_batch_size():
    order = ["a", "b", "c", "d", "e"]
    assert batch_group(order, "b", 2) == ["a", "b"] and batch_group(order, "e", 2) == ["e"]
    assert batch_group(order, "d", 3) == ["d", "e"] and batch_group(order, "c", 1) == ["c"]


def test_plan_adds_each_batch_size_after_the_first(three_prompts):
    config = SweepConfig(out=Path("x.csv"), suite=str(three_prompts), batch_sizes=(1, 2), **SMALL)
    tasks = plan(config, load_suite(three_prompts))
    assert len(tasks) == 3 * 2 * 2
    assert [(t.method, t.batch_size) for t in tasks[:4]] == [("ar", 1), ("specdiff", 1), ("ar", 2), ("specdiff", 2)]


def test_batched_rows_equal_the_rows_alone_and_the_summary_compares_within_a_batch_size(decoder, three_prompts,
                                                                                       tmp_path):
    out = tmp_path / "t.csv"
    seen = []
    table = run_sweep(SweepConfig(out=out, suite=str(three_prompts), batch_sizes=(1, 2), **SMALL), decoder,
                      on_row=seen.append, progress=False)
    assert len(table) == len(seen) == 3 * 2 * 2 and not table.duplicated(sw.KEY_COLUMNS).any()
    assert sorted(set(read_results(out)["batch_size"])) == [1, 2]
    # Greedy: a prompt's output is the same alone, in a batch, from specdiff and from transformers.
    assert table.groupby("prompt_id")["output_hash"].nunique().eq(1).all()
    # A group's rows share its seconds: both rows of the first B=2 group record the same share.
    first = table[(table["batch_size"] == 2) & (table["method"] == "ar") & table["prompt_id"].isin(["p0", "p1"])]
    assert first["total_s"].nunique() == 1
    summary = summarize(table).set_index(["method", "batch_size"])
    assert summary.loc[("ar", 2), "speedup"] == pytest.approx(1.0)  # the baseline of its own batch size
    assert summary.loc[("ar", 1), "speedup"] == pytest.approx(1.0)


def test_an_interrupted_batch_sweep_resumes_without_duplicates(decoder, three_prompts, tmp_path):
    out = tmp_path / "cut.csv"
    config = dict(out=out, suite=str(three_prompts), batch_sizes=(2,), **SMALL)
    with pytest.raises(Interrupt):
        run_sweep(SweepConfig(**config), decoder, on_row=_stop_after(3), progress=False)
    assert len(Journal(journal_path(out)).read()) == 3
    rows = []
    table = run_sweep(SweepConfig(**config, resume=True), decoder, on_row=rows.append, progress=False)
    assert len(rows) == 3 and len(table) == 3 * 2 and not table.duplicated(sw.KEY_COLUMNS).any()


def test_tables_and_journals_without_the_column_read_as_batch_size_one(decoder, three_prompts, tmp_path):
    out = tmp_path / "old.csv"
    run_sweep(SweepConfig(out=out, suite=str(three_prompts), **SMALL), decoder, progress=False)
    old = read_results(out).drop(columns="batch_size")
    old.to_csv(out, index=False)
    assert list(read_results(out)["batch_size"]) == [1] * len(old)
    args = json.loads(sw.args_path(out).read_text())
    del args["batch_sizes"]  # a sidecar written before the axis existed
    sw.args_path(out).write_text(json.dumps(args))
    journal = journal_path(out)
    row = read_results(out).iloc[0].to_dict()
    del row["batch_size"]
    journal.write_text(json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}) + "\n")
    assert Journal(journal).read()[0]["batch_size"] == 1
    ran = []
    resumed = run_sweep(SweepConfig(out=out, suite=str(three_prompts), resume=True, **SMALL), decoder,
                        on_row=ran.append, progress=False)
    assert not ran and len(resumed) == 3 * 2  # nothing ran again: the old rows are batch size 1's


@pytest.mark.parametrize(("change", "message"), [
    (dict(batch_sizes=()), "--batch-sizes is empty"),
    (dict(batch_sizes=(0, 2)), "batch sizes must be >= 1"),
])
def test_bad_batch_sizes_are_refused(three_prompts, change, message):
    with pytest.raises(SpecdiffError, match=message):
        sw.check_sweep(SweepConfig(out=Path("x.csv"), suite=str(three_prompts), **SMALL, **change))


def test_the_ray_sweep_refuses_batch_sizes(three_prompts):
    from specdiff.evals.ray_sweep import run_ray_sweep

    with pytest.raises(SpecdiffError, match="run locally"):
        run_ray_sweep(SweepConfig(out=Path("x.csv"), suite=str(three_prompts), batch_sizes=(1, 4), **SMALL))


def test_the_cli_sweeps_batch_sizes(evals_app, tiny_dirs, three_prompts, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "s.csv"
    args = ["sweep", "--suite", str(three_prompts), "--proposers", "diffusion", "--block-sizes", "2", "--steps", "1",
            "--max-new-tokens", "4", "--batch-sizes", "1,3", "--drafter", str(tiny_dirs[1]),
            "--verifier", str(tiny_dirs[0]), "--out", str(out)]
    result = CliRunner().invoke(evals_app, args)
    assert result.exit_code == 0, result.output
    table = read_results(out)
    assert sorted(set(table["batch_size"])) == [1, 3] and len(table) == 3 * 2 * 2
    assert json.loads(sw.args_path(out).read_text())["batch_sizes"] == [1, 3]
