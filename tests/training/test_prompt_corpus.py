"""The drafter recipe's prompt corpus: a deterministic held-out split that keeps the chat suite out."""

from __future__ import annotations

import pytest
from specdiff.evals.corpus import is_heldout

from specdiff.errors import SpecdiffError
from specdiff.training.prompt_corpus import (
    CorpusPrompt,
    CorpusSizes,
    build_corpus,
    chat_suite_messages,
    check_excludes_chat_suite,
    code_window,
)

# A slice of the stdlib keeps the parse short; the split itself is decided per file and topic.
SIZES = CorpusSizes(train_chat=100, train_code=40, heldout_chat=10, heldout_code=10, max_files=150)


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(SIZES)


def test_split_is_deterministic(corpus):
    assert build_corpus(SIZES) == corpus
    assert build_corpus(CorpusSizes(**{**SIZES.__dict__, "seed": 1})) != corpus


def test_sizes_and_kinds(corpus):
    for split, chat, code in (("train", SIZES.train_chat, SIZES.train_code),
                              ("heldout", SIZES.heldout_chat, SIZES.heldout_code)):
        kinds = [p.kind for p in corpus[split]]
        assert kinds.count("chat") == chat and kinds.count("code") == code


def test_training_side_excludes_the_chat_suite_and_heldout_files(corpus):
    from specdiff.evals.chat_prompts import Instruction, is_heldout_instruction
    from specdiff.evals.suites import load_suite

    suite = chat_suite_messages()
    assert len(suite) >= 30
    assert not {p.text for p in corpus["train"]} & suite
    # Every suite instruction is on the held-out side of the split the recipe trains by.
    for p in load_suite("chat").prompts:
        assert is_heldout_instruction(Instruction(p.meta["kind"], p.meta["topic"], p.prompt, p.meta["source"]))
    assert not any(is_heldout(p.source) for p in corpus["train"] if p.kind == "code")
    assert all(is_heldout(p.source) for p in corpus["heldout"] if p.kind == "code")


def test_a_leaked_suite_prompt_is_refused():
    leaked = CorpusPrompt("chat", sorted(chat_suite_messages())[0], "x.py:1")
    with pytest.raises(SpecdiffError, match="chat suite"):
        check_excludes_chat_suite([leaked])


def test_code_window_takes_whole_lines():
    import random

    source = "".join(f"line {i}\n" for i in range(50))
    window = code_window(source, random.Random(0), (5, 5), 1000)
    assert window.count("\n") == 5 and window in source and window.startswith("line ")
    assert code_window("a\nb\n", random.Random(0), (5, 5), 1000) is None


def test_chat_prompt_goes_through_the_chat_template():
    assert CorpusPrompt("chat", "hi", "x").decoder_input == [{"role": "user", "content": "hi"}]
    assert CorpusPrompt("code", "def f():", "x").decoder_input == "def f():"
