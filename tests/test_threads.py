"""What every CLI verb sets before it works: one torch thread unless told otherwise, passive OpenMP."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from specdiff.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def two_threads_before(monkeypatch):
    """Start each test from torch's default on this machine (a thread per core), restore 1 after."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("SPECDIFF_THREADS", raising=False)
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


def _generate(tiny_dirs, *extra):
    verifier_dir, drafter_dir = tiny_dirs
    return runner.invoke(app, ["generate", "def f(x):", "--drafter", str(drafter_dir), "--verifier",
                               str(verifier_dir), "--max-new-tokens", "3", *extra])


def test_generate_runs_on_one_thread_with_passive_openmp_by_default(tiny_dirs):
    import os

    result = _generate(tiny_dirs)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_threads_option_and_environment_override_the_default(tiny_dirs, monkeypatch):
    assert _generate(tiny_dirs, "--threads", "2").exit_code == 0
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    monkeypatch.setenv("SPECDIFF_THREADS", "2")
    assert _generate(tiny_dirs).exit_code == 0
    assert torch.get_num_threads() == 2


def test_a_chosen_wait_policy_is_kept(tiny_dirs, monkeypatch):
    import os

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert _generate(tiny_dirs).exit_code == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_bad_thread_count_is_one_line(tiny_dirs):
    result = _generate(tiny_dirs, "--threads", "0")
    assert result.exit_code == 2 and "--threads must be a whole number >= 1" in result.output


def test_demo_sets_one_thread():
    result = runner.invoke(app, ["demo", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1


def test_sweep_and_bench_default_to_one_thread(tiny_dirs, tmp_path):
    import json

    suite = tmp_path / "one.jsonl"
    suite.write_text(json.dumps({"id": "a", "prompt": "def add(a, b):\n    return"}) + "\n")
    models = ["--drafter", str(tiny_dirs[1]), "--verifier", str(tiny_dirs[0])]
    sweep = ["sweep", "--suite", str(suite), "--proposers", "ngram", "--block-sizes", "2", "--max-new-tokens", "3",
             "--out", str(tmp_path / "s.csv"), *models]
    assert runner.invoke(app, sweep).exit_code == 0
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    bench = ["bench", "--suite", str(suite), "--methods", "ar,heuristic", "--grid-block-sizes", "2",
             "--max-new-tokens", "3", "--out", str(tmp_path / "b.csv"), *models]
    result = runner.invoke(app, bench)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1


def test_importing_the_cli_leaves_torch_unloaded():
    """The wait policy is read when torch loads OpenMP: the CLI must get there first."""
    code = "import sys, specdiff.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_fastest_dtype_is_the_faster_one_timed_again():
    """Timed independently (another shape, more repeats), the dtype ``FASTEST`` resolves to is not the
    slower one; explicit names pass through."""
    import time

    import torch

    from specdiff.cpu import FASTEST, resolve_dtype

    def seconds(dtype):
        a, w = torch.randn(32, 512).to(dtype), torch.randn(512, 1024).to(dtype)
        a @ w
        best = float("inf")
        for _ in range(10):
            t0 = time.perf_counter()
            a @ w
            best = min(best, time.perf_counter() - t0)
        return best

    chosen = resolve_dtype(FASTEST)
    other = {"float32": "bfloat16", "bfloat16": "float32"}[chosen]
    assert seconds(getattr(torch, chosen)) < seconds(getattr(torch, other))
    assert resolve_dtype("bfloat16") == "bfloat16" and resolve_dtype("float32") == "float32"


def test_a_bfloat16_run_warns_where_this_cpu_emulates_it(capsys):
    from specdiff.cpu import bfloat16_speedup
    from specdiff.pairs import Models

    Models(pair="pocket").load("bfloat16")
    warned = "no native bfloat16" in capsys.readouterr().err
    assert warned == (bfloat16_speedup() < 1.0)
