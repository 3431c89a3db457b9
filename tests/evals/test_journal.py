"""Data integrity of a sweep's table: a real interrupted journal, a real corrupted one, a resume with
other arguments, a read-only report, the bench's existing output, and output folders."""

from __future__ import annotations

import hashlib
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
from specdiff.evals.bench import BenchConfig, check_bench
from specdiff.evals.sweep import Journal, SweepConfig, journal_path, read_results, run_sweep
from specdiff.evals.table import args_path
from typer.testing import CliRunner

from specdiff.errors import SpecdiffError

SMALL = dict(proposers=("diffusion",), block_sizes=(2, 4), denoising_steps=(1,), max_new_tokens=6)
runner = CliRunner()




def _config(out, suite, tiny_dirs, **change):
    settings = dict(out=out, suite=str(suite), drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0]), **SMALL)
    return SweepConfig(**{**settings, **change})


def _interrupted(decoder, suite, tiny_dirs, out, rows=4):
    """A real sweep stopped after ``rows`` durable rows: its journal as a kill leaves it."""
    with pytest.raises(Interrupt):
        run_sweep(_config(out, suite, tiny_dirs), decoder, on_row=_stop_after(rows), progress=False)
    journal = journal_path(out)
    assert len(Journal(journal).read()) == rows and not out.exists()
    return journal


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def no_loading(monkeypatch):
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("a model was loaded"))


def test_report_reads_a_journal_with_a_torn_last_line_without_writing_it(decoder, mini_suite, tiny_dirs, tmp_path,
                                                                          evals_app):
    journal = _interrupted(decoder, mini_suite, tiny_dirs, tmp_path / "r.csv")
    with open(journal, "ab") as f:  # a kill in the middle of writing the fifth row
        f.write(journal.read_bytes().splitlines(keepends=True)[0][:40])
    before = _digest(journal)
    shown = runner.invoke(evals_app, ["report", str(journal)])
    assert shown.exit_code == 0, shown.output
    assert _digest(journal) == before  # a read-only verb wrote nothing
    assert len(read_results(journal)) == 4 and _digest(journal) == before


def test_a_resume_cuts_the_torn_line_and_finishes_the_table(decoder, mini_suite, tiny_dirs, tmp_path):
    out = tmp_path / "r.csv"
    journal = _interrupted(decoder, mini_suite, tiny_dirs, out)
    with open(journal, "ab") as f:
        f.write(journal.read_bytes().splitlines(keepends=True)[1][:55])
    ran = []
    table = run_sweep(_config(out, mini_suite, tiny_dirs, resume=True), decoder, on_row=ran.append, progress=False)
    assert len(ran) == 2 and len(table) == 6 and not table.duplicated(sw.KEY_COLUMNS).any()


def test_a_corrupt_line_in_the_middle_keeps_every_valid_row_after_it(decoder, mini_suite, tiny_dirs, tmp_path,
                                                                     capsys):
    out = tmp_path / "c.parquet"
    journal = _interrupted(decoder, mini_suite, tiny_dirs, out)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1][:30] + b"\x00\xff garbage" + lines[1][60:]  # a damaged block on disk
    journal.write_bytes(b"".join(lines))
    assert len(Journal(journal).read()) == 3  # rows 1, 3 and 4 survive
    ran = []
    table = run_sweep(_config(out, mini_suite, tiny_dirs, resume=True), decoder, on_row=ran.append, progress=False)
    assert "line(s) 2 are not rows" in capsys.readouterr().err
    assert len(ran) == 3  # the damaged row and the two never run; rows 3 and 4 were kept
    assert len(table) == 6 and not table.duplicated(sw.KEY_COLUMNS).any()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (dict(block_sizes=(2, 4, 8)), "--block-sizes 2,4 there, 2,4,8 now"),
        (dict(max_new_tokens=7), "--max-new-tokens 6 there, 7 now"),
        (dict(denoising_steps=(1, 2)), "--steps 1 there, 1,2 now"),
        (dict(temperatures=(0.7,)), "--temperatures 0 there, 0.7 now"),
        (dict(top_k=5), "--top-k 0 there, 5 now"),
        (dict(proposers=("diffusion", "ngram")), "--proposers diffusion there, diffusion,ngram now"),
    ],
)
def test_a_resume_with_other_arguments_is_refused_before_loading(decoder, mini_suite, tiny_dirs, tmp_path,
                                                                 monkeypatch, change, named):
    out = tmp_path / "a.csv"
    run_sweep(_config(out, mini_suite, tiny_dirs, limit=1), decoder, progress=False)
    before = _digest(out)
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(SpecdiffError, match="written with other arguments") as caught:
        run_sweep(_config(out, mini_suite, tiny_dirs, limit=1, resume=True, **change), progress=False)
    assert named in str(caught.value) and _digest(out) == before


def test_a_resume_on_another_suite_is_refused(decoder, mini_suite, tiny_dirs, tmp_path):
    out = tmp_path / "s.csv"
    _interrupted(decoder, mini_suite, tiny_dirs, out, rows=2)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "a", "prompt": "import os\n"}) + "\n")
    with pytest.raises(SpecdiffError, match="--suite mini there, other now"):
        run_sweep(_config(out, other, tiny_dirs, resume=True), decoder, progress=False)
    edited = tmp_path / "mini.jsonl"  # the same suite name, one prompt's text changed
    edited.write_text(mini_suite.read_text().replace("return", "return a +"))
    with pytest.raises(SpecdiffError, match=r"the suite's prompt texts differ for 1 prompt\(s\), e.g. 'a'"):
        run_sweep(_config(out, edited, tiny_dirs, resume=True), decoder, progress=False)


def test_a_longer_limit_resumes_the_same_table(decoder, mini_suite, tiny_dirs, tmp_path):
    out = tmp_path / "l.csv"
    run_sweep(_config(out, mini_suite, tiny_dirs, limit=1), decoder, progress=False)
    table = run_sweep(_config(out, mini_suite, tiny_dirs, resume=True), decoder, progress=False)
    assert len(table) == 6 and json.loads(args_path(out).read_text())["block_sizes"] == [2, 4]


def test_a_table_without_its_arguments_record_cannot_be_resumed(decoder, mini_suite, tiny_dirs, tmp_path):
    out = tmp_path / "old.csv"
    run_sweep(_config(out, mini_suite, tiny_dirs, limit=1), decoder, progress=False)
    args_path(out).unlink()
    with pytest.raises(SpecdiffError, match="no record of the arguments"):
        run_sweep(_config(out, mini_suite, tiny_dirs, resume=True), decoder, progress=False)


def test_output_folders_are_created_or_refused_before_loading(no_loading, mini_suite, tiny_dirs, tmp_path):
    nested = tmp_path / "runs" / "deep" / "code.csv"
    sw.check_sweep(_config(nested, mini_suite, tiny_dirs))
    assert nested.parent.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpecdiffError, match="is a file, not a folder"):
        run_sweep(_config(blocker / "x.csv", mini_suite, tiny_dirs), progress=False)
    bench = BenchConfig(out=tmp_path / "b" / "c" / "bench.csv", suite=str(mini_suite), drafter=str(tiny_dirs[1]),
                        verifier=str(tiny_dirs[0]), ar_drafter=str(tiny_dirs[0]), grid_block_sizes=(2,))
    check_bench(bench)
    assert bench.out.parent.is_dir()


def test_bench_refuses_an_existing_out_unless_told_to_overwrite(no_loading, mini_suite, tiny_dirs, tmp_path):
    out = tmp_path / "bench.csv"
    config = dict(suite=str(mini_suite), drafter=str(tiny_dirs[1]), verifier=str(tiny_dirs[0]),
                  ar_drafter=str(tiny_dirs[0]), grid_block_sizes=(2,))
    for existing in (out, tmp_path / "bench.runs.csv"):
        existing.write_text("method\nar\n")
        with pytest.raises(SpecdiffError, match="already exists; choose another --out, or pass --overwrite"):
            check_bench(BenchConfig(out=out, **config))
        check_bench(BenchConfig(out=out, overwrite=True, **config))
        existing.unlink()


def test_the_report_links_plots_relative_to_the_markdown_file(decoder, mini_suite, tiny_dirs, tmp_path, evals_app):
    out = tmp_path / "t.csv"
    run_sweep(_config(out, mini_suite, tiny_dirs, limit=1), decoder, progress=False)
    markdown = tmp_path / "docs" / "report.md"
    shown = runner.invoke(evals_app, ["report", str(out), "--plots", str(tmp_path / "plots"),
                                      "--markdown", str(markdown)])
    assert shown.exit_code == 0, shown.output
    links = [line[line.index("(") + 1 : -1] for line in markdown.read_text().splitlines() if line.startswith("![")]
    assert len(links) == 4 and all((markdown.parent / link).is_file() for link in links)


@pytest.mark.slow
def test_ctrl_c_exits_130_naming_resume(tiny_dirs, mini_suite, tmp_path):
    out = tmp_path / "i.csv"
    # Eight seeds: far more work after the first row than a busy machine's delay before the signal,
    # so the signal always lands mid-run (with fewer rows the sweep could finish first and exit 0).
    command = [sys.executable, "-m", "specdiff", "sweep", "--suite", str(mini_suite), "--proposers", "diffusion",
               "--block-sizes", "2,4", "--steps", "1,2", "--seeds", "0,1,2,3,4,5,6,7", "--max-new-tokens", "40",
               "--drafter", str(tiny_dirs[1]), "--verifier", str(tiny_dirs[0]), "--out", str(out)]
    # PYTHONFAULTHANDLER: a child that has not exited two minutes after the signal (seen once, on a
    # machine running three jobs) is sent SIGABRT and prints every thread's stack, so the failure
    # shows where it hung.
    # The child starts with SIGINT's default disposition: a test run started as a background job of
    # a shell without job control inherits SIGINT ignored, and the sweep would then run to the end.
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal_path(out).exists() and journal_path(out).read_text()):
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    try:
        _, err = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)
        _, err = child.communicate(timeout=30)
        raise AssertionError(f"the sweep did not exit after SIGINT; its threads:\n{err[-6000:]}") from None
    assert child.returncode == 130, err[-3000:]
    assert "--resume" in err and str(journal_path(out)) in err.replace("\n", "")
    assert len(pd.DataFrame(Journal(journal_path(out)).read())) >= 1
