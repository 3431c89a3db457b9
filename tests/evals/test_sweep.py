"""The sweep: run order, the journal, resume after an interruption, and arguments refused up front."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import Interrupt
from helpers import stop_after as _stop_after
from specdiff.evals import sweep as sw
from specdiff.evals.suites import load_suite
from specdiff.evals.sweep import Journal, SweepConfig, journal_path, plan, read_results, run_sweep

from specdiff.errors import SpecdiffError

SMALL = dict(proposers=("diffusion",), block_sizes=(2, 4), denoising_steps=(1,), max_new_tokens=6)


def _stable(frame: pd.DataFrame) -> pd.DataFrame:
    """The table without timing columns, in key order: what two runs must agree on."""
    return frame.drop(columns=sw.TIMING_COLUMNS).sort_values(sw.KEY_COLUMNS, ignore_index=True)




def test_plan_runs_the_baseline_first_for_each_prompt_and_setting(mini_suite):
    config = SweepConfig(out=Path("x.csv"), suite=str(mini_suite), temperatures=(0.0, 0.7), seeds=(1,), **SMALL)
    tasks = plan(config, load_suite(mini_suite))
    assert len(tasks) == 2 * 2 * (1 + 2)
    assert [(t.method, t.block_size) for t in tasks[:3]] == [("ar", 0), ("specdiff", 2), ("specdiff", 4)]
    assert {t.temperature for t in tasks[3:6]} == {0.7}
    both = plan(SweepConfig(out=Path("x.csv"), suite=str(mini_suite), **dict(SMALL, proposers=("diffusion", "ngram"),
                                                                               denoising_steps=(1, 2))),
                load_suite(mini_suite))
    # per prompt: the baseline, diffusion at 2 blocks x 2 steps, the n-gram lookup at 2 blocks (no steps)
    assert [(t.proposer, t.block_size, t.denoising_steps) for t in both[:9]] == [
        ("plain", 0, 0), ("diffusion", 2, 1), ("diffusion", 2, 2), ("diffusion", 4, 1), ("diffusion", 4, 2),
        ("ngram", 2, 0), ("ngram", 4, 0), ("plain", 0, 0), ("diffusion", 2, 1)]


def test_resume_after_an_interruption_matches_an_uninterrupted_run(decoder, mini_suite, tmp_path):
    whole = run_sweep(
        SweepConfig(out=tmp_path / "whole.parquet", suite=str(mini_suite), **SMALL), decoder, progress=False
    )
    assert len(whole) == 2 * 3 and not journal_path(tmp_path / "whole.parquet").exists()

    out = tmp_path / "cut.csv"
    with pytest.raises(Interrupt):
        run_sweep(
            SweepConfig(out=out, suite=str(mini_suite), **SMALL),
            decoder,
            on_row=_stop_after(4),
            progress=False,
        )
    assert len(Journal(journal_path(out)).read()) == 4 and not out.exists()
    partial = read_results(journal_path(out))  # `specdiff report` reads a running sweep's journal too
    assert len(partial) == 4 and isinstance(partial["position_judged"].iloc[1], list)

    resumed_rows = []
    resumed = run_sweep(
        SweepConfig(out=out, suite=str(mini_suite), resume=True, **SMALL),
        decoder,
        on_row=resumed_rows.append,
        progress=False,
    )
    assert len(resumed_rows) == 2  # only what was missing ran
    assert not resumed.duplicated(sw.KEY_COLUMNS).any()
    pd.testing.assert_frame_equal(_stable(read_results(out)), _stable(whole), check_dtype=False)
    # Greedy: every configuration reproduces the verifier alone, token for token.
    assert whole.groupby("prompt_id")["output_hash"].nunique().eq(1).all()


def test_rows_record_every_setting_and_the_position_counts(decoder, mini_suite, tmp_path):
    config = SweepConfig(
        out=tmp_path / "s.csv",
        suite=str(mini_suite),
        temperatures=(0.7,),
        seeds=(3,),
        top_k=20,
        top_p=0.9,
        limit=1,
        proposers=("diffusion",),
        block_sizes=(3,),
        denoising_steps=(2,),
        max_new_tokens=5,
    )
    run_sweep(config, decoder, progress=False)
    table = read_results(config.out)
    assert list(table.columns) == sw.ROW_COLUMNS
    spec = table[table["method"] == "specdiff"].iloc[0]
    assert (spec["temperature"], spec["top_k"], spec["top_p"], spec["seed"]) == (0.7, 20, 0.9, 3)
    assert len(spec["position_judged"]) == 3 and spec["position_judged"][0] >= spec["position_accepted"][0]
    assert spec["rounds"] >= 1 and spec["total_s"] >= spec["draft_s"] + spec["verify_s"]
    assert table[table["method"] == "ar"].iloc[0]["new_tokens"] == 5


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_resumes_without_loss(decoder, tiny_dirs, mini_suite, tmp_path):
    verifier_dir, drafter_dir = tiny_dirs
    out = tmp_path / "k.csv"
    settings = dict(suite=str(mini_suite), drafter=str(drafter_dir), verifier=str(verifier_dir), **SMALL)
    script = (
        "import time; from pathlib import Path; from specdiff.evals.sweep import SweepConfig, run_sweep\n"
        f"run_sweep(SweepConfig(out=Path({str(out)!r}), **{settings!r}), progress=False,\n"
        "          on_row=lambda row: time.sleep(30) if row['method'] == 'specdiff' else None)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    journal = journal_path(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 2):
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)  # the second row is durable; the child sleeps before the third
    child.wait()
    kept = Journal(journal).read()
    assert len(kept) == 2 and not out.exists()
    table = run_sweep(SweepConfig(out=out, resume=True, **settings), decoder, progress=False)
    assert len(table) == 6 and not table.duplicated(sw.KEY_COLUMNS).any()
    first_two = {(r["prompt_id"], r["method"], r["block_size"]) for r in kept}
    assert first_two == {("a", "ar", 0), ("a", "specdiff", 2)}


# -- refused before any model loads ---------------------------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("specdiff.loaders.load_decoder", refuse)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(suite="no-such-suite"), "unknown suite"),
        (dict(block_sizes=()), "--block-sizes is empty"),
        (dict(denoising_steps=()), "--steps is empty"),
        (dict(temperatures=()), "--temperatures is empty"),
        (dict(seeds=()), "--seeds is empty"),
        (dict(block_sizes=(4, 17)), "exceeds the drafter's canvas of 16"),
        (dict(block_sizes=(0,)), "block sizes must be >= 1"),
        (dict(denoising_steps=(-1,)), "--steps must be >= 1"),
        (dict(denoising_steps=(0,)), "use the n-gram proposer"),
        (dict(proposers=("beam",)), "unknown proposer 'beam'"),
        (dict(temperatures=(-1.0,)), "temperature must be >= 0"),
        (dict(top_p=0.0), "top_p must be in (0, 1]"),
        (dict(max_new_tokens=0), "--max-new-tokens must be >= 1"),
        (dict(out=Path("results.txt")), "must end in .parquet or .csv"),
        (dict(drafter="somewhere"), "name both --drafter and --verifier"),
    ],
)
def test_bad_arguments_are_refused_before_loading(no_loading, tiny_dirs, tmp_path, change, message):
    verifier_dir, drafter_dir = tiny_dirs
    config = dict(out=tmp_path / "r.csv", suite="code", drafter=str(drafter_dir), verifier=str(verifier_dir))
    if "drafter" in change:
        config.pop("verifier")
    with pytest.raises(SpecdiffError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_sweep(SweepConfig(**{**config, **change}), progress=False)


def test_an_existing_output_needs_resume(no_loading, tiny_dirs, tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("")
    with pytest.raises(SpecdiffError, match="already exists; pass --resume"):
        run_sweep(SweepConfig(out=out, drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0])), progress=False)


def test_prompts_too_long_for_the_verifier_are_refused_before_generating(decoder, tmp_path):
    suite = tmp_path / "long.jsonl"
    suite.write_text(json.dumps({"id": "long", "prompt": "x = 1\n" * 400}) + "\n")
    config = SweepConfig(out=tmp_path / "r.csv", suite=str(suite), proposers=("diffusion",), block_sizes=(2,),
                         max_new_tokens=900)
    with pytest.raises(SpecdiffError, match="exceed the verifier's 1024 positions"):
        run_sweep(config, decoder, progress=False)
    assert not journal_path(tmp_path / "r.csv").exists()


def test_a_proposer_the_decoder_lacks_is_refused_before_generating(decoder, mini_suite, tmp_path):
    config = SweepConfig(out=tmp_path / "r.csv", suite=str(mini_suite), block_sizes=(2,), proposers=("ngram",))
    with pytest.raises(SpecdiffError, match="this decoder has no ngram proposer"):
        run_sweep(config, decoder, progress=False)
    assert not journal_path(tmp_path / "r.csv").exists()
