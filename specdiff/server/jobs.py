"""From a checked request body to the engine's ``Job``, refusing what cannot run with an OpenAI-style error.

Every refusal is an ``ApiError`` (status, message, type, param, code) that ``specdiff.server.app``
answers as ``{"error": {"message", "type", "param", "code"}}``: the message says what is wrong and
what to send instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from specdiff.args import GenerateArgs
from specdiff.errors import SpecdiffError
from specdiff.server.engine import Job
from specdiff.server.schemas import BATCH_WIDE, UNSUPPORTED, ChatCompletionRequest, CompletionRequest

# OpenAI's defaults where a request leaves a field out.
DEFAULT_TEMPERATURE = 1.0


class ApiError(Exception):
    """A request the server refuses (or could not finish), as OpenAI reports it."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str | None = None, counted: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.counted = counted  # the engine has counted this outcome in the metrics already
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Served:
    """What the server serves: the decoder, its public name, the batch's arguments."""

    decoder: Any
    model_name: str
    args: GenerateArgs

    @property
    def max_positions(self) -> int | None:
        return self.decoder.verifier.max_positions


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """The first of pydantic's errors as one message naming the field (its dotted path)."""
    error = errors[0]
    loc = [str(p) for p in error.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    kind = error.get("type", "")
    if kind == "extra_forbidden" and loc and loc[-1] in BATCH_WIDE:
        return ApiError(400, f"{param} is not a request field: one draft call serves the whole batch, so it is "
                             f"the server's; start `specdiff serve` with {BATCH_WIDE[loc[-1]]}", param)
    if kind == "extra_forbidden":
        return ApiError(400, f"unknown field {param!r}; specdiff's own fields go under \"specdiff\" (speculative, "
                             "max_block_size, summary)", param)
    if kind == "missing":
        return ApiError(400, f"the field {param!r} is required", param)
    if kind == "json_invalid":
        return ApiError(400, f"the body is not valid JSON: {error.get('msg')}", None, "invalid_json")
    return ApiError(400, f"{param}: {error.get('msg')}" if param else str(error.get("msg")), param)


def check_unsupported(request: CompletionRequest | ChatCompletionRequest) -> None:
    for name, neutral in UNSUPPORTED.items():
        value = getattr(request, name, None)
        if value not in neutral:
            raise ApiError(400, f"{name}={value!r} is not supported by specdiff serve; leave it out", name,
                           "unsupported_parameter")


def check_model(served: Served, name: str) -> None:
    if name != served.model_name:
        raise ApiError(404, f"the model {name!r} does not exist; this server serves {served.model_name!r} "
                            "(GET /v1/models)", "model", "model_not_found", "not_found_error")


def prompt_ids(served: Served, request: CompletionRequest) -> list[int]:
    """One prompt's ids: a string or token ids, or a list holding one of them."""
    prompt = request.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) != 1:
            raise ApiError(400, f"prompt holds {len(prompt)} prompts; send one prompt per request "
                                "(concurrent requests share the batch anyway)", "prompt")
        prompt = prompt[0]
    if not prompt:
        raise ApiError(400, "the prompt is empty; send some text or token ids", "prompt")
    try:
        return served.decoder.encode_prompt(prompt)[0].tolist()
    except SpecdiffError as error:
        raise ApiError(400, str(error), "prompt") from None


def chat_ids(served: Served, request: ChatCompletionRequest) -> list[int]:
    try:
        return served.decoder.encode_prompt([m.plain() for m in request.messages])[0].tolist()
    except SpecdiffError as error:
        hint = " (start the server with --chat-template FILE, or --chat-template plain)" \
            if "chat template" in str(error) else ""
        raise ApiError(400, f"{error}{hint}", "messages") from None


def max_new_tokens(served: Served, requested: int | None, prompt_tokens: int, param: str, prompt_param: str) -> int:
    """The row's ``max_new_tokens``: the request's, else what the context leaves; both checked."""
    limit = served.max_positions
    if limit is not None and prompt_tokens >= limit:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's context is {limit} tokens "
                            "and the answer needs at least one; shorten the prompt", prompt_param,
                       "context_length_exceeded")
    if requested is None:
        return (limit - prompt_tokens) if limit is not None else 256
    if requested < 1:
        raise ApiError(400, f"{param} must be at least 1 (got {requested})", param)
    if limit is not None and prompt_tokens + requested > limit:
        raise ApiError(400, f"the prompt ({prompt_tokens} tokens) plus {param} ({requested}) exceeds this model's "
                            f"context of {limit} tokens; lower {param} to {limit - prompt_tokens} or less", param,
                       "context_length_exceeded")
    return requested


def build_job(served: Served, request: CompletionRequest | ChatCompletionRequest) -> Job:
    """The engine's job for a checked request, or an ``ApiError`` saying what to change."""
    check_model(served, request.model)
    check_unsupported(request)
    if request.stream_options is not None and not request.stream:
        raise ApiError(400, "stream_options is only allowed with stream=true", "stream_options")
    stops = request.stops()
    if any(not s for s in stops):
        raise ApiError(400, "stop strings must be non-empty", "stop")
    if isinstance(request, ChatCompletionRequest):
        ids, prompt_param = chat_ids(served, request), "messages"
        requested, param = request.max_completion_tokens, "max_completion_tokens"
        if request.max_tokens is not None:
            if requested is not None and requested != request.max_tokens:
                raise ApiError(400, "max_tokens and max_completion_tokens disagree; send one of them", "max_tokens")
            requested, param = request.max_tokens, "max_tokens"
    else:
        ids, prompt_param = prompt_ids(served, request), "prompt"
        requested, param = request.max_tokens, "max_tokens"
    new = max_new_tokens(served, requested, len(ids), param, prompt_param)
    temperature = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    top_p = None if request.top_p is None or request.top_p >= 1.0 else request.top_p
    overrides = {"max_new_tokens": new, "temperature": temperature, "top_p": top_p, "top_k": request.top_k or None,
                 "seed": request.seed}
    try:
        args = GenerateArgs.of(served.args, overrides)
    except SpecdiffError as error:
        raise ApiError(400, str(error)) from None
    return Job(ids, args, request.specdiff.draft_cap, stops)
