"""The stdlib instruction corpus, its held-out split, and the shipped chat suite."""

from __future__ import annotations

import pytest
from specdiff.evals.chat_prompts import (
    KINDS,
    Instruction,
    build_chat_suite,
    instruction_corpus,
    is_heldout_instruction,
    split_instructions,
)
from specdiff.evals.corpus import heldout_files, library_files
from specdiff.evals.suites import SUITES_DIR, Prompt, load_suite


@pytest.fixture(scope="module")
def some_instructions():
    """The instructions of ~100 stdlib files, held-out files among them."""
    files = library_files()[::10] + heldout_files()[:10]
    return instruction_corpus(files)


def test_the_split_is_deterministic_and_disjoint(some_instructions):
    train, held = split_instructions(some_instructions)
    assert (train, held) == split_instructions(list(some_instructions))
    assert train and held and len(train) + len(held) == len(some_instructions)
    assert not {i.text for i in train} & {i.text for i in held}
    assert not {i.topic for i in train} & {i.topic for i in held}, "a topic lies on both sides"
    held_files = set(heldout_files())
    assert all(is_heldout_instruction(i) for i in some_instructions if i.file in held_files)
    assert {i.kind for i in some_instructions} == set(KINDS)


def test_instructions_are_user_messages_about_their_topic(some_instructions):
    for instruction in some_instructions:
        assert 0 < len(instruction.text) <= 600 and instruction.kind in KINDS
        if instruction.kind in ("explain", "module", "tests"):
            assert f"`{instruction.topic}" in instruction.text


def test_the_chat_suite_loads_by_name_and_becomes_messages():
    suite = load_suite("chat")
    assert len(suite) >= 30 and all(p.meta["chat"] is True for p in suite.prompts)
    assert suite.prompts[0].decoder_input == [{"role": "user", "content": suite.prompts[0].prompt}]
    assert Prompt("x", "def f():\n").decoder_input == "def f():\n"


@pytest.mark.slow
def test_the_chat_suite_is_held_out_and_rebuilds_byte_for_byte(tmp_path):
    suite = load_suite("chat")
    shipped = [Instruction(p.meta["kind"], p.meta["topic"], p.prompt, p.meta["source"]) for p in suite.prompts]
    assert all(is_heldout_instruction(i) for i in shipped)
    corpus = instruction_corpus()
    train, _ = split_instructions(corpus)
    assert not {i.text for i in shipped} & {i.text for i in train}
    assert not {i.topic for i in shipped} & {i.topic for i in train}
    assert build_chat_suite(tmp_path, corpus).read_bytes() == (SUITES_DIR / "chat.jsonl").read_bytes()
