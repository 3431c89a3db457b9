"""``--pair NAME`` on every verb that takes models, ``--chat`` on generate; ``specdiff.pairs.Models``.

The smol pair's own runs through the CLI are in tests/verifiers/test_smol_cli.py (they need its
converted folder); here the pocket pair runs, and every refusal comes before any model loads.
"""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from specdiff.cli import app
from specdiff.errors import SpecdiffError
from specdiff.loaders import load_pocket
from specdiff.pairs import DEFAULT_PAIR, Models

runner = CliRunner()


def _flat(output: str) -> str:
    return " ".join(output.split())


@pytest.fixture(scope="module")
def pocket():
    return load_pocket()


def test_models_labels_and_checks():
    assert Models().labels == (DEFAULT_PAIR, DEFAULT_PAIR)
    assert Models(pair="smol").labels == ("smol", "smol")
    assert Models(drafter="d", verifier="v").labels == ("d", "v")
    with pytest.raises(SpecdiffError, match="not both"):
        Models(pair="pocket", verifier="v").check()
    with pytest.raises(SpecdiffError, match="unknown pair 'nope'.*pocket"):
        Models(pair="nope").check()
    with pytest.raises(SpecdiffError, match="name both --drafter and --verifier"):
        Models(drafter="d").check()


def test_generate_with_the_pocket_pair_named_is_the_library_output(pocket):
    result = runner.invoke(app, ["generate", "def add(a, b):", "--pair", "pocket", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    text = pocket.generate("def add(a, b):", max_new_tokens=12).text
    assert text.strip().splitlines()[0] in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "x", "--pair", "nope"], "unknown pair 'nope'"),
    (["generate", "x", "--pair", "pocket", "--verifier", "v", "--drafter", "d"], "either --pair or --drafter"),
    (["demo", "--pair", "nope"], "unknown pair 'nope'"),
    (["sweep", "--pair", "nope", "--out", "OUT.csv"], "unknown pair 'nope'"),
    (["generate", "x", "--dtype", "float31"], "unknown dtype 'float31'; pass one of auto, float32, bfloat16"),
    (["sweep", "--dtype", "half-ish", "--out", "OUT.csv"], "unknown dtype 'half-ish'"),
    (["bench", "--pair", "pocket", "--dtype", "int4", "--out", "OUT.csv"], "unknown dtype 'int4'"),
    (["bench", "--drafter", "d", "--verifier", "v", "--methods", "ar,assisted_ar_drafter", "--out", "OUT.csv"],
     "assisted_ar_drafter needs --ar-drafter when --drafter and --verifier are named"),
])
def test_a_bad_pair_is_one_line_before_any_model_loads(monkeypatch, tmp_path, args, message):
    monkeypatch.setattr("specdiff.pairs.load_pair", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr("specdiff.loaders.load_decoder", lambda *a, **k: pytest.fail("loaded a model"))
    args = [str(tmp_path / "o.csv") if a == "OUT.csv" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in _flat(result.output) and "Traceback" not in result.output


def test_chat_on_a_pair_without_a_chat_template_says_so():
    result = runner.invoke(app, ["generate", "hello", "--chat", "--pair", "pocket", "--max-new-tokens", "4"])
    assert result.exit_code == 2
    assert "chat template" in _flat(result.output) and "Traceback" not in result.output


def test_sweep_rows_carry_the_pair_name(tmp_path):
    out = tmp_path / "sweep.csv"
    result = runner.invoke(app, ["sweep", "--pair", "pocket", "--suite", "code", "--proposers", "ngram",
                                 "--block-sizes", "4", "--max-new-tokens", "4", "--limit", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["drafter"]) == {"pocket"} and set(table["verifier"]) == {"pocket"}
