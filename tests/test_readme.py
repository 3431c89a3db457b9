"""The README is a user's document whose every command runs (``benchmarks/readme_commands.py``)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEST_COMMAND = "bash setup.sh && .venv/bin/python -m pytest -q"


def _script():
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "benchmarks" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_keeps_the_two_commands_and_ci_runs_the_test_one_verbatim():
    commands = [c.text for c in _script().readme_commands(README)]
    assert commands[:2] == ["bash setup.sh && .venv/bin/specdiff demo", TEST_COMMAND]
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text()


def test_the_readme_is_short_and_tells_no_history():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for word in ("this session", "session 5", "earlier run", "before the last", "specdiff/evals/suites"):
        assert word not in text.lower()
    for path in re.findall(r"`((?:docs|benchmarks|evals|specdiff)/[\w/.*-]+)`", text):
        assert list(ROOT.glob(path)), f"the README names {path}, which does not exist"


def test_quick_mode_shrinks_only_the_long_arguments():
    quick = _script().quick
    assert quick("bash setup.sh && .venv/bin/specdiff demo") == ".venv/bin/specdiff demo --max-new-tokens 8"
    assert quick("specdiff bench --limit 2 --max-new-tokens 64 --out runs/b.csv") == (
        "specdiff bench --limit 1 --max-new-tokens 8 --out runs/b.csv")


@pytest.mark.slow
def test_every_readme_command_runs_on_a_fresh_copy():
    # The demo and the smoke recipe have tests of their own (tests/test_threads.py,
    # tests/training/test_pocket.py); leaving them out keeps this under a minute on 2 cores.
    outcomes = _script().run_all(exact=False, skip=("specdiff demo", "pocket train"))
    failed = [(text, tail) for text, code, _, tail in outcomes if code != 0]
    assert not failed, failed
    assert len(outcomes) >= 10
