"""Incremental detokenisation: multi-byte characters are never split, stop strings never half-sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specdiff.loaders import pocket_folder
from specdiff.server.text import REPLACEMENT, TextStream, first_stop, partial_stop_length, safe_length


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pocket_folder("verifier"))


def pushed(tokenizer, ids: list[int], sizes: list[int], stops: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    stream, deltas, at = TextStream(tokenizer, stops), [], 0
    for size in sizes:
        if stream.final is not None or at >= len(ids):
            break
        deltas.append(stream.push(ids[at : at + size]))
        at += size
    deltas.append(stream.finish())
    return deltas, stream


def test_multibyte_characters_wait_until_complete(tokenizer):
    text = "é€😀 ok ü"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text.split()), "the pocket tokenizer splits these characters into byte tokens"
    assert REPLACEMENT in tokenizer.decode(ids[:1])
    deltas, _ = pushed(tokenizer, ids, [1] * len(ids))
    assert all(REPLACEMENT not in d for d in deltas)
    assert "".join(deltas) == tokenizer.decode(ids)


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet="aé€😀 \n:()xyzü", min_size=1, max_size=24), sizes=st.lists(
    st.integers(1, 4), min_size=1, max_size=30), cut=st.integers(0, 8))
def test_deltas_concatenate_to_the_final_text_before_the_stop(tokenizer, text, sizes, cut):
    ids = tokenizer.encode(text, add_special_tokens=False)
    full = tokenizer.decode(ids)
    stop = full[cut : cut + 2] if len(full) > cut + 1 else "\x00never"
    deltas, stream = pushed(tokenizer, ids, sizes + [len(ids)], (stop,))
    expected = full[: full.index(stop)] if stop in full else full
    assert "".join(deltas) == expected == stream.final
    assert all(REPLACEMENT not in d for d in deltas[:-1])
    if stop in full:
        assert stream.stopped_at is not None and stop in tokenizer.decode(ids[: stream.stopped_at])
        assert stop not in tokenizer.decode(ids[: stream.stopped_at - 1])


def test_stop_helpers():
    assert first_stop("abc</s>def###", ("###", "</s>")) == 3 and first_stop("abc", ("x",)) is None
    assert partial_stop_length("hello </", ("</s>",)) == 2 and partial_stop_length("hello", ("</s>",)) == 0
    assert safe_length("ab" + REPLACEMENT, ()) == 2 and safe_length("ab<", ("<|end|>",)) == 2
