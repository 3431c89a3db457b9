"""OpenAI's response and chunk shapes for both endpoints (``text_completion``, ``chat.completion``,
``chat.completion.chunk``), and the server-sent-events framing."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from specdiff.server.engine import Finished


@dataclass(frozen=True)
class Shape:
    """One response's identity: chat or completions, its id, creation time and model name."""

    chat: bool
    model: str
    include_usage: bool = False
    summary: bool = False
    id: str = field(default="")
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex)

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    # -- whole responses -----------------------------------------------------------------------------

    def response(self, text: str, end: Finished) -> dict[str, Any]:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": end.reason}
            body = self._head("chat.completion") | {"choices": [choice]}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": end.reason}
            body = self._head("text_completion") | {"choices": [choice]}
        body["usage"] = usage(end)
        if self.summary:
            body["specdiff"] = end.summary
        return body

    # -- stream chunks ---------------------------------------------------------------------------------

    def chunk(self, text: str | None, reason: str | None = None, role: bool = False) -> dict[str, Any]:
        """One choice's chunk: new text (or the chat role's opening), and the finish reason on the last."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None and not role:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            body = self._head("chat.completion.chunk") | {"choices": [choice]}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": reason}
            body = self._head("text_completion") | {"choices": [choice]}
        if self.include_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, end: Finished) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return self._head(obj) | {"choices": [], "usage": usage(end)}

    def last_chunks(self, end: Finished) -> list[dict[str, Any]]:
        """The finish-reason chunk (with the summary when asked), then the usage chunk when asked."""
        last = self.chunk(None if self.chat else "", end.reason)
        if self.summary:
            last["specdiff"] = end.summary
        return [last, self.usage_chunk(end)] if self.include_usage else [last]


def usage(end: Finished) -> dict[str, int]:
    return {"prompt_tokens": end.prompt_tokens, "completion_tokens": end.completion_tokens,
            "total_tokens": end.prompt_tokens + end.completion_tokens}


def sse(body: dict[str, Any] | str) -> str:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n"
