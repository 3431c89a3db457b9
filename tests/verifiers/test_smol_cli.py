"""The smol pair through the CLI: ``--pair smol --chat`` on generate, and the demo's chat question."""

from __future__ import annotations

from typer.testing import CliRunner

from specdiff.cli import app

runner = CliRunner()


def test_generate_answers_a_chat_message_with_the_smol_pair(smol_folder, smol_f32):
    from specdiff.pairs import smol_decoder

    question = "What is the capital of France?"
    result = runner.invoke(app, ["generate", question, "--chat", "--pair", "smol", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    expected = smol_decoder(smol_f32).generate([{"role": "user", "content": question}], max_new_tokens=12)
    assert "Paris" in expected.text
    flat = " ".join(result.output.split())
    assert f"user: {question}" in flat and " ".join(expected.text.split()) in flat


def test_the_demo_on_the_smol_pair_asks_a_question_and_matches_the_verifier(smol_folder):
    result = runner.invoke(app, ["demo", "--pair", "smol", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "user: Explain in a few sentences what a Python generator is" in flat
    assert "output identical" in flat and "loop share of this answer" in flat
