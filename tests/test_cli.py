"""The CLI, through Typer's runner: output, summary, and one-line errors with exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from specdiff.args import GenerateArgs
from specdiff.cli import GenerateOptions, app, run_generate
from specdiff.pairs import Models

runner = CliRunner()


def test_help_reads_well():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "generate" in result.output and "Lossless speculative decoding" in result.output


def test_generate_prints_text_and_summary(tiny_dirs):
    verifier_dir, drafter_dir = tiny_dirs
    result = runner.invoke(app, ["generate", "def f(x):", "--drafter", str(drafter_dir), "--verifier",
                                 str(verifier_dir), "--max-new-tokens", "10", "--block-size", "4",
                                 "--steps", "2", "--seed", "0"])
    assert result.exit_code == 0, result.output
    for label in ("tokens/s", "rounds", "mean acceptance length", "acceptance rate", "round time split"):
        assert label in result.output


def test_run_generate_matches_the_library(tiny_dirs, decoder):
    verifier_dir, drafter_dir = tiny_dirs
    args = GenerateArgs(max_new_tokens=8, block_size=3, denoising_steps=1, seed=0)
    options = GenerateOptions("x = 1", args, Models(drafter=str(drafter_dir), verifier=str(verifier_dir)))
    via_cli = run_generate(options)
    direct = decoder.generate("x = 1", max_new_tokens=8, block_size=3, denoising_steps=1, seed=0)
    assert via_cli.token_ids == direct.token_ids


@pytest.mark.parametrize("extra,message", [
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--top-p", "2", "--temperature", "1"], "top_p must be in"),
    (["--max-new-tokens", "-3"], "max_new_tokens must be a whole number >= 0"),
    (["--block-size", "0"], "block_size must be >= 1"),
    (["--block-size", "17"], "largest block 16"),
    (["--steps", "0"], "proposer='ngram'"),
    (["--proposer", "beam"], "unknown proposer 'beam'"),
])
def test_bad_options_are_one_line_exit_2(tiny_dirs, extra, message):
    verifier_dir, drafter_dir = tiny_dirs
    result = runner.invoke(app, ["generate", "x", "--drafter", str(drafter_dir), "--verifier",
                                 str(verifier_dir), *extra])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_missing_model_folder(tmp_path, tiny_dirs):
    result = runner.invoke(app, ["generate", "x", "--drafter", str(tmp_path / "nope"), "--verifier",
                                 str(tiny_dirs[0])])
    assert result.exit_code == 2 and "model folder not found" in result.output


def test_only_one_model_named(tiny_dirs):
    result = runner.invoke(app, ["generate", "x", "--verifier", str(tiny_dirs[0])])
    assert result.exit_code == 2 and "name both --drafter and --verifier" in result.output


def test_tiny_build(tmp_path):
    result = runner.invoke(app, ["tiny", "build", str(tmp_path / "pair")])
    assert result.exit_code == 0
    assert (tmp_path / "pair" / "verifier" / "config.json").is_file()
    assert (tmp_path / "pair" / "drafter" / "tokenizer.json").is_file()
