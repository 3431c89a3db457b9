"""`specdiff drafter train` at the CLI: a smoke run exports, bad options fail in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from specdiff.cli import app
from specdiff.cli_drafter import DrafterTrainOptions
from specdiff.errors import SpecdiffError
from tests.training.test_drafter_recipe import save_verifier

runner = CliRunner()


def test_smoke_run_exports_with_the_command_in_the_card(tmp_path):
    verifier = save_verifier(tmp_path / "verifier")
    out = tmp_path / "run"
    result = runner.invoke(app, ["drafter", "train", "--verifier", str(verifier), "--out", str(out), "--smoke"])
    assert result.exit_code == 0, result.output
    assert f"exported to {out / 'export'}" in result.output
    assert (out / "export" / "drafter" / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["threads"] == 1


@pytest.mark.parametrize("args, message", [
    ([], "name the verifier with --verifier PATH_OR_ID or --pair smol"),
    (["--verifier", "x", "--pair", "smol"], "exactly one of them"),
    (["--pair", "pocket"], "--pair smol is the one to train for"),
    (["--pair", "smoll"], "unknown pair 'smoll'"),
])
def test_bad_verifier_choice_fails_in_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["drafter", "train", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_budget_scales_every_stage():
    cfg = DrafterTrainOptions(out=".", verifier="v", budget_minutes=34).config()
    assert cfg.budget_minutes == pytest.approx(34)
    assert cfg.scaled(cfg.drafter_train).budget_minutes == pytest.approx(11)  # half of the 68-minute recipe's 22
    with pytest.raises(SpecdiffError, match="must be positive"):
        DrafterTrainOptions(out=".", verifier="v", budget_minutes=0).config()
