"""Prompts as token ids: a string, chat messages, a list of ids, or a ``[1, T]`` tensor.

Every kind is told apart up front and refused with a message naming the fix, so that a list of
prompts, a ``bytes`` object or a chat template's dictionary never turns into nonsense ids.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from specdiff.chat import chat_ids, is_chat
from specdiff.errors import SpecdiffError


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
        return chat_ids(tokenizer, prompt)
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
