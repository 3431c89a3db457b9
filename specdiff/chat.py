"""Chat prompts: a list of messages turned into token ids by the tokenizer's chat template.

A chat prompt is ``[{"role": "user", "content": "..."}]`` (roles ``system``, ``user``, ``assistant``).
``chat_ids`` applies the template with the generation prompt (the assistant's turn opened), so the
model's continuation is its answer. Pure functions: the decoder calls them from ``encode_prompt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from specdiff.errors import SpecdiffError

ROLES = ("system", "user", "assistant")
MESSAGE_KEYS = frozenset({"role", "content"})


def is_chat(prompt: Any) -> bool:
    """Whether ``prompt`` is meant as chat messages: a non-empty list or tuple of mappings.

    Strings, token-id lists and tensors are not; ``validate_messages`` judges the messages' form.
    """
    return isinstance(prompt, list | tuple) and len(prompt) > 0 and all(isinstance(m, Mapping) for m in prompt)


def validate_messages(messages: Any) -> list[dict[str, str]]:
    """The messages as plain dicts, or a ``SpecdiffError`` naming the first bad one and the fix."""
    example = '[{"role": "user", "content": "..."}]'
    if not isinstance(messages, list | tuple) or not messages:
        raise SpecdiffError(f"chat messages must be a non-empty list like {example}, got {type(messages).__name__}")
    checked = []
    for index, message in enumerate(messages):
        where = f"chat message {index}"
        if not isinstance(message, Mapping):
            raise SpecdiffError(f"{where} is a {type(message).__name__}, not a dict like {example}")
        if extra := sorted(set(message) - MESSAGE_KEYS):
            raise SpecdiffError(f"{where} has unknown keys {extra}; a message has only 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise SpecdiffError(f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise SpecdiffError(f"{where} ({role}) needs string 'content', got {type(content).__name__}")
        checked.append({"role": role, "content": content})
    return checked


def _flat_ids(encoded: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from tokenize=True; older releases a list (or [[...]]).
    if isinstance(encoded, Mapping) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    if hasattr(encoded, "tolist"):
        encoded = encoded.tolist()
    if isinstance(encoded, Sequence) and len(encoded) == 1 and isinstance(encoded[0], Sequence):
        encoded = encoded[0]
    return [int(i) for i in encoded]


def chat_ids(tokenizer: Any, messages: Any) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, the assistant's turn opened."""
    checked = validate_messages(messages)
    if tokenizer is None:
        raise SpecdiffError("chat messages need a tokenizer with a chat template; attach one or pass token ids")
    if not getattr(tokenizer, "chat_template", None):
        raise SpecdiffError(
            "the tokenizer has no chat template, so chat messages cannot be encoded; pass a plain string "
            "prompt, use an instruct model whose tokenizer has one, or set tokenizer.chat_template"
        )
    ids = _flat_ids(tokenizer.apply_chat_template(checked, add_generation_prompt=True, tokenize=True))
    if not ids:
        raise SpecdiffError("the chat template produced no tokens for these messages")
    return ids
