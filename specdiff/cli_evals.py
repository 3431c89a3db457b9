"""``specdiff sweep``, ``specdiff report`` and ``specdiff bench``: thin commands over ``specdiff.evals``.

Each builds a frozen config (whose fields hold the defaults) and calls the library; comma lists
are parsed here, at once, into tuples. ``specdiff.cli`` registers the three functions on its app.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from specdiff.cli_tables import print_bench, print_estimate_beside, print_report
from specdiff.evals.bench import BenchConfig
from specdiff.evals.sweep import SweepConfig
from specdiff.pairs import PAIR_HELP
from specdiff.threads import CLI_THREADS, THREADS_ENV, THREADS_HELP, passive_openmp

console = Console()
_DTYPE_HELP = "float32 (exact) or bfloat16 (fast; greedy paths may part at near-ties). Default: the models' own."


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """``specdiff.cli.friendly_errors``, looked up when the command runs.

    ``specdiff.cli`` imports this module to register the commands, so importing it back at the top
    would make ``import specdiff.evals.cli`` fail whenever it comes first.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from specdiff.cli import friendly_errors as decorate

        return decorate(func)(*args, **kwargs)

    return wrapper


_SWEEP = {f.name: f.default for f in fields(SweepConfig)}
_BENCH = {f.name: f.default for f in fields(BenchConfig)}


def _joined(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def parse_list(text: str, kind: type, option: str) -> tuple:
    """``"4,8,16"`` as a tuple of ``kind``; ``""`` as an empty tuple (the config check refuses it)."""
    if not text.strip():
        return ()
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        from specdiff.errors import SpecdiffError

        raise SpecdiffError(f"{option} takes comma-separated {kind.__name__}s like 4,8,16 (got {text!r})") from None


_SUITE_HELP = "A shipped suite (code, functions, prose), or a .jsonl / .csv / .parquet file with a prompt column."


@friendly_errors
def sweep(
    suite: str = typer.Option(_SWEEP["suite"], help=_SUITE_HELP),
    proposers: str = typer.Option(
        _joined(_SWEEP["proposers"]), help="Who drafts: diffusion (the drafter), ngram (the context lookup)."
    ),
    block_sizes: str = typer.Option(_joined(_SWEEP["block_sizes"]), help="Draft tokens per round, comma-separated."),
    steps: str = typer.Option(
        _joined(_SWEEP["denoising_steps"]), help="The diffusion drafter's caps on denoising steps, comma-separated."
    ),
    temperatures: str = typer.Option(_joined(_SWEEP["temperatures"]), help="0 = greedy; comma-separated."),
    seeds: str = typer.Option(_joined(_SWEEP["seeds"]), help="Seeds (drafter noise and sampling), comma-separated."),
    batch_sizes: str = typer.Option(
        _joined(_SWEEP["batch_sizes"]), help="Batch sizes, comma-separated: above 1, the prompts run in groups "
        "(generate_batch; the baseline, transformers' batched generate())."
    ),
    max_new_tokens: int = typer.Option(
        _SWEEP["max_new_tokens"],
        help="New tokens per generation. 48 keeps the full default sweep of a 30-prompt suite (630 "
        "generations, about 2.2 s each with the pocket pair on 2 busy cores) near 20 minutes.",
    ),
    top_k: int = typer.Option(_SWEEP["top_k"], help="Verifier top-k when sampling (0: none)."),
    top_p: float = typer.Option(_SWEEP["top_p"], help="Verifier top-p when sampling (1: none)."),
    limit: int | None = typer.Option(_SWEEP["limit"], help="Run only the suite's first N prompts."),
    threads: int = typer.Option(CLI_THREADS, envvar=THREADS_ENV, help=THREADS_HELP),
    pair: str | None = typer.Option(_SWEEP["pair"], help=PAIR_HELP),
    dtype: str | None = typer.Option(_SWEEP["dtype"], help=_DTYPE_HELP),
    drafter: str | None = typer.Option(_SWEEP["drafter"], help="Drafter folder or hub id (with --verifier)."),
    verifier: str | None = typer.Option(_SWEEP["verifier"], help="Verifier folder or hub id (with --drafter)."),
    out: Path = typer.Option(..., help="Results table, FILE.parquet or FILE.csv."),
    resume: bool = typer.Option(_SWEEP["resume"], help="Continue OUT: skip the rows it already holds."),
    ray: str | None = typer.Option(
        None, metavar="local|ADDRESS",
        help="Run the tasks on Ray actors (the ray extra; setup.sh installs it): --ray local starts a local Ray "
        "for the run; --ray ADDRESS joins a cluster (auto, ray://host:10001).",
    ),
    workers: int | None = typer.Option(
        None, help="With --ray: actors, each loading the pair once (default: one per CPU slot; --threads CPUs each)."
    ),
) -> None:
    """Run every prompt under every proposer x block size (x the drafter's steps, temperature, seed),
    plus the verifier alone.

    Each finished row is on disk at once (OUT.rows.jsonl until the end), so a killed run loses at
    most the generation in flight; --resume picks up where it stopped. The arguments that define
    the table are kept in OUT.args.json: --resume with other ones is refused.
    """
    passive_openmp()
    from specdiff.evals.sweep import run_sweep

    config = SweepConfig(
        out=out,
        suite=suite,
        proposers=parse_list(proposers, str, "--proposers"),
        block_sizes=parse_list(block_sizes, int, "--block-sizes"),
        denoising_steps=parse_list(steps, int, "--steps"),
        temperatures=parse_list(temperatures, float, "--temperatures"),
        seeds=parse_list(seeds, int, "--seeds"),
        batch_sizes=parse_list(batch_sizes, int, "--batch-sizes"),
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        top_p=top_p,
        drafter=drafter,
        verifier=verifier,
        pair=pair,
        dtype=dtype,
        limit=limit,
        threads=threads,
        resume=resume,
    )
    try:
        if ray is not None:
            from specdiff.evals.ray_sweep import RaySettings, run_ray_sweep

            frame = run_ray_sweep(config, RaySettings(address=None if ray == "local" else ray, workers=workers))
        elif workers is not None:
            from specdiff.errors import SpecdiffError

            raise SpecdiffError("--workers sizes a Ray sweep; add --ray (or drop --workers)")
        else:
            frame = run_sweep(config)
    except KeyboardInterrupt:
        from specdiff.evals.table import journal_path

        typer.echo(f"interrupted: every finished row is safe in {journal_path(out)}; continue with the same "
                   "command plus --resume", err=True)
        raise typer.Exit(code=130) from None
    console.print(f"{len(frame)} rows in {out}; read them with: specdiff report {out}")


@friendly_errors
def report(
    file: Path = typer.Argument(..., help="A sweep table (.parquet, .csv, or a run's .rows.jsonl journal)."),
    gpu_price_per_hour: float | None = typer.Option(
        None, help="Price of the machine per hour, for cost per 1M tokens."
    ),
    plots: Path | None = typer.Option(None, help="Write PNG plots into this folder."),
    markdown: Path | None = typer.Option(None, help="Write a markdown report to this file."),
    top: int = typer.Option(8, help="Configurations shown per suite."),
    estimate: str | None = typer.Option(
        None, help="Hardware profiles (e.g. H100,RTX5090): beside each measured configuration, its predicted "
                   "speed there for DiffusionGemma 26B-A4B + Gemma 4 31B in bf16 (specdiff estimate for more)."
    ),
) -> None:
    """Summarize a sweep: acceptance, acceptance by position, tokens/s, speedup, cost and round time split."""
    from specdiff.evals import report as rep
    from specdiff.evals.sweep import read_results

    if gpu_price_per_hour is not None and gpu_price_per_hour <= 0:
        from specdiff.errors import SpecdiffError

        raise SpecdiffError(f"--gpu-price-per-hour must be > 0 (got {gpu_price_per_hour})")
    from specdiff.evals.running import writable_folder

    results = read_results(file)
    hardware = [] if estimate is None else _hardware_profiles(estimate)
    for folder, option in ((plots, "--plots"), (markdown.parent if markdown else None, "--markdown")):
        if folder is not None:
            writable_folder(folder, option)
    summary = rep.summarize(results, gpu_price_per_hour)
    print_report(results, summary, top)
    for profile in hardware:
        print_estimate_beside(results, profile, top)
    from specdiff.evals.plots import write_plots

    written = write_plots(results, plots) if plots is not None else []
    for path in written:
        console.print(f"plot: {path}")
    if markdown is not None:
        markdown.write_text(rep.markdown_report(results, gpu_price_per_hour, written, top, markdown.parent))
        console.print(f"markdown: {markdown}")


def _hardware_profiles(names: str) -> list[Any]:
    """The named hardware profiles, each loaded (and so checked) before the report prints anything."""
    from specdiff.evals.roofline import load_hardware

    return [load_hardware(name) for name in parse_list(names, str, "--estimate")]


@friendly_errors
def bench(
    suite: str = typer.Option(_BENCH["suite"], help=_SUITE_HELP),
    max_new_tokens: int = typer.Option(_BENCH["max_new_tokens"], help="New tokens per generation."),
    methods: str = typer.Option(_joined(_BENCH["methods"]), help="Methods to compare, comma-separated."),
    limit: int | None = typer.Option(_BENCH["limit"], help="Run only the suite's first N prompts."),
    threads: int = typer.Option(CLI_THREADS, envvar=THREADS_ENV, help=THREADS_HELP),
    grid_block_sizes: str = typer.Option(_joined(_BENCH["grid_block_sizes"]), help="fixed_best's grid: block sizes."),
    grid_proposers: str = typer.Option(
        _joined(_BENCH["grid_proposers"]), help="fixed_best's grid: proposers (ngram, diffusion)."
    ),
    grid_steps: str = typer.Option(_joined(_BENCH["grid_steps"]), help="fixed_best's grid: the drafter's steps."),
    grid_prompts: int = typer.Option(_BENCH["grid_prompts"], help="fixed_best's grid runs on the first N prompts."),
    pair: str | None = typer.Option(_BENCH["pair"], help=PAIR_HELP),
    dtype: str | None = typer.Option(_BENCH["dtype"], help=_DTYPE_HELP),
    drafter: str | None = typer.Option(_BENCH["drafter"], help="Drafter folder or hub id (with --verifier)."),
    verifier: str | None = typer.Option(_BENCH["verifier"], help="Verifier folder or hub id (with --drafter)."),
    ar_drafter: str | None = typer.Option(
        _BENCH["ar_drafter"], help="AR drafter for assisted generation (default: the pair's own)."
    ),
    repeats: int = typer.Option(_BENCH["repeats"], help="Passes over the prompts; seconds summed over all."),
    overwrite: bool = typer.Option(_BENCH["overwrite"], help="Replace an existing OUT (and its .runs file)."),
    batch_size: int = typer.Option(
        _BENCH["batch_size"], help="Above 1: groups of N prompts, generate_batch against transformers' batched "
        "generate() and one by one (methods specdiff_batch, hf_batched, one_by_one)."
    ),
    temperature: float = typer.Option(
        _BENCH["temperature"], help="0 = greedy (outputs compared with ar's); above 0 every method samples."
    ),
    top_k: int = typer.Option(_BENCH["top_k"], help="Verifier top-k when sampling (0: none)."),
    top_p: float = typer.Option(_BENCH["top_p"], help="Verifier top-p when sampling (1: none)."),
    seed: int = typer.Option(_BENCH["seed"], help="When sampling, prompt i is seeded with SEED + i: a rerun repeats."),
    out: Path = typer.Option(..., help="One row per method, FILE.csv or FILE.parquet (per-prompt runs beside it)."),
) -> None:
    """Compare methods side by side, interleaved per prompt; greedy, checks that their outputs agree.

    At --temperature above 0 every method samples (seeded per prompt) and outputs are not compared:
    sampled exactness is checked statistically by the tests.
    """
    passive_openmp()
    from transformers.utils import logging as hf_logging

    from specdiff.evals.bench import run_bench, runs_path

    config = BenchConfig(
        out=out,
        suite=suite,
        max_new_tokens=max_new_tokens,
        methods=parse_list(methods, str, "--methods"),
        limit=limit,
        threads=threads,
        grid_block_sizes=parse_list(grid_block_sizes, int, "--grid-block-sizes"),
        grid_proposers=parse_list(grid_proposers, str, "--grid-proposers"),
        grid_steps=parse_list(grid_steps, int, "--grid-steps"),
        grid_prompts=grid_prompts,
        drafter=drafter,
        verifier=verifier,
        pair=pair,
        dtype=dtype,
        ar_drafter=ar_drafter,
        repeats=repeats,
        overwrite=overwrite,
        batch_size=batch_size,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    hf_logging.set_verbosity_error()  # assisted generation warns about its own internal arguments
    result = run_bench(config)
    for frame, path in ((result.summary, out), (result.runs, runs_path(out))):
        frame.to_parquet(path, index=False) if path.suffix.lower() == ".parquet" else frame.to_csv(path, index=False)
    print_bench(result)
    console.print(f"{out} (per prompt: {runs_path(out)})")
