"""Prompts as token ids: a string, chat messages, a list of ids, or a ``[1, T]`` tensor.

Every kind is told apart up front and refused with a message naming the fix, so that a list of
prompts, a ``bytes`` object or a chat template's dictionary never turns into nonsense ids.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from specdiff.errors import SpecdiffError

CHAT_ROLES = ("system", "user", "assistant")


def is_chat(prompt: Any) -> bool:
    """Whether ``prompt`` is a list of chat messages (dicts with ``role`` and ``content``)."""
    return isinstance(prompt, Sequence) and not isinstance(prompt, (str, bytes)) and len(prompt) > 0 and all(
        isinstance(m, Mapping) for m in prompt)


def check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The messages as plain dicts, or a clear error naming the first bad one."""
    checked = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES or not isinstance(content, str):
            raise SpecdiffError(
                f"chat message {i} must be {{'role': one of {', '.join(CHAT_ROLES)}, 'content': a string}}; "
                f"got {dict(message)!r}"
            )
        checked.append({"role": role, "content": content})
    return checked


def chat_token_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """The tokenizer's chat template over ``messages``, with the generation prompt, as ids."""
    messages = check_messages(messages)
    if tokenizer is None:
        raise SpecdiffError("a chat prompt needs a tokenizer; attach one or pass token ids")
    if not getattr(tokenizer, "chat_template", None):
        raise SpecdiffError(
            "this tokenizer has no chat template, so chat messages cannot be rendered; pass the prompt "
            "as plain text, or use a chat model's tokenizer"
        )
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The template writes the special tokens itself (BOS and the like), so none are added again.
    return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]


def prompt_token_ids(prompt: Any, tokenizer: Any) -> list[int]:
    """One prompt's token ids (unchecked against a vocabulary)."""
    if isinstance(prompt, str):
        if tokenizer is None:
            raise SpecdiffError("a string prompt needs a tokenizer; attach one or pass token ids")
        return [int(t) for t in tokenizer(prompt)["input_ids"]]
    if isinstance(prompt, (bytes, bytearray)):
        raise SpecdiffError("the prompt is bytes; decode it to a str first (prompt.decode('utf-8'))")
    if isinstance(prompt, torch.Tensor):
        if prompt.dim() > 2 or (prompt.dim() == 2 and prompt.shape[0] != 1):
            raise SpecdiffError(
                f"a tensor prompt must be [T] or [1, T] (got {list(prompt.shape)}); for several prompts "
                "use generate_batch"
            )
        if prompt.dtype.is_floating_point or prompt.dtype == torch.bool:
            raise SpecdiffError(f"a tensor prompt must hold integer token ids (got {prompt.dtype})")
        return prompt.reshape(-1).tolist()
    if isinstance(prompt, Mapping):
        raise SpecdiffError(
            "the prompt is a dict; pass a string, a list of token ids, or chat messages as a list of "
            "{'role': ..., 'content': ...} dicts (a tokenizer's output: pass its ['input_ids'])"
        )
    if is_chat(prompt):
        return chat_token_ids(tokenizer, prompt)
    if isinstance(prompt, Sequence):
        if any(isinstance(t, str) for t in prompt):
            raise SpecdiffError(
                "the prompt is a list of strings; generate takes one prompt (pass a single string), and "
                "generate_batch several"
            )
        bad = next((t for t in prompt if not isinstance(t, numbers.Integral) or isinstance(t, bool)), None)
        if bad is not None:
            raise SpecdiffError(f"a list prompt must hold integer token ids (found {bad!r})")
        return [int(t) for t in prompt]
    raise SpecdiffError(f"unsupported prompt type {type(prompt).__name__}; pass a string, token ids or chat messages")
