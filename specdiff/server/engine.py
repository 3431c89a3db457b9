"""The engine: one thread owns a ``BatchRun`` and runs its rounds; requests join and leave between them.

Request handlers (on the event loop) ``submit`` a ``Job`` and read ``Event``s from their ``Ticket``'s
asyncio queue; the engine thread puts events there with ``loop.call_soon_threadsafe``. The thread
loops: take cancellations (a client gone, a stop string met), admit queued jobs while the batch has
fewer than ``max_batch_size`` rows (the rest wait: continuous batching at round granularity), run
one round, and hand each row its new text. torch releases the GIL inside its kernels, so the event
loop keeps serving while a round runs.

Failures stay local: a job refused by the batch (``SpecdiffError``) fails alone with a 400; an
error while handing one row its tokens fails that request (500) and drops its row; an error inside
a round fails the rows of that batch (500) and the engine starts a fresh ``BatchRun``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from specdiff.args import GenerateArgs
from specdiff.batch import BatchRun
from specdiff.errors import SpecdiffError
from specdiff.metrics import GenerationResult, RoundStats
from specdiff.server.metrics import ServerMetrics
from specdiff.server.text import TextStream

log = logging.getLogger("specdiff.server")


@dataclass(frozen=True)
class Job:
    """One request as the engine runs it: prompt ids, the row's arguments, its draft cap and stops."""

    prompt_ids: list[int]
    args: GenerateArgs
    draft_cap: int | None = None
    stops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delta:
    """New text for the request (``tokens``: how many tokens the round gave it)."""

    text: str
    tokens: int


@dataclass(frozen=True)
class Finished:
    """The request ended: ``reason`` is OpenAI's ``finish_reason`` (``stop`` or ``length``)."""

    reason: str
    prompt_tokens: int
    completion_tokens: int
    summary: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    status: int
    message: str


Event = Delta | Finished | Failed


def summarize(stats: tuple[RoundStats, ...] | list[RoundStats]) -> dict[str, Any]:
    """A request's speculative summary from its rounds (seconds are its batch rounds', shared by the rows)."""
    rounds = len(stats)
    committed = sum(s.committed for s in stats)
    return {
        "rounds": rounds,
        "drafts": sum(s.proposed > 0 for s in stats),
        "draft_tokens": sum(s.proposed for s in stats),
        "accepted_tokens": sum(s.accepted for s in stats),
        "acceptance_length": committed / rounds if rounds else 0.0,
        "draft_s": sum(s.draft_s for s in stats),
        "verify_s": sum(s.verify_s for s in stats),
        "proposers": {p: sum(s.proposer.value == p for s in stats) for p in sorted({s.proposer.value for s in stats})},
    }


@dataclass(eq=False)
class Ticket:
    """A submitted job: its event queue (on the handler's loop) and the engine's bookkeeping."""

    job: Job
    loop: asyncio.AbstractEventLoop
    text: TextStream
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrived: float = field(default_factory=time.perf_counter)
    row_id: int | None = None
    last_tokens_at: float | None = None
    done: bool = False

    def emit(self, event: Event) -> None:
        # RuntimeError: the handler's loop has closed, so nobody is listening.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class Engine:
    """The batch's owner (see the module docstring); ``start`` and ``stop`` it around serving."""

    def __init__(self, decoder: Any, args: GenerateArgs, metrics: ServerMetrics, max_batch_size: int = 16,
                 policy: Any | None = None) -> None:
        if max_batch_size < 1:
            raise SpecdiffError(f"max_batch_size must be >= 1 (got {max_batch_size})")
        self.decoder, self.args, self.metrics, self.policy = decoder, args, metrics, policy
        self.max_batch_size = max_batch_size
        self.run = BatchRun(decoder, args, policy)
        self.cond = threading.Condition()
        self.incoming: deque[Ticket] = deque()
        self.cancels: list[Ticket] = []
        self.rows: dict[int, Ticket] = {}
        self.open = 0  # tickets submitted and not yet done
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="specdiff-engine", daemon=True)
        import torch

        self.threads = torch.get_num_threads()

    # -- the handlers' side (event loop) -------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def submit(self, job: Job) -> Ticket:
        """Queue a job (called on the event loop the ticket's events go to).

        The tokenizer is shared: handlers encode while this thread decodes. Both are read-only calls
        on a fast tokenizer (its padding and truncation settings are never changed here), which the
        tokenizers library allows from several threads at once."""
        ticket = Ticket(job, asyncio.get_running_loop(), TextStream(self.decoder.tokenizer, job.stops))
        with self.cond:
            self.incoming.append(ticket)
            self.open += 1
            self.metrics.waiting.labels(self.metrics.model_name).set(len(self.incoming))
            self.cond.notify_all()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Free the ticket's row at the next round boundary (a no-op once it is done)."""
        with self.cond:
            if ticket.done:
                return
            if ticket in self.incoming:
                self.incoming.remove(ticket)
                self._close(ticket)
                self.metrics.finished("cancelled", len(ticket.job.prompt_ids))
            else:
                self.cancels.append(ticket)
            self.cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def in_flight(self) -> int:
        with self.cond:
            return self.open

    # -- the engine thread -----------------------------------------------------------------------------

    def _close(self, ticket: Ticket) -> None:
        """Mark a ticket done (under ``cond``)."""
        ticket.done = True
        self.open -= 1

    def _finish(self, ticket: Ticket, event: Event) -> None:
        with self.cond:
            if ticket.done:
                return
            self._close(ticket)
        if ticket.row_id is not None:
            self.rows.pop(ticket.row_id, None)
        ticket.emit(event)

    def _loop(self) -> None:
        import torch

        # OpenMP's thread count is per thread: the engine thread keeps the one the process chose.
        torch.set_num_threads(self.threads)
        while not self.stopping:
            try:
                self._iterate()
            except Exception as error:  # noqa: BLE001 - the engine outlives any one failure
                log.exception("a batch round failed")
                self._fail_batch(error)

    def _iterate(self) -> None:
        """One pass: wait for work, drop cancelled rows, admit queued jobs, run a round, hand out tokens."""
        with self.cond:
            while not (self.stopping or self.incoming or self.cancels or self.rows):
                self.cond.wait()
            if self.stopping:
                return
            cancels, self.cancels = self.cancels, []
            freed = sum(t.row_id in self.rows for t in cancels)
            room = max(self.max_batch_size - len(self.rows) + freed, 0)
            admitted = [self.incoming.popleft() for _ in range(min(room, len(self.incoming)))]
        for ticket in cancels:
            self._drop(ticket)
        for ticket in admitted:
            self._admit(ticket)
        self._gauges()
        if not self.rows:
            return
        self._hand_out(self.run.step())  # a round that raises fails its rows (``_loop``)
        self._gauges()

    def _gauges(self) -> None:
        self.metrics.waiting.labels(self.metrics.model_name).set(len(self.incoming))
        self.metrics.running.labels(self.metrics.model_name).set(len(self.rows))

    def _admit(self, ticket: Ticket) -> None:
        job = ticket.job
        try:
            ticket.row_id = self.run.add_ids(job.prompt_ids, job.args, job.draft_cap)
        except Exception as error:  # noqa: BLE001 - refused by the batch: this request fails, alone
            bad_input = isinstance(error, SpecdiffError)
            self.metrics.finished("rejected" if bad_input else "error")
            self._finish(ticket, Failed(400 if bad_input else 500, str(error)))
            return
        self.rows[ticket.row_id] = ticket

    def _drop(self, ticket: Ticket) -> None:
        """A cancelled ticket: its row leaves the batch now."""
        if ticket.done or ticket.row_id not in self.rows:
            return
        result = self.run.cancel(ticket.row_id)
        self.metrics.finished("cancelled", len(ticket.job.prompt_ids), len(result.token_ids))
        self._finish(ticket, Failed(499, "the client went away"))

    def _fail_batch(self, error: Exception) -> None:
        for ticket in list(self.rows.values()):
            self.metrics.finished("error", len(ticket.job.prompt_ids))
            self._finish(ticket, Failed(500, f"the batch round failed: {type(error).__name__}: {error}"))
        self.rows.clear()
        self.run = BatchRun(self.decoder, self.args, self.policy)

    def _hand_out(self, round_: Any) -> None:
        stats, now = round_.stats, time.perf_counter()
        self.metrics.batch_round(stats.batch_size, stats.proposer.value, stats.draft_s, stats.verify_s,
                                 stats.denoising_steps_used)
        finished = set(round_.finished)
        for (row_id, tokens), proposed, accepted in zip(round_.tokens.items(), stats.proposed, stats.accepted,
                                                        strict=True):
            self.metrics.row_round(proposed, accepted)
            ticket = self.rows[row_id]
            try:
                self._give(ticket, row_id, tokens, row_id in finished, now)
            except Exception as error:  # noqa: BLE001 - a failure in one request fails that request alone
                log.exception("request failed while handing out its tokens")
                if row_id not in finished:
                    self.run.cancel(row_id)
                else:
                    self.run.results.pop(row_id, None)
                self.metrics.finished("error", len(ticket.job.prompt_ids))
                self._finish(ticket, Failed(500, f"{type(error).__name__}: {error}"))

    def _give(self, ticket: Ticket, row_id: int, tokens: list[int], finished: bool, now: float) -> None:
        """One row's tokens of a round: timings, text, and its end (EOS, length or a stop string)."""
        if tokens:
            histogram = self.metrics.ttft if ticket.last_tokens_at is None else self.metrics.itl
            histogram.labels(self.metrics.model_name).observe(now - (ticket.last_tokens_at or ticket.arrived))
            ticket.last_tokens_at = now
        text = ticket.text
        delta = text.push(tokens)
        if text.stopped_at is not None:
            result = self.run.pop_result(row_id) if finished else self.run.cancel(row_id)
            self._complete(ticket, delta, "stop", result, text.stopped_at)
        elif finished:
            result = self.run.pop_result(row_id)
            eos = self.decoder.resolve_eos(ticket.job.args.eos_token_id)
            reason = "stop" if result.token_ids and result.token_ids[-1] in eos else "length"
            self._complete(ticket, delta + text.finish(), reason, result, len(result.token_ids))
        elif delta:
            ticket.emit(Delta(delta, len(tokens)))

    def _complete(self, ticket: Ticket, delta: str, reason: str, result: GenerationResult, tokens: int) -> None:
        if delta:
            ticket.emit(Delta(delta, 0))
        prompt = len(ticket.job.prompt_ids)
        self.metrics.finished(reason, prompt, tokens)
        self.metrics.e2e.labels(self.metrics.model_name).observe(time.perf_counter() - ticket.arrived)
        self._finish(ticket, Finished(reason, prompt, tokens, summarize(result.stats)))
