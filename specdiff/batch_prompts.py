"""Batch prompts as token ids: one kind per batch (strings, token-id lists or chat messages), each
encoded as ``SpeculativeDecoder.encode_prompt`` does, errors naming the row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from specdiff.chat import is_chat
from specdiff.errors import SpecdiffError

Prompt = str | Sequence[int] | torch.Tensor | Sequence[dict]


def prompt_kind(prompt: Any) -> str:
    """``"text"``, ``"token ids"`` or ``"chat"`` (a list of ``{"role", "content"}`` messages)."""
    if isinstance(prompt, str):
        return "text"
    if isinstance(prompt, torch.Tensor) or (isinstance(prompt, Sequence) and not prompt):
        return "token ids"
    if is_chat(prompt):
        return "chat"
    if isinstance(prompt, Sequence) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return "token ids"
    raise SpecdiffError(
        f"a prompt must be a string, a list of token ids or a list of chat messages, got {prompt!r:.80}")


def encode_prompts(decoder: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Every prompt as token ids, refusing an empty batch, an empty prompt and mixed kinds."""
    if isinstance(prompts, (str, torch.Tensor)) or not isinstance(prompts, Sequence):
        raise SpecdiffError("prompts must be a list of prompts; wrap a single prompt in a list: [prompt]")
    if not prompts:
        raise SpecdiffError("the batch is empty; pass at least one prompt")
    if all(isinstance(t, int) for t in prompts) or is_chat(prompts):
        raise SpecdiffError("prompts is a single prompt; a batch is a list of prompts: wrap it, [prompt]")
    kinds = [prompt_kind(p) for p in prompts]
    if len(set(kinds)) > 1:
        first = {k: kinds.index(k) for k in dict.fromkeys(kinds)}
        raise SpecdiffError(
            "a batch mixes prompt kinds (" + ", ".join(f"{k} at index {i}" for k, i in first.items()) + "); "
            "pass one kind for the whole batch (chat messages for all rows or for none)"
        )
    return [encode_one(decoder, p, i) for i, p in enumerate(prompts)]


def encode_one(decoder: Any, prompt: Prompt, index: int) -> list[int]:
    """One prompt as token ids (``SpeculativeDecoder.encode_prompt``), its errors naming the row."""
    try:
        return decoder.encode_prompt(prompt)[0].tolist()
    except SpecdiffError as error:
        raise SpecdiffError(f"prompt {index}: {error}") from None
