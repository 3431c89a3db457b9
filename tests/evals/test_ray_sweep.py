"""The sweep on Ray: the local sweep's rows from 2 actors, a worker killed mid-run, a driver killed with SIGKILL.

One local Ray (2 CPUs) serves the whole module; each test loads the tiny pair in its actors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from specdiff.evals import sweep as sw
from specdiff.evals.sweep import Journal, SweepConfig, journal_path, plan, run_sweep

from specdiff.errors import SpecdiffError

ray = pytest.importorskip("ray")
from specdiff.evals.ray_sweep import RaySettings, run_ray_sweep  # noqa: E402

pytestmark = pytest.mark.slow
# 2 prompts x (the baseline + 3 blocks x 2 steps) = 14 tasks: enough that a killed worker holds some.
GRID = dict(proposers=("diffusion",), block_sizes=(2, 3, 4), denoising_steps=(1, 2), max_new_tokens=6)
SAME = ["new_tokens", "accepted", "proposed", "rounds", "output_hash"]  # what two runs of one key must agree on


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def settings(tiny_dirs, mini_suite):
    verifier_dir, drafter_dir = tiny_dirs
    return dict(suite=str(mini_suite), drafter=str(drafter_dir), verifier=str(verifier_dir), threads=1, **GRID)


def _by_key(frame):
    return {sw.row_key(r): tuple(r[c] for c in SAME) for r in frame.to_dict("records")}


@pytest.fixture
def local_table(decoder, settings, tmp_path):
    return run_sweep(SweepConfig(out=tmp_path / "local.csv", **settings), decoder, progress=False)


def test_two_ray_workers_give_the_local_sweeps_rows(ray_session, settings, local_table, tmp_path):
    out = tmp_path / "ray.parquet"
    table = run_ray_sweep(SweepConfig(out=out, **settings), RaySettings(workers=2), progress=False)
    assert len(table) == 14 and not table.duplicated(sw.KEY_COLUMNS).any()
    assert _by_key(table) == _by_key(local_table)
    assert not journal_path(out).exists() and len(sw.read_results(out)) == 14


def test_a_worker_killed_mid_run_has_its_tasks_run_again_and_every_row_once(
    ray_session, settings, local_table, tmp_path
):
    pools, rows = [], []

    def kill_first_worker(row):
        rows.append(row)
        if len(rows) == 1:
            os.kill(pools[0].pids[0], signal.SIGKILL)  # a real death: the process, not a polite ray.kill

    out = tmp_path / "killed.csv"
    table = run_ray_sweep(SweepConfig(out=out, **settings), RaySettings(workers=2), on_row=kill_first_worker,
                          on_pool=pools.append, progress=False)
    assert pools[0].replaced >= 1  # the death was seen and the actor replaced
    keys = [sw.row_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 14  # the journal got every row exactly once
    assert _by_key(table) == _by_key(local_table)


def test_a_driver_killed_with_sigkill_resumes_without_loss(ray_session, settings, tmp_path):
    out = tmp_path / "driver.csv"
    # A second driver on this module's cluster: its actors die with it, and no Ray is left behind.
    script = (
        "import time; from pathlib import Path\n"
        "from specdiff.evals.sweep import SweepConfig\n"
        "from specdiff.evals.ray_sweep import RaySettings, run_ray_sweep\n"
        f"run_ray_sweep(SweepConfig(out=Path({str(out)!r}), **{settings!r}),\n"
        f"              RaySettings(address={ray_session!r}, workers=1), progress=False,\n"
        "              on_row=lambda row: time.sleep(60) if row['method'] == 'specdiff' else None)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    journal = journal_path(out)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 2):
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)  # two rows are durable; the driver sleeps before writing a third
    child.wait()
    kept = Journal(journal).read()
    assert len(kept) == 2 and not out.exists()

    resumed = []
    table = run_ray_sweep(SweepConfig(out=out, resume=True, **settings), RaySettings(workers=2),
                          on_row=resumed.append, progress=False)
    assert len(resumed) == 12 and len(table) == 14 and not table.duplicated(sw.KEY_COLUMNS).any()
    config = SweepConfig(out=out, resume=True, **settings)
    suite = sw.check_sweep(config)
    assert {sw.row_key(r) for r in table.to_dict("records")} == {sw.task_key(t, config, suite)
                                                                   for t in plan(config, suite)}


def test_more_workers_than_the_cluster_holds_are_refused(ray_session, settings, tmp_path):
    with pytest.raises(SpecdiffError, match="room for 2 workers"):
        run_ray_sweep(SweepConfig(out=tmp_path / "r.csv", **settings), RaySettings(workers=3), progress=False)


def test_a_failing_worker_load_is_reported_not_retried(ray_session, settings, tmp_path):
    # Prompts plus 5000 new tokens overflow the tiny verifier: each actor refuses it while loading.
    config = SweepConfig(out=tmp_path / "r.csv", **dict(settings, max_new_tokens=5000))
    with pytest.raises(SpecdiffError, match="exceed the verifier's"):
        run_ray_sweep(config, RaySettings(workers=1), progress=False)
    assert not Path(journal_path(config.out)).exists() or not Journal(journal_path(config.out)).read()
    deadline = time.monotonic() + 30  # the failed actors are killed, not left holding the cluster's CPUs
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < 2:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2


def test_the_sweep_command_runs_on_ray(ray_session, evals_app, settings, tmp_path):
    from typer.testing import CliRunner

    out = tmp_path / "cli.csv"
    args = ["sweep", "--suite", settings["suite"], "--drafter", settings["drafter"], "--verifier", settings["verifier"],
            "--proposers", "diffusion", "--block-sizes", "2", "--steps", "1", "--max-new-tokens", "4",
            "--threads", "1", "--ray", "local", "--workers", "2", "--out", str(out)]
    result = CliRunner().invoke(evals_app, args)
    assert result.exit_code == 0, result.output
    assert "4 rows in" in result.output and len(sw.read_results(out)) == 4
