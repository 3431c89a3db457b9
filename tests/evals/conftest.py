"""Fixtures for the evals tests: a two-prompt suite and a tiny AR drafter (the tiny pair: tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
import typer

MINI_PROMPTS = [
    {"id": "a", "prompt": "def add(a, b):\n    return"},
    {"id": "b", "prompt": "class Round:\n    def __init__(self):\n"},
]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads spin against other jobs (10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mini_suite(tmp_path):
    """A two-prompt suite file: each generation of the tiny pair stays well under a second."""
    path = tmp_path / "mini.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in MINI_PROMPTS))
    return path


@pytest.fixture
def three_prompts(tmp_path):
    """Three prompts of different lengths: at B = 2, a full group and a group of one."""
    prompts = ["def add(a, b):\n    return", "class Round:\n    def __init__(self):\n", "x = ["]
    path = tmp_path / "three.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    return path


@pytest.fixture(scope="session")
def ar_drafter():
    """A second tiny Gemma 4 with the verifier's vocabulary: the assistant for assisted generation."""
    from specdiff.training.tiny import tiny_verifier

    return tiny_verifier(seed=5)


@pytest.fixture(scope="session")
def evals_app():
    """The three commands on a local app, as specdiff.cli registers them."""
    from specdiff.cli_evals import bench, report, sweep

    app = typer.Typer()
    for command in (sweep, report, bench):
        app.command()(command)
    return app
