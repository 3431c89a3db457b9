"""What the sweep and the bench share: checks before any model loads, one timed generation (the
speculative decoder's, or the verifier's own ``generate()``), threads and the progress bar."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.evals.suites import Suite, load_suite
from specdiff.evals.table import DIFFUSION

from specdiff.errors import SpecdiffError
from specdiff.threads import check_threads

if TYPE_CHECKING:
    from specdiff.evals.sweep import SweepConfig, Task

    from specdiff.pairs import Models

def drafter_canvas_length(models: Models) -> int | None:
    """The drafter's canvas length read from its config (no weights loaded); None when unknown."""
    from specdiff.pairs import pair_drafter_folder

    name = models.pair_name
    location = Path(models.drafter).expanduser() if name is None else pair_drafter_folder(name)
    if location is None:
        return None  # a pair without a drafter
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
    check_threads(threads)


def check_models_and_out(models: Models, dtype: str | None, out: Path, suffixes: tuple[str, ...]) -> None:
    """The models make sense (a known pair, both models, or neither; a known dtype) and ``out`` is a
    table file the run can write."""
    models.check(dtype)
    if Path(out).suffix.lower() not in suffixes:
        raise SpecdiffError(f"--out must end in {' or '.join(suffixes)} (got {Path(out).name})")
    writable_folder(Path(out).parent, "--out")


def writable_folder(folder: Path, option: str) -> Path:
    """``folder``, created if missing, or a clear error when it cannot hold the output: checked
    before any model loads, so a long run never ends unable to save."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SpecdiffError(f"{option}: {folder} is a file, not a folder; choose a path inside a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpecdiffError(
            f"{option}: cannot create the folder {folder} ({err.strerror}); choose another path"
        ) from None
    if not os.access(folder, os.W_OK):
        raise SpecdiffError(f"{option}: the folder {folder} is not writable; choose another path")
    return folder


def suite_to_run(name: str, limit: int | None, largest_block: int, what: str, models: Models,
                 canvas_length: int | None) -> Suite:
    """The suite cut to ``limit`` prompts, once the largest block is known to fit the drafter's
    canvas (read from its config when ``canvas_length`` is None)."""
    suite = load_suite(name)
    canvas = canvas_length if canvas_length is not None else drafter_canvas_length(models)
    if canvas is not None and largest_block > canvas:
        raise SpecdiffError(
            f"{what} {largest_block} exceeds the drafter's canvas of {canvas} tokens; use block sizes up to {canvas}"
        )
    return suite if limit is None else Suite(suite.name, suite.prompts[:limit])


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
