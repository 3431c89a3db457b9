"""A seed repeats a run from the command line, and --steps past the drafter's cap is one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from specdiff.cli import app


@pytest.mark.slow
def test_a_seeded_sampled_run_repeats_in_fresh_processes():
    """The pocket pair under its default (adaptive) controller, as a user runs it, twice."""
    command = [sys.executable, "-m", "specdiff", "generate", "import json\n", "--temperature", "0.7", "--seed", "1",
               "--max-new-tokens", "48"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    texts = []
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        texts.append(done.stdout.split("speculative decoding")[0])  # the text, before the timed summary
    assert texts[0] == texts[1] and len(texts[0]) > len("import json\n")


def test_steps_past_the_drafters_cap_are_one_line(tiny_dirs):
    verifier_dir, drafter_dir = tiny_dirs
    result = CliRunner().invoke(app, ["generate", "x", "--drafter", str(drafter_dir), "--verifier", str(verifier_dir),
                                      "--steps", "10000", "--max-new-tokens", "8"])
    assert result.exit_code == 2
    assert "denoising_steps 10000 is more than the drafter's" in result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
