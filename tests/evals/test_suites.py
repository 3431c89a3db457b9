"""The shipped suites, user suite files, and rebuilding the suites byte for byte."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from specdiff.evals.suites import BUILTIN_SUITES, LICENCES_DIR, SUITES_DIR, build_suites, load_suite

from specdiff.errors import SpecdiffError


@pytest.mark.parametrize("name", BUILTIN_SUITES)
def test_each_shipped_suite_has_30_distinct_prompts(name):
    suite = load_suite(name)
    assert suite.name == name and len(suite) >= 30
    assert len({p.id for p in suite.prompts}) == len(suite)
    assert all(0 < len(p.prompt) <= 600 for p in suite.prompts)
    assert all(p.meta["source"] for p in suite.prompts)


def test_the_code_suites_come_from_held_out_files_only():
    from specdiff.training.corpus import heldout_files

    held_out = set(heldout_files())
    for name in ("code", "functions"):
        assert {p.meta["source"].split(":")[0] for p in load_suite(name).prompts} <= held_out


@pytest.mark.skipif(not LICENCES_DIR.is_dir(), reason="the prose suite is built from /usr/share/common-licenses")
def test_rebuilding_gives_the_shipped_files_byte_for_byte(tmp_path):
    for name, path in build_suites(tmp_path).items():
        assert path.read_bytes() == (SUITES_DIR / f"{name}.jsonl").read_bytes(), name


def test_user_suites_load_from_jsonl_csv_and_parquet(tmp_path):
    (tmp_path / "mine.jsonl").write_text(json.dumps({"id": 7, "prompt": "x = ", "tag": "t"}) + "\n\n")
    suite = load_suite(tmp_path / "mine.jsonl")
    assert suite.name == "mine" and suite.prompts[0].id == "7" and suite.prompts[0].meta == {"tag": "t"}
    pd.DataFrame({"prompt": ["a = 1\n", "b = 2\n"]}).to_csv(tmp_path / "t.csv", index=False)
    assert [p.id for p in load_suite(str(tmp_path / "t.csv")).prompts] == ["0", "1"]
    pd.DataFrame({"id": ["x", "y"], "prompt": ["p", "q"]}).to_parquet(tmp_path / "t.parquet")
    assert [p.prompt for p in load_suite(tmp_path / "t.parquet").prompts] == ["p", "q"]


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"id": 1}\n', ".jsonl", r'needs an object with "id" and "prompt"'),
        ("{not json\n", ".jsonl", "is not valid JSON"),
        ('{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n', ".jsonl", "appears twice"),
        ('{"id": 1, "prompt": ""}\n', ".jsonl", "is empty"),
        ("", ".jsonl", "holds no prompts"),
        ("text\nhello\n", ".csv", "has no 'prompt' column"),
        ("hello", ".txt", r"must end in \.jsonl, \.csv or \.parquet"),
    ],
)
def test_bad_suite_files_are_refused(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(SpecdiffError, match=message):
        load_suite(path)


def test_an_unknown_suite_names_the_shipped_ones():
    with pytest.raises(SpecdiffError, match="pass one of code, functions, prose"):
        load_suite("cod")
