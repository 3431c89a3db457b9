"""Request bodies of ``/v1/completions`` and ``/v1/chat/completions``, as OpenAI's, checked strictly.

Every model forbids unknown fields, so a field specdiff does not know is a 400 naming it rather than
a silent ignore. Fields OpenAI defines that would change the output and that specdiff does not
implement (``n`` > 1, ``logprobs``, penalties, ``logit_bias``, ``echo``, tools, ...) are accepted
only at their no-op values (``UNSUPPORTED``); ``user`` is accepted and ignored (it never changes
the output). specdiff's own knobs sit in one nested object, ``specdiff`` (``SpecdiffFields``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The value at which each unsupported OpenAI field changes nothing (None: absent).
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "n": (None, 1), "best_of": (None, 1), "logprobs": (None, False, 0), "top_logprobs": (None, 0),
    "echo": (None, False), "presence_penalty": (None, 0, 0.0), "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}), "suffix": (None, ""), "response_format": (None, {"type": "text"}),
    "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []), "function_call": (None, "none"),
    "parallel_tool_calls": (None, False, True),
}
# Knobs one draft call shares across the whole batch: server flags, not request fields.
BATCH_WIDE = {"block_size": "--block-size", "denoising_steps": "--steps", "steps": "--steps",
              "proposer": "--proposer", "controller": "--block-size/--steps/--proposer"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class SpecdiffFields(_Strict):
    """specdiff's own request fields, under ``"specdiff": {...}`` (``extra_body`` in the openai client).

    Attributes:
        speculative: False decodes this request without drafting (a plain verifier step a round,
            inside the batch's forward); the output is the same, only the speed differs.
        max_block_size: the most draft tokens a round may propose for this request (the batch
            policy picks the block; this caps this request's share of it).
        summary: add a ``specdiff`` object to the response (rounds, acceptance, draft/verify seconds).
    """

    speculative: bool = True
    max_block_size: int | None = Field(None, ge=1)
    summary: bool = False

    @property
    def draft_cap(self) -> int | None:
        return 0 if not self.speculative else self.max_block_size


class _Common(_Strict):
    """What both endpoints share: sampling, stopping, streaming."""

    model: str
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    specdiff: SpecdiffFields = Field(default_factory=SpecdiffFields)
    # OpenAI fields accepted at their no-op values only (see UNSUPPORTED).
    n: int | None = None
    best_of: int | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    echo: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(stops)


class CompletionRequest(_Common):
    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = 16  # OpenAI's default for completions
    suffix: str | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def plain(self) -> dict[str, str]:
        """As ``specdiff.chat`` takes it: the developer role is the system's, text parts joined."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None  # OpenAI's default: what the context leaves
    max_completion_tokens: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
