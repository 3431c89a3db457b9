"""The acceptance sweep: every prompt of a suite under every configuration, one tidy row each.

A configuration is a proposer (the diffusion drafter or the n-gram lookup), a block size, a cap on
denoising steps (the diffusion drafter's; 0 in the rows of proposers that do not denoise), a
temperature (with top-k and top-p) and a seed. Each prompt also runs once per temperature and seed on the verifier alone
(``method="ar"``, its own ``generate()``), the baseline every speedup is measured against. Per
prompt the baseline runs first and the configurations follow, so machine noise hits all alike.

Durability: each finished row is appended to a journal next to the output (``OUT.rows.jsonl``),
flushed and fsynced before the next generation starts, so ``kill -9`` loses at most the row in
flight. At the end the journal becomes the table (``.parquet`` or ``.csv``) and is removed. With
``resume=True`` rows already in the journal or in the table are skipped; a row is identified by
``KEY_COLUMNS`` and appears once in the final table.

Row columns (``ROW_COLUMNS``): the key, then

- ``prompt_tokens``, ``new_tokens``, ``rounds``, ``proposed``, ``accepted``;
- ``mean_acceptance_length`` (tokens committed per round, the verifier's token included) and
  ``acceptance_rate`` (accepted over proposed draft tokens);
- ``draft_s``, ``verify_s``, ``other_s``: round time spent drafting, verifying and on everything
  else (acceptance, rollback, bookkeeping), summed from the ``RoundStats``; ``setup_s``: time
  outside rounds (the verifier reading the prompt); ``total_s`` the whole call, and
  ``tokens_per_s = new_tokens / total_s``;
- ``position_judged`` and ``position_accepted``: per draft position, how many rounds judged it and
  how many accepted it (``specdiff.metrics.position_counts``; lists, JSON text in a CSV);
- ``loop_share``: the share of the output's 4-grams that already occurred earlier in it (a
  looping output is trivially easy to draft, so read acceptance beside it);
- ``output_hash``: a digest of the new token ids (greedy rows of one prompt must agree);
- ``drafter``, ``verifier``: the models ("pocket" for the pocket pair).

For ``method="ar"``: ``proposer = "plain"``, ``block_size = denoising_steps = 0``, one round per token, and all of
``total_s`` counts as verifying. ``top_k = 0`` and ``top_p = 1.0`` mean no truncation.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.evals.suites import Suite, load_suite

from specdiff.errors import SpecdiffError
from specdiff.metrics import loop_share

if TYPE_CHECKING:
    import pandas as pd  # imported where used: `specdiff --help` stays fast

KEY_COLUMNS = [
    "suite",
    "prompt_id",
    "method",
    "proposer",
    "block_size",
    "denoising_steps",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "max_new_tokens",
]
ROW_COLUMNS = KEY_COLUMNS + [
    "prompt_tokens",
    "new_tokens",
    "rounds",
    "proposed",
    "accepted",
    "mean_acceptance_length",
    "acceptance_rate",
    "denoising_steps_used",
    "draft_s",
    "verify_s",
    "other_s",
    "setup_s",
    "total_s",
    "tokens_per_s",
    "loop_share",
    "output_hash",
    "position_judged",
    "position_accepted",
    "drafter",
    "verifier",
]
TIMING_COLUMNS = ["draft_s", "verify_s", "other_s", "setup_s", "total_s", "tokens_per_s"]
LIST_COLUMNS = ["position_judged", "position_accepted"]
SPECDIFF, AR = "specdiff", "ar"
PLAIN, DIFFUSION = "plain", "diffusion"  # ``Proposer`` values, spelt out: this module loads without torch


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
    limit: int | None = None
    threads: int | None = None
    resume: bool = False


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


# -- checks before any model loads ---------------------------------------------------------------


def drafter_canvas_length(drafter: str | None) -> int | None:
    """The drafter's canvas length read from its config (no weights loaded); None when unknown."""
    if drafter is None:
        from specdiff.loaders import POCKET_DIR

        location = POCKET_DIR / "drafter"
    else:
        location = Path(drafter).expanduser()
    config_file = location / "config.json"
    if config_file.is_file():
        value = json.loads(config_file.read_text()).get("canvas_length")
        return int(value) if value is not None else None
    return None  # a hub id: loading the model checks it


def check_run_limits(max_new_tokens: int, limit: int | None, threads: int | None) -> None:
    """The checks the sweep and the bench share: output length, prompt limit, threads."""
    if max_new_tokens < 1:
        raise SpecdiffError(f"--max-new-tokens must be >= 1 (got {max_new_tokens})")
    if limit is not None and limit < 1:
        raise SpecdiffError(f"--limit must be >= 1 (got {limit})")
    if threads is not None and threads < 1:
        raise SpecdiffError(f"--threads must be >= 1 (got {threads})")


def check_models_and_out(drafter: str | None, verifier: str | None, out: Path, suffixes: tuple[str, ...]) -> None:
    """The model pair is whole (or the pocket pair) and ``out`` is a table file the run can write."""
    from specdiff.loading import check_model_pair

    check_model_pair(drafter, verifier)
    if Path(out).suffix.lower() not in suffixes:
        raise SpecdiffError(f"--out must end in {' or '.join(suffixes)} (got {Path(out).name})")


def suite_to_run(name: str, limit: int | None, largest_block: int, what: str, drafter: str | None,
                 canvas_length: int | None) -> Suite:
    """The suite cut to ``limit`` prompts, once the largest block is known to fit the drafter's
    canvas (read from its config when ``canvas_length`` is None)."""
    suite = load_suite(name)
    canvas = canvas_length if canvas_length is not None else drafter_canvas_length(drafter)
    if canvas is not None and largest_block > canvas:
        raise SpecdiffError(
            f"{what} {largest_block} exceeds the drafter's canvas of {canvas} tokens; use block sizes up to {canvas}"
        )
    return suite if limit is None else Suite(suite.name, suite.prompts[:limit])


def check_sweep(config: SweepConfig, canvas_length: int | None = None) -> Suite:
    """Refuse bad arguments, naming the fix; returns the suite to run (cut to ``limit``)."""
    from specdiff.args import proposer_named
    from specdiff.controllers import check_steps
    from specdiff.sampling import SamplingConfig

    for name in ("proposers", "block_sizes", "denoising_steps", "temperatures", "seeds"):
        if not getattr(config, name):
            raise SpecdiffError(f"--{name.replace('_', '-')} is empty; give at least one value")
    if min(config.block_sizes) < 1:
        raise SpecdiffError(f"block sizes must be >= 1 (got {min(config.block_sizes)})")
    for name in config.proposers:
        proposer_named(name)
    check_steps(min(config.denoising_steps), "--steps")
    check_run_limits(config.max_new_tokens, config.limit, config.threads)
    for temperature in config.temperatures:
        SamplingConfig(temperature, config.top_k or None, config.top_p)
    out = Path(config.out)
    check_models_and_out(config.drafter, config.verifier, out, (".parquet", ".csv"))
    if not config.resume and (out.exists() or journal_path(out).exists()):
        raise SpecdiffError(f"{out} already exists; pass --resume to continue it, or choose another --out")
    return suite_to_run(config.suite, config.limit, max(config.block_sizes), "block size", config.drafter,
                        canvas_length)


def plan(config: SweepConfig, suite: Suite) -> list[Task]:
    """Every generation in run order: per prompt and sampling setting, the baseline, then the grid."""
    tasks = []
    for prompt in suite.prompts:
        for temperature in _unique(config.temperatures):
            for seed in _unique(config.seeds):
                tasks.append(Task(prompt.id, AR, PLAIN, 0, 0, float(temperature), seed))
                for proposer in _unique(config.proposers):
                    # Steps belong to the diffusion drafter: other proposers run each block once.
                    step_grid = _unique(config.denoising_steps) if proposer == DIFFUSION else [0]
                    for block in _unique(config.block_sizes):
                        for steps in step_grid:
                            tasks.append(Task(prompt.id, SPECDIFF, proposer, block, steps, float(temperature), seed))
    return tasks


def _unique(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(_normal(row[c]) for c in KEY_COLUMNS)


def _normal(value: Any) -> Any:
    # CSV and parquet round trips turn 0.0 into 0, ints into numpy ints and ids into numbers;
    # keys compare in one canonical form.
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


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
    )


def task_key(task: Task, config: SweepConfig, suite: Suite) -> tuple:
    return row_key(key_fields(task, config, suite))


# -- the journal: one fsynced JSON line per finished row ------------------------------------------


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".rows.jsonl")


class Journal:
    """An append-only JSONL file; each row is on disk before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        """The finished rows; a torn last line (a kill mid-write) is dropped from the file."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        rows, good_end = [], 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good_end += len(line)
        if good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        return rows

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_results(path: str | Path) -> pd.DataFrame:
    """A sweep table (``.parquet``, ``.csv`` or a journal ``.jsonl``) with list columns as lists."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SpecdiffError(f"no results file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        text_columns = {c: str for c in ("suite", "prompt_id", "method", "output_hash", "drafter", "verifier")}
        frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    elif suffix == ".jsonl":
        frame = pd.DataFrame(Journal(path).read(), columns=ROW_COLUMNS)
    else:
        raise SpecdiffError(f"{path} must be a .parquet, .csv or .jsonl sweep table")
    missing = [c for c in ("prompt_id", "method", "block_size", "new_tokens", "total_s") if c not in frame.columns]
    if missing:
        raise SpecdiffError(f"{path} is not a sweep table: it lacks {', '.join(missing)}")
    for column in LIST_COLUMNS:
        if column in frame.columns:
            frame[column] = [[int(x) for x in (json.loads(v) if isinstance(v, str) else v)] for v in frame[column]]
    return frame


def write_table(rows: list[dict[str, Any]], out: Path) -> pd.DataFrame:
    """Write ``rows`` (deduplicated by key, last wins) atomically to ``out``; returns the table."""
    import pandas as pd

    unique = {row_key(r): r for r in rows}
    frame = pd.DataFrame(list(unique.values()), columns=ROW_COLUMNS)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        flat = frame.copy()
        for column in LIST_COLUMNS:
            flat[column] = [json.dumps(list(v)) for v in flat[column]]
        flat.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return frame


# -- running one generation ------------------------------------------------------------------------


def output_hash(tokens: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()[:16]


def run_speculative(decoder: Any, prompt_ids: Any, task: Task, config: SweepConfig) -> dict[str, Any]:
    """Speculative decoding of one prompt under ``task``'s block size and steps; the row's measured part."""
    from specdiff.metrics import position_counts

    result = decoder.generate(
        prompt_ids,
        max_new_tokens=config.max_new_tokens,
        proposer=task.proposer,
        block_size=task.block_size,
        denoising_steps=task.denoising_steps if task.proposer == DIFFUSION else None,
        temperature=task.temperature,
        top_k=config.top_k or None,
        top_p=config.top_p,
        seed=task.seed,
    )
    stats = result.stats
    judged, accepted = position_counts(stats, task.block_size)
    split = result.time_split()
    drafting = [s.denoising_steps_used for s in stats if s.proposed > 0]
    return dict(
        new_tokens=len(result.token_ids),
        rounds=result.num_rounds,
        proposed=result.proposed,
        accepted=result.accepted,
        mean_acceptance_length=result.mean_acceptance_length,
        acceptance_rate=result.acceptance_rate,
        denoising_steps_used=sum(drafting) / len(drafting) if drafting else 0.0,
        **split,
        setup_s=max(result.elapsed_s - sum(split.values()), 0.0),
        total_s=result.elapsed_s,
        position_judged=judged,
        position_accepted=accepted,
        token_ids=result.token_ids,
    )


def verifier_generate(
    verifier: Any,
    prompt_ids: Any,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    **extra: Any,
) -> list[int]:
    """The verifier's own ``generate()`` with exactly these sampling settings; the new token ids."""
    import torch

    model = verifier.model
    ids = prompt_ids.to(verifier.device)
    eos = list(verifier.eos_token_ids)
    sampling = dict(do_sample=False)
    if temperature > 0:
        torch.manual_seed(seed)
        sampling = dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        eos_token_id=eos or None,
        pad_token_id=eos[0] if eos else 0,
        **sampling,
        **extra,
    )
    return out[0, ids.shape[1] :].tolist()


def run_verifier_alone(verifier: Any, prompt_ids: Any, task: Task, config: SweepConfig) -> dict[str, Any]:
    start = time.perf_counter()
    tokens = verifier_generate(
        verifier, prompt_ids, config.max_new_tokens, task.temperature, config.top_k, config.top_p, task.seed
    )
    elapsed = time.perf_counter() - start
    return dict(
        new_tokens=len(tokens),
        rounds=len(tokens),
        proposed=0,
        accepted=0,
        mean_acceptance_length=1.0,
        acceptance_rate=0.0,
        denoising_steps_used=0.0,
        draft_s=0.0,
        verify_s=elapsed,
        other_s=0.0,
        setup_s=0.0,
        total_s=elapsed,
        position_judged=[],
        position_accepted=[],
        token_ids=tokens,
    )


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
        decoder: a ``SpeculativeDecoder`` to use instead of loading ``config.drafter``/``config.verifier``.
        on_row: called with each row once it is durable (an exception there stops the sweep).
        progress: show a progress bar with an ETA on stderr.
    """
    canvas = decoder.drafter.canvas_length if decoder is not None else None
    suite = check_sweep(config, canvas)
    use_threads(config.threads)
    out = Path(config.out)
    journal = Journal(journal_path(out))
    models = (config.drafter or "pocket", config.verifier or "pocket")
    done_rows = (read_results(out).to_dict("records") if out.exists() else []) + journal.read()
    if done_rows and {(r["drafter"], r["verifier"]) for r in done_rows} != {models}:
        raise SpecdiffError(f"{out} holds rows of other models; resume with the same --drafter and --verifier")
    finished = {row_key(r) for r in done_rows}
    pending = [t for t in plan(config, suite) if task_key(t, config, suite) not in finished]
    if pending:
        if decoder is None:
            from specdiff.loaders import load_decoder

            decoder = load_decoder(config.drafter, config.verifier)
        missing = sorted(set(config.proposers) - {p.value for p in decoder.proposers})
        if missing:
            raise SpecdiffError(f"this decoder has no {', '.join(missing)} proposer; drop it from --proposers")
        prompt_ids = _encode_all(decoder, suite, config.max_new_tokens)
        _warm_up(decoder, prompt_ids[suite.prompts[0].id], config)
        with progress_bar(progress, len(pending), "sweep") as advance:
            for task in pending:
                ids = prompt_ids[task.prompt_id]
                if task.method == AR:
                    measured = run_verifier_alone(decoder.verifier, ids, task, config)
                else:
                    measured = run_speculative(decoder, ids, task, config)
                row = make_row(task, config, suite, int(ids.shape[1]), measured, models)
                journal.append(row)
                advance(_describe(task))
                if on_row is not None:
                    on_row(row)
    frame = write_table(done_rows + journal.read(), out)
    journal.path.unlink(missing_ok=True)
    return frame


def _describe(task: Task) -> str:
    what = "verifier alone" if task.method == AR else f"block {task.block_size} x {task.denoising_steps} steps"
    return f"{task.prompt_id} {what} T={task.temperature:g}"


def use_threads(threads: int | None) -> None:
    """Set torch's CPU threads for this process (None: leave torch's choice).

    On a shared machine fewer threads than cores can be much faster: idle-spinning threads wait
    on cores that other jobs hold.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _encode_all(decoder: Any, suite: Suite, max_new_tokens: int) -> dict[str, Any]:
    """Every prompt's ids, refusing (before any generation) prompts too long for the verifier."""
    ids = {p.id: decoder.encode_prompt(p.prompt) for p in suite.prompts}
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


@contextmanager
def progress_bar(enabled: bool, total: int, name: str) -> Iterator[Callable[[str], None]]:
    """A rich progress bar with an ETA on stderr; yields ``advance(description)``, one step each."""
    if not enabled:
        yield lambda description: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(f"[bold]{name}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    bar_id = bar.add_task("", total=total)

    def advance(description: str) -> None:
        bar.update(bar_id, advance=1, description=description)

    with bar:
        yield advance
