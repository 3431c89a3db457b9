"""How the CLI takes its prompt: from standard input with -, never empty; top-k 0 means none."""

from __future__ import annotations

from typer.testing import CliRunner

from specdiff.cli import app

runner = CliRunner()


def _models(tiny_dirs):
    return ["--drafter", str(tiny_dirs[1]), "--verifier", str(tiny_dirs[0]), "--max-new-tokens", "3"]


def test_a_dash_reads_the_prompt_from_standard_input(tiny_dirs):
    result = runner.invoke(app, ["generate", "-", *_models(tiny_dirs)], input="class Stack:\n")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("class Stack:\n")


def test_an_empty_prompt_is_refused(tiny_dirs):
    for args, stdin in ((["generate", ""], None), (["generate", "-"], "  \n"), (["demo", "--prompt", ""], None)):
        result = runner.invoke(app, [*args, *(_models(tiny_dirs) if args[0] == "generate" else [])], input=stdin)
        assert result.exit_code == 2 and "the prompt is empty" in result.output, result.output


def test_top_k_zero_means_no_truncation(tiny_dirs):
    result = runner.invoke(app, ["generate", "x", *_models(tiny_dirs), "--top-k", "0", "--temperature", "0.7",
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
