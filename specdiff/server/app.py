"""The FastAPI app: OpenAI's ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/models``, with
``/health`` and ``/metrics``, over one ``Engine`` (``specdiff.server.engine``).

``create_app(decoder, ServerConfig(...))`` builds an app with a metrics registry and an engine of its
own; the engine thread starts and stops with the app's lifespan. A streamed answer is one
server-sent event per round that gave the request text, then the finish chunk, the usage chunk (when
``stream_options.include_usage``) and ``data: [DONE]``. A client that goes away mid-answer has its
row dropped at the next round boundary. While draining (``app.state.draining``, set on SIGTERM by
``specdiff.server.run``) new requests get a 503 and ``/health`` reports it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from specdiff.args import GenerateArgs
from specdiff.server.engine import Delta, Engine, Failed, Finished, Ticket
from specdiff.server.jobs import ApiError, Served, build_job, validation_error
from specdiff.server.metrics import ServerMetrics
from specdiff.server.responses import Shape, sse
from specdiff.server.schemas import ChatCompletionRequest, CompletionRequest

# A chat template for models without one (``--chat-template plain``): role tags, one turn a line.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
POLL_S = 0.25  # how often a waiting handler checks that its client is still there


@dataclass(frozen=True)
class ServerConfig:
    """How ``specdiff serve`` serves.

    Attributes:
        model_name: the name clients send as ``model`` (``GET /v1/models`` lists it).
        max_batch_size: the most requests in the running batch; the rest queue.
        args: the batch's ``GenerateArgs``: ``block_size``, ``denoising_steps`` and ``proposer`` fix the
            batch policy (unset: the adaptive batch policy); the rest is set per request.
        chat_template: a Jinja chat template, a file holding one, or ``plain`` (None: the tokenizer's).
        host, port: where to listen (127.0.0.1 by default: nothing outside the machine).
        drain_timeout_s: after SIGTERM, the longest wait for in-flight requests before exiting.
    """

    model_name: str = "specdiff"
    max_batch_size: int = 16
    args: GenerateArgs = GenerateArgs()
    chat_template: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    drain_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        from specdiff.errors import SpecdiffError

        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise SpecdiffError(f"max_batch_size must be a whole number >= 1 (got {self.max_batch_size!r})")
        if not 0 < self.port < 65536:
            raise SpecdiffError(f"port must be in 1..65535 (got {self.port})")
        if not self.model_name:
            raise SpecdiffError("the served model name is empty; pass --served-model-name NAME")


def resolve_template(template: str) -> str:
    if template == "plain":
        return PLAIN_CHAT_TEMPLATE
    path = Path(template).expanduser()
    if "{" not in template and path.is_file():
        return path.read_text()
    return template


def create_app(decoder: Any, config: ServerConfig = ServerConfig()) -> FastAPI:
    """The app serving ``decoder`` (a ``SpeculativeDecoder`` whose verifier has ``batch_session()``)."""
    if config.chat_template is not None and decoder.tokenizer is not None:
        decoder.tokenizer.chat_template = resolve_template(config.chat_template)
    metrics = ServerMetrics(config.model_name)
    engine = Engine(decoder, config.args, metrics, config.max_batch_size)
    served = Served(decoder, config.model_name, config.args)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="specdiff", lifespan=lifespan)
    app.state.engine, app.state.metrics, app.state.served, app.state.draining = engine, metrics, served, False

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        if error.status < 500 and not error.counted:
            metrics.finished("rejected")
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return await api_error(request, validation_error(list(error.errors())))

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse(ApiError(500, f"{type(error).__name__}: {error}").body(), status_code=500)

    def admit(request: Request) -> None:
        if app.state.draining:
            raise ApiError(503, "the server is shutting down; retry against another instance", None,
                           "server_draining", "service_unavailable")

    @app.get("/health")
    async def health() -> JSONResponse:
        if app.state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if not engine.alive:
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": served.model_name, "object": "model", "created": int(time.time()), "owned_by": "specdiff",
                "max_model_len": served.max_positions}
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        admit(request)
        return await answer(request, body, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        admit(request)
        return await answer(request, body, chat=True)

    async def answer(request: Request, body: CompletionRequest | ChatCompletionRequest, chat: bool) -> Response:
        job = build_job(served, body)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        shape = Shape(chat, served.model_name, include_usage, body.specdiff.summary)
        ticket = engine.submit(job)
        try:
            first = await next_event(ticket, request)
        except BaseException:
            engine.cancel(ticket)
            raise
        if first is None:  # the client left while its request waited
            engine.cancel(ticket)
            return Response(status_code=499)
        if isinstance(first, Failed):
            raise ApiError(first.status, first.message, counted=True)
        if body.stream:
            return StreamingResponse(stream(ticket, shape, first), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await whole(request, ticket, shape, first)

    async def whole(request: Request, ticket: Ticket, shape: Shape, event: Any) -> Response:
        parts: list[str] = []
        try:
            while isinstance(event, Delta):
                parts.append(event.text)
                event = await next_event(ticket, request)
        finally:
            engine.cancel(ticket)  # a no-op once finished
        if event is None:
            return Response(status_code=499)
        if isinstance(event, Failed):
            raise ApiError(event.status, event.message, counted=True)
        return JSONResponse(shape.response("".join(parts), event))

    async def stream(ticket: Ticket, shape: Shape, event: Any) -> AsyncIterator[str]:
        try:
            if shape.chat:
                yield sse(shape.chunk(None, role=True))
            while True:
                if isinstance(event, Delta):
                    yield sse(shape.chunk(event.text))
                elif isinstance(event, Finished):
                    for chunk in shape.last_chunks(event):
                        yield sse(chunk)
                    break
                else:
                    yield sse(ApiError(event.status, event.message).body())
                    break
                event = await ticket.queue.get()
            yield sse("[DONE]")
        finally:
            engine.cancel(ticket)  # the client went away mid-stream: free its row

    return app


async def next_event(ticket: Ticket, request: Request) -> Any:
    """The ticket's next event, or None once the client has disconnected.

    The connection is checked after every event too, not only when none came for ``POLL_S``: while
    rounds keep a row's events flowing, a timeout alone would never fire and a departed client's
    row would run to the end."""
    while True:
        try:
            event = await asyncio.wait_for(ticket.queue.get(), timeout=POLL_S)
        except TimeoutError:
            event = None
        if await request.is_disconnected():
            return None
        if event is not None:
            return event
