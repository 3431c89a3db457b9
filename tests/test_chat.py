"""Chat prompts: message checks, template application, and the error for a tokenizer without one."""

from __future__ import annotations

import pytest
import torch

from specdiff.chat import _flat_ids, chat_ids, is_chat, validate_messages
from specdiff.errors import SpecdiffError

HELLO = [{"role": "user", "content": "hello"}]
TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_is_chat_tells_messages_from_text_and_ids():
    assert is_chat(HELLO) and is_chat(tuple(HELLO))
    assert not any(is_chat(p) for p in ("hello", [1, 2, 3], torch.tensor([[1, 2]]), [], None))


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ("hi", "non-empty list"),
        (["hi"], "chat message 0 is a str"),
        ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "chat message 1 has role 'robot'"),
        ([{"role": "user"}], r"chat message 0 \(user\) needs string 'content', got NoneType"),
        ([{"role": "user", "content": 3}], "got int"),
        ([{"role": "user", "contents": "a"}], r"unknown keys \['contents'\]"),
    ],
)
def test_bad_messages_name_the_item_and_the_fix(messages, message):
    with pytest.raises(SpecdiffError, match=message):
        validate_messages(messages)


def test_valid_messages_come_back_as_plain_dicts():
    given = ({"role": "system", "content": "be brief"}, {"role": "user", "content": ""})
    assert validate_messages(given) == [dict(m) for m in given]


@pytest.mark.parametrize("encoded", [[5, 6, 7], [[5, 6, 7]], {"input_ids": [5, 6, 7]}, torch.tensor([[5, 6, 7]])])
def test_every_return_type_of_apply_chat_template_flattens_to_ids(encoded):
    assert _flat_ids(encoded) == [5, 6, 7]


def test_a_tokenizer_without_a_template_is_a_clear_error(tiny_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs[0])
    assert not getattr(tokenizer, "chat_template", None)
    with pytest.raises(SpecdiffError, match="no chat template.*set tokenizer.chat_template"):
        chat_ids(tokenizer, HELLO)
    with pytest.raises(SpecdiffError, match="need a tokenizer"):
        chat_ids(None, HELLO)


def test_a_template_is_applied_with_the_generation_prompt(tiny_dirs):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs[0])
    tokenizer.chat_template = TEMPLATE
    ids = chat_ids(tokenizer, [{"role": "system", "content": "x = 1"}, *HELLO])
    assert all(isinstance(i, int) for i in ids)
    assert tokenizer.decode(ids) == "<system>x = 1\n<user>hello\n<assistant>"
