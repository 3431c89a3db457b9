"""The acceptance sweep: every prompt of a suite under every configuration, one tidy row each.

A configuration is a proposer (the diffusion drafter or the n-gram lookup), a block size, a cap on
denoising steps (the diffusion drafter's; 0 in the rows of proposers that do not denoise), a
temperature (with top-k and top-p) and a seed. Each prompt also runs once per temperature and
seed on the verifier alone (``method="ar"``, its own ``generate()``), the baseline every speedup
is measured against. Per prompt the baseline runs first and the configurations follow, so
machine noise hits all alike.

Each finished row is durable at once (``specdiff.evals.table``: the journal, the columns). With
``resume=True`` rows already in the journal or in the table are skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.evals.running import (
    check_models_and_out,
    check_run_limits,
    progress_bar,
    run_speculative,
    run_verifier_alone,
    suite_to_run,
    verifier_generate,
)
from specdiff.evals.suites import Suite
from specdiff.evals.table import (
    AR,
    DIFFUSION,
    KEY_COLUMNS,
    PLAIN,
    ROW_COLUMNS,
    SPECDIFF,
    TABLE_ARGS,
    TIMING_COLUMNS,
    Journal,
    args_differences,
    args_path,
    journal_path,
    output_hash,
    read_args,
    read_results,
    row_key,
    warn,
    write_args,
    write_table,
)

from specdiff.errors import SpecdiffError
from specdiff.metrics import loop_share
from specdiff.pairs import Models
from specdiff.threads import use_threads

__all__ = ["AR", "KEY_COLUMNS", "ROW_COLUMNS", "SPECDIFF", "TIMING_COLUMNS", "Journal", "SweepConfig", "Task",
           "check_sweep", "journal_path", "plan", "read_results", "run_sweep"]

if TYPE_CHECKING:
    import pandas as pd  # imported where used: `specdiff --help` stays fast


@dataclass(frozen=True)
class SweepConfig:
    """What ``specdiff sweep`` runs; the CLI's defaults come from here.

    ``max_new_tokens`` defaults to 48: the full default sweep of a 30-prompt suite is 630
    generations (30 x (20 configurations + the baseline)), and at 48 tokens it took 16 min 45 s
    with the pocket pair on a quiet 2-core machine (``specdiff sweep --suite code --out F``),
    while every block size up to 32 still drafts in full.
    """

    out: Path
    suite: str = "code"
    proposers: tuple[str, ...] = ("diffusion", "ngram")
    block_sizes: tuple[int, ...] = (4, 8, 16, 32, 64)
    denoising_steps: tuple[int, ...] = (1, 2, 4, 8)
    temperatures: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    max_new_tokens: int = 48
    top_k: int = 0
    top_p: float = 1.0
    drafter: str | None = None
    verifier: str | None = None
    # A named pair (specdiff.pairs.PAIRS) instead of drafter/verifier; neither: the default pair.
    pair: str | None = None
    # The models' dtype (None: the pair's or checkpoint's own).
    dtype: str | None = None
    limit: int | None = None
    threads: int | None = None
    resume: bool = False
    # Above 1: configurations also run the prompts in batches of that size (``specdiff.evals.batch_sweep``).
    batch_sizes: tuple[int, ...] = (1,)

    @property
    def models(self) -> Models:
        return Models(self.pair, self.drafter, self.verifier)


@dataclass(frozen=True)
class Task:
    """One generation of the sweep: a prompt under one configuration (or the baseline)."""

    prompt_id: str
    method: str
    proposer: str
    block_size: int
    denoising_steps: int
    temperature: float
    seed: int
    batch_size: int = 1


# -- checks before any model loads ---------------------------------------------------------------



def check_sweep(config: SweepConfig, canvas_length: int | None = None) -> Suite:
    """Refuse bad arguments, naming the fix; returns the suite to run (cut to ``limit``)."""
    from specdiff.args import proposer_named
    from specdiff.controllers import check_steps
    from specdiff.sampling import SamplingConfig

    for name in ("proposers", "block_sizes", "denoising_steps", "temperatures", "seeds", "batch_sizes"):
        if not getattr(config, name):
            raise SpecdiffError(f"{TABLE_ARGS[name]} is empty; give at least one value")
    if min(config.batch_sizes) < 1:
        raise SpecdiffError(f"batch sizes must be >= 1 (got {min(config.batch_sizes)})")
    if min(config.block_sizes) < 1:
        raise SpecdiffError(f"block sizes must be >= 1 (got {min(config.block_sizes)})")
    for name in config.proposers:
        proposer_named(name)
    check_steps(min(config.denoising_steps), "--steps")
    check_run_limits(config.max_new_tokens, config.limit, config.threads)
    for temperature in config.temperatures:
        SamplingConfig(temperature, config.top_k or None, config.top_p)
    out = Path(config.out)
    check_models_and_out(config.models, config.dtype, out, (".parquet", ".csv"))
    if not config.resume and (out.exists() or journal_path(out).exists()):
        raise SpecdiffError(f"{out} already exists; pass --resume to continue it, or choose another --out")
    return suite_to_run(config.suite, config.limit, max(config.block_sizes), "block size", config.models,
                        canvas_length)


def table_args(config: SweepConfig, suite: Suite) -> dict[str, Any]:
    """The arguments that define a sweep's table (``specdiff.evals.table.TABLE_ARGS``), in a
    canonical form: a resume with other ones would mix rows that do not belong together."""
    from specdiff.args import proposer_named

    return dict(
        suite=suite.name,
        prompts={p.id: hashlib.sha256(p.prompt.encode()).hexdigest()[:16] for p in suite.prompts},
        proposers=sorted({proposer_named(name).value for name in config.proposers}),
        block_sizes=sorted(set(config.block_sizes)),
        denoising_steps=sorted(set(config.denoising_steps)),
        temperatures=sorted({float(t) for t in config.temperatures}),
        seeds=sorted(set(config.seeds)),
        max_new_tokens=config.max_new_tokens,
        top_k=config.top_k,
        top_p=float(config.top_p),
        drafter=config.models.labels[0],
        verifier=config.models.labels[1],
        batch_sizes=sorted(set(config.batch_sizes)),
        # Only when named, so that tables written before the option existed still resume.
        **({"dtype": config.dtype} if config.dtype is not None else {}),
    )


def check_same_args(out: Path, args: dict[str, Any], has_rows: bool) -> None:
    """A table with rows continues only under the arguments it was written with; else record them."""
    if not has_rows:
        write_args(out, args)
        return
    recorded = read_args(out)
    if recorded is None:
        raise SpecdiffError(
            f"{out} has no record of the arguments it was written with ({args_path(out).name} is missing); "
            "--resume cannot tell whether its rows belong with this run's, so choose another --out"
        )
    differences = args_differences(recorded, args)
    if differences:
        raise SpecdiffError(
            f"{out} was written with other arguments: {'; '.join(differences)}. Resume with the arguments it "
            "was written with (see " + args_path(out).name + "), or choose another --out"
        )


def plan(config: SweepConfig, suite: Suite) -> list[Task]:
    """Every generation in run order: per prompt and sampling setting, the baseline, then the grid."""
    tasks = []
    for prompt in suite.prompts:
        for temperature in _unique(config.temperatures):
            for seed, size in ((s, b) for s in _unique(config.seeds) for b in _unique(config.batch_sizes)):
                tasks.append(Task(prompt.id, AR, PLAIN, 0, 0, float(temperature), seed, size))
                for proposer in _unique(config.proposers):
                    # Steps belong to the diffusion drafter: other proposers run each block once.
                    step_grid = _unique(config.denoising_steps) if proposer == DIFFUSION else [0]
                    for block in _unique(config.block_sizes):
                        for steps in step_grid:
                            tasks.append(Task(prompt.id, SPECDIFF, proposer, block, steps, float(temperature), seed,
                                              size))
    return tasks


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))



def key_fields(task: Task, config: SweepConfig, suite: Suite) -> dict[str, Any]:
    """A row's ``KEY_COLUMNS``: what identifies a generation across runs of the sweep."""
    return dict(
        suite=suite.name,
        prompt_id=task.prompt_id,
        method=task.method,
        proposer=task.proposer,
        block_size=task.block_size,
        denoising_steps=task.denoising_steps,
        temperature=task.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        seed=task.seed,
        max_new_tokens=config.max_new_tokens,
        batch_size=task.batch_size,
    )


def task_key(task: Task, config: SweepConfig, suite: Suite) -> tuple:
    return row_key(key_fields(task, config, suite))



# -- running one generation ------------------------------------------------------------------------




def make_row(
    task: Task,
    config: SweepConfig,
    suite: Suite,
    prompt_tokens: int,
    measured: dict[str, Any],
    models: tuple[str, str],
) -> dict[str, Any]:
    tokens = measured.pop("token_ids")
    return dict(
        **key_fields(task, config, suite),
        prompt_tokens=prompt_tokens,
        **measured,
        tokens_per_s=measured["new_tokens"] / measured["total_s"] if measured["total_s"] > 0 else 0.0,
        loop_share=loop_share(tokens),
        output_hash=output_hash(tokens),
        drafter=models[0],
        verifier=models[1],
    )


# -- the sweep ---------------------------------------------------------------------------------------


def run_sweep(
    config: SweepConfig,
    decoder: Any | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the sweep (or finish one with ``config.resume``); returns the whole table.

    Args:
        config: what to run and where to write it.
        decoder: a ``SpeculativeDecoder`` to use instead of loading ``config.models``.
        on_row: called with each row once it is durable (an exception there stops the sweep).
        progress: show a progress bar with an ETA on stderr.
    """
    canvas = max(decoder.limits.values()) if decoder is not None else None
    suite = check_sweep(config, canvas)
    use_threads(config.threads)
    journal, done_rows, pending = pending_tasks(config, suite)
    models = model_names(config)
    if pending:
        if decoder is None:
            decoder = config.models.load(config.dtype)
        prompt_ids = prepare_decoder(decoder, config, suite)
        waiting = {task_key(t, config, suite) for t in pending}
        with progress_bar(progress, len(pending), "sweep") as advance:
            for task in pending:
                if task_key(task, config, suite) not in waiting:
                    continue  # its batch already ran
                for row_task, measured in measure_group(decoder, prompt_ids, task, config, suite):
                    key = task_key(row_task, config, suite)
                    if key not in waiting:
                        continue  # a row of the batch the table already holds
                    waiting.discard(key)
                    ids = prompt_ids[row_task.prompt_id]
                    row = make_row(row_task, config, suite, int(ids.shape[1]), measured, models)
                    journal.append(row)
                    advance(_describe(row_task))
                    if on_row is not None:
                        on_row(row)
    return finish_table(done_rows, journal, Path(config.out))


def model_names(config: SweepConfig) -> tuple[str, str]:
    """The rows' ``drafter`` and ``verifier`` columns (a pair's name for a pair)."""
    return config.models.labels


def pending_tasks(config: SweepConfig, suite: Suite) -> tuple[Journal, list[dict[str, Any]], list[Task]]:
    """The journal, the rows already finished (in the table and the journal), and the tasks still to run.

    The local sweep and the Ray sweep (``specdiff.evals.ray_sweep``) both start here, so they
    resume the same tables the same way.
    """
    out = Path(config.out)
    journal = Journal(journal_path(out))
    scan = journal.repair()  # a torn last line (killed mid-write) goes; the next row needs a line of its own
    for problem in scan.problems(journal.path):
        warn(problem)
    done_rows = (read_results(out).to_dict("records") if out.exists() else []) + scan.rows
    check_same_args(out, table_args(config, suite), bool(done_rows) or out.exists() or journal.path.exists())
    finished = {row_key(r) for r in done_rows}
    pending = [t for t in plan(config, suite) if task_key(t, config, suite) not in finished]
    return journal, done_rows, pending


def finish_table(done_rows: list[dict[str, Any]], journal: Journal, out: Path) -> pd.DataFrame:
    """The table from the earlier rows and the journal's, written to ``out``; the journal removed."""
    frame = write_table(done_rows + journal.read(), out)
    journal.path.unlink(missing_ok=True)
    return frame


def prepare_decoder(decoder: Any, config: SweepConfig, suite: Suite) -> dict[str, Any]:
    """Refuse proposers the decoder lacks, encode every prompt, warm up; returns the prompt ids."""
    missing = sorted(set(config.proposers) - {p.value for p in decoder.proposers})
    if missing:
        raise SpecdiffError(f"this decoder has no {', '.join(missing)} proposer; drop it from --proposers")
    prompt_ids = _encode_all(decoder, suite, config.max_new_tokens)
    _warm_up(decoder, prompt_ids[suite.prompts[0].id], config)
    return prompt_ids


def measure(decoder: Any, prompt_ids: Any, task: Task, config: SweepConfig) -> dict[str, Any]:
    """One timed generation of ``task``: the row's measured part (``token_ids`` included)."""
    if task.method == AR:
        return run_verifier_alone(decoder.verifier, prompt_ids, task, config)
    return run_speculative(decoder, prompt_ids, task, config)


def measure_group(decoder: Any, prompt_ids: dict[str, Any], task: Task, config: SweepConfig,
                  suite: Suite) -> list[tuple[Task, dict[str, Any]]]:
    """``task`` alone, or at a batch size above 1 its whole group (``specdiff.evals.batch_sweep``):
    each row's task and measured part."""
    if task.batch_size == 1:
        return [(task, measure(decoder, prompt_ids[task.prompt_id], task, config))]
    from dataclasses import replace

    from specdiff.evals.batch_sweep import batch_group, measure_batch

    group = batch_group([p.id for p in suite.prompts], task.prompt_id, task.batch_size)
    measured = measure_batch(decoder, [prompt_ids[p] for p in group], task, config)
    return [(replace(task, prompt_id=p), m) for p, m in zip(group, measured, strict=True)]


def _describe(task: Task) -> str:
    what = "verifier alone" if task.method == AR else f"block {task.block_size} x {task.denoising_steps} steps"
    batch = f" B={task.batch_size}" if task.batch_size > 1 else ""
    return f"{task.prompt_id} {what} T={task.temperature:g}{batch}"



def _encode_all(decoder: Any, suite: Suite, max_new_tokens: int) -> dict[str, Any]:
    """Every prompt's ids, refusing (before any generation) prompts too long for the verifier."""
    ids = {p.id: decoder.encode_prompt(p.decoder_input) for p in suite.prompts}
    limit = decoder.verifier.max_positions
    if limit is not None:
        too_long = [i for i, t in ids.items() if t.shape[1] + max_new_tokens > limit]
        if too_long:
            raise SpecdiffError(
                f"{len(too_long)} prompts (e.g. {too_long[0]!r}) plus --max-new-tokens {max_new_tokens} "
                f"exceed the verifier's {limit} positions; lower --max-new-tokens or shorten those prompts"
            )
    return ids


def _warm_up(decoder: Any, prompt_ids: Any, config: SweepConfig) -> None:
    """One short untimed run of each method, so first-call costs land in no row."""
    n = min(8, config.max_new_tokens)
    decoder.generate(prompt_ids, max_new_tokens=n, block_size=min(config.block_sizes))
    verifier_generate(decoder.verifier, prompt_ids, n, 0.0, 0, 1.0, 0)
