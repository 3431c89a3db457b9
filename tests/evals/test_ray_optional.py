"""Ray is optional: nothing imports it until a Ray sweep is asked for, and --workers alone is refused."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner


def test_the_sweep_modules_and_the_cli_do_not_import_ray():
    script = ("import sys, specdiff.evals.sweep, specdiff.evals.ray_sweep, specdiff.cli\n"
              "assert 'ray' not in sys.modules, 'ray was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_workers_without_ray_is_refused(evals_app, mini_suite, tmp_path):
    result = CliRunner().invoke(evals_app, ["sweep", "--suite", str(mini_suite), "--workers", "2",
                                            "--out", str(tmp_path / "r.csv")])
    assert result.exit_code != 0 and "--workers sizes a Ray sweep; add --ray" in result.output
    assert not (tmp_path / "r.csv").exists()
