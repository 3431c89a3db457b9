"""The acceptance sweep on Ray: the same tasks, rows and journal as ``specdiff.evals.sweep``, run by actors.

Each worker is a Ray actor that loads the decoder once (one per CPU slot, or per GPU) and runs
the (prompt, configuration) tasks it is sent. The driver plans the tasks exactly as the local
sweep does, keeps a few in flight per actor, and appends every finished row to the local sweep's
journal as it arrives, so the table and ``--resume`` are the local sweep's.

Nothing is lost and nothing written twice: an actor that dies (its process killed, its node
gone) is replaced and the tasks it held are sent again; a row whose key is already in the journal
is never appended a second time; a driver killed outright leaves a journal that ``--resume``
finishes. Ray is an optional extra (``pip install 'specdiff[ray]'``), imported only in here.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.evals.running import progress_bar
from specdiff.evals.suites import Suite
from specdiff.evals.sweep import (
    SweepConfig,
    Task,
    check_sweep,
    finish_table,
    make_row,
    measure,
    model_names,
    pending_tasks,
    prepare_decoder,
    task_key,
)
from specdiff.evals.table import row_key

from specdiff.errors import SpecdiffError
from specdiff.threads import use_threads

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RaySettings", "SweepWorker", "WorkerPool", "run_ray_sweep"]


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide the Ray sweep runs.

    ``address`` None starts a local Ray for the run (shut down at the end); otherwise it is
    passed to ``ray.init`` ("auto", "ray://host:10001", ...). A Ray already initialised in this
    process is used as it is. ``workers`` None means one per CPU slot of the cluster (per GPU
    when ``gpus_per_worker > 0``). Each worker reserves ``SweepConfig.threads`` CPUs (1 if unset).
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    in_flight: int = 2
    max_replacements: int = 8


def check_settings(settings: RaySettings) -> None:
    if settings.workers is not None and settings.workers < 1:
        raise SpecdiffError(f"--workers must be >= 1 (got {settings.workers})")
    if settings.gpus_per_worker < 0:
        raise SpecdiffError(f"GPUs per worker must be >= 0 (got {settings.gpus_per_worker})")
    if settings.in_flight < 1:
        raise SpecdiffError(f"tasks in flight per worker must be >= 1 (got {settings.in_flight})")
    if settings.max_replacements < 0:
        raise SpecdiffError(f"max replacements must be >= 0 (got {settings.max_replacements})")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpecdiffError("--ray needs Ray: pip install 'specdiff[ray]' (or rerun setup.sh)") from None
    return ray


# -- the worker: one decoder per actor ------------------------------------------------------------


class SweepWorker:
    """A Ray actor's body: loads the decoder once (``load``), then measures one task per ``run``."""

    def __init__(self, config: SweepConfig, suite: Suite, on_gpu: bool) -> None:
        self.config, self.suite, self.on_gpu = config, suite, on_gpu
        self.decoder: Any = None
        self.prompt_ids: dict[str, Any] = {}

    def load(self) -> int:
        """Load and warm the decoder (refusing what the local sweep refuses); returns this process's id."""
        # An actor holds `threads` CPUs of the cluster; its torch uses exactly those.
        use_threads(self.config.threads or 1)
        self.decoder = _load_decoder(self.config, self.on_gpu)
        self.prompt_ids = prepare_decoder(self.decoder, self.config, self.suite)
        return os.getpid()

    def run(self, task: Task) -> tuple[int, dict[str, Any]]:
        """One timed generation: the prompt's length in tokens and the row's measured part."""
        ids = self.prompt_ids[task.prompt_id]
        return int(ids.shape[1]), measure(self.decoder, ids, task, self.config)


def _load_decoder(config: SweepConfig, on_gpu: bool) -> Any:
    return config.models.load(config.dtype, device_map="cuda" if on_gpu else None)


class WorkerPool:
    """The sweep's actors, one per slot; a dead actor is replaced in its slot (``replace``).

    ``pids`` holds each slot's process id and ``generation`` how many actors the slot has had, so
    the errors of a dead actor's other tasks do not replace its successor too.
    """

    def __init__(self, ray: Any, config: SweepConfig, suite: Suite, settings: RaySettings, workers: int) -> None:
        self.ray, self.config, self.suite, self.settings = ray, config, suite, settings
        on_gpu = settings.gpus_per_worker > 0
        self.actor_class = ray.remote(num_cpus=config.threads or 1, num_gpus=settings.gpus_per_worker,
                                      max_restarts=0, max_task_retries=0)(SweepWorker)
        self.on_gpu = on_gpu
        self.replaced = 0
        self.actors: list[Any] = [self.actor_class.remote(config, suite, on_gpu) for _ in range(workers)]
        self.generation = [0] * workers
        self.pids = [0] * workers
        loads = [actor.load.remote() for actor in self.actors]  # all load at once
        try:
            for slot, ref in enumerate(loads):
                self.pids[slot] = self._await_load(slot, ref)
        except BaseException:
            self.shutdown()  # on a cluster that outlives this run, no actor keeps its CPUs
            raise

    def _await_load(self, slot: int, ref: Any) -> int:
        """The loaded actor's pid; an actor that dies while loading is replaced (counted)."""
        while True:
            try:
                return self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as error:
                raise _cause(error) from None  # a bad model or argument: every actor would fail alike
            except self.ray.exceptions.RayActorError:
                ref = self._new_actor(slot).load.remote()

    def _new_actor(self, slot: int) -> Any:
        self.replaced += 1
        if self.replaced > self.settings.max_replacements:
            raise SpecdiffError(
                f"Ray workers died {self.replaced} times (more than {self.settings.max_replacements}); the "
                "journal keeps every finished row: fix the cause (memory? a node leaving?) and rerun with --resume"
            )
        self.ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self.actor_class.remote(self.config, self.suite, self.on_gpu)
        self.generation[slot] += 1
        return self.actors[slot]

    def replace(self, slot: int) -> None:
        """A new, loaded actor in ``slot`` in place of the dead one."""
        self.pids[slot] = self._await_load(slot, self._new_actor(slot).load.remote())

    def shutdown(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)


def _cause(error: Any) -> BaseException:
    """The worker's own exception inside Ray's ``RayTaskError`` (a SpecdiffError stays one)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


# -- the driver ----------------------------------------------------------------------------------


def run_ray_sweep(
    config: SweepConfig,
    settings: RaySettings | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_pool: Callable[[WorkerPool], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """``run_sweep`` on Ray actors: the same table, journal and ``config.resume``; returns the table.

    Args:
        config: what to run and where to write it (``threads``: CPUs and torch threads per worker).
        settings: the cluster and the workers (``RaySettings()``: a local Ray, one worker per CPU).
        on_row: called with each row once it is durable (an exception there stops the sweep).
        on_pool: called with the loaded ``WorkerPool`` before the first task is sent.
        progress: show a progress bar with an ETA on stderr.
    """
    settings = settings or RaySettings()
    check_settings(settings)
    if tuple(config.batch_sizes) != (1,):
        raise SpecdiffError("--batch-sizes above 1 run locally (a batch is one call on one machine); drop --ray, "
                            "or sweep batch sizes without it")
    suite = check_sweep(config)
    journal, done_rows, pending = pending_tasks(config, suite)
    if pending:
        ray = import_ray()
        started = _connect(ray, settings, config)
        pool = None
        try:
            workers = min(_worker_count(ray, settings, config), len(pending))
            pool = WorkerPool(ray, config, suite, settings, workers)
            if on_pool is not None:
                on_pool(pool)
            finished = {row_key(r) for r in done_rows + journal.read()}
            with progress_bar(progress, len(pending), "ray sweep") as advance:
                for row in _drive(ray, pool, pending, config, suite, finished):
                    journal.append(row)
                    advance(f"{row['prompt_id']} {row['method']} block {row['block_size']}")
                    if on_row is not None:
                        on_row(row)
        finally:
            if pool is not None:
                pool.shutdown()
            if started:
                ray.shutdown()
    return finish_table(done_rows, journal, Path(config.out))


def _drive(ray: Any, pool: WorkerPool, pending: list[Task], config: SweepConfig, suite: Suite,
           finished: set[tuple]) -> Any:
    """Yield each pending task's row once, as the actors finish them; dead actors' tasks run again."""
    queue = deque(pending)
    in_flight: dict[Any, tuple[int, int, Task]] = {}  # ref -> (slot, the slot's generation, task)
    per_slot = [0] * len(pool.actors)
    models = model_names(config)
    while queue or in_flight:
        for slot, actor in enumerate(pool.actors):
            while queue and per_slot[slot] < pool.settings.in_flight:
                task = queue.popleft()
                in_flight[actor.run.remote(task)] = (slot, pool.generation[slot], task)
                per_slot[slot] += 1
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        slot, generation, task = in_flight.pop(ref)
        if generation == pool.generation[slot]:
            per_slot[slot] -= 1
        try:
            prompt_tokens, measured = ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            raise _cause(error) from None  # the generation itself failed: it would fail again
        except ray.exceptions.RayActorError:
            queue.appendleft(task)
            if generation == pool.generation[slot]:
                pool.replace(slot)
                per_slot[slot] = 0  # the dead actor's other tasks come back as errors, and are queued again
            continue
        key = task_key(task, config, suite)
        if key in finished:
            continue  # a result that arrived twice is written once
        finished.add(key)
        yield make_row(task, config, suite, prompt_tokens, measured, models)


def _connect(ray: Any, settings: RaySettings, config: SweepConfig) -> bool:
    """Join or start Ray; True when this run started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    if settings.address is None:
        cpus = None if settings.workers is None else settings.workers * (config.threads or 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    else:
        try:
            ray.init(address=settings.address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise SpecdiffError(f"cannot reach the Ray cluster at {settings.address!r}: {error}; check --ray") from None
    return True


def _worker_count(ray: Any, settings: RaySettings, config: SweepConfig) -> int:
    """``settings.workers``, or as many as the cluster's CPUs (GPUs) hold; refuses more than it has."""
    resources = ray.cluster_resources()
    cpus_each = config.threads or 1
    fits = int(resources.get("CPU", 0) // cpus_each)
    if settings.gpus_per_worker > 0:
        fits = min(fits, int(resources.get("GPU", 0) // settings.gpus_per_worker))
    workers = settings.workers if settings.workers is not None else fits
    if workers < 1 or workers > fits:
        raise SpecdiffError(
            f"the Ray cluster has room for {fits} workers of {cpus_each} CPUs and {settings.gpus_per_worker:g} GPUs "
            f"(it has {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs); lower --workers or --threads"
        )
    return workers
