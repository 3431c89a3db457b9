"""``specdiff estimate``: will a sweep's acceptance pay on a GPU? A thin command over ``specdiff.evals.estimate``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from specdiff.cli_evals import friendly_errors, parse_list

console = Console()


@dataclass(frozen=True)
class EstimateOptions:
    """What ``specdiff estimate`` predicts; the CLI's defaults come from here (the real pair on an H100)."""

    trace: Path
    hardware: tuple[str, ...] = ("H100",)
    drafter: str = "diffusiongemma-26b-a4b"
    verifier: str = "gemma-4-31b"
    dtype: str = "bf16"
    context: int = 2048
    top: int = 8


_DEFAULTS = {f.name: f.default for f in fields(EstimateOptions)}


def run_estimate(options: EstimateOptions) -> list[tuple[Any, Any]]:
    """Per hardware profile, ``(profile, estimate table)``; every input is checked before any estimate."""
    from specdiff.errors import SpecdiffError
    from specdiff.evals.estimate import Workload, acceptance_from_results, estimate
    from specdiff.evals.roofline import check_dtype, load_hardware, load_model_profile
    from specdiff.evals.sweep import read_results

    check_dtype(options.dtype)
    if options.context < 0:
        raise SpecdiffError(f"--context must be >= 0 (got {options.context})")
    if not options.hardware:
        raise SpecdiffError("--hardware is empty; name at least one profile, e.g. H100")
    profiles = [load_hardware(name) for name in options.hardware]
    drafter, verifier = load_model_profile(options.drafter), load_model_profile(options.verifier)
    acceptance = acceptance_from_results(read_results(options.trace))
    return [(hw, estimate(acceptance, hw, drafter, verifier, options.dtype, Workload(context=options.context)))
            for hw in profiles]


def setting(row: Any) -> str:
    """A configuration in words: rows of 0 steps are the n-gram lookup's (nothing denoises)."""
    if row.denoising_steps == 0:
        return f"block {int(row.block_size)} (n-gram lookup)"
    return f"block {int(row.block_size)} x {int(row.denoising_steps)} steps (DiffusionGemma)"


@friendly_errors
def estimate(
    trace: Path = typer.Option(..., help="A sweep table (.parquet, .csv or .jsonl) whose acceptance to use."),
    hardware: str = typer.Option(",".join(_DEFAULTS["hardware"]),
                                 help="Hardware profiles, comma-separated: shipped names (H100, H200, B300, RTX5090, "
                                      "CPU-1T) or .json files."),
    drafter: str = typer.Option(_DEFAULTS["drafter"], help="Drafter model profile (name or .json)."),
    verifier: str = typer.Option(_DEFAULTS["verifier"], help="Verifier model profile (name or .json)."),
    dtype: str = typer.Option(_DEFAULTS["dtype"], help="Weight dtype: bf16, fp8 or fp4 (fp32 for CPUs)."),
    context: int = typer.Option(_DEFAULTS["context"], help="Tokens of context each forward attends over."),
    top: int = typer.Option(_DEFAULTS["top"], help="Rows to show per hardware."),
) -> None:
    """Predict tokens/s and the speedup over the verifier alone for each block size x steps, on real hardware."""
    from rich.table import Table

    options = EstimateOptions(trace, parse_list(hardware, str, "--hardware"), drafter, verifier, dtype, context, top)
    from specdiff.evals.roofline import load_model_profile, memory_warning

    models = (load_model_profile(options.verifier), load_model_profile(options.drafter))
    for hw, table in run_estimate(options):
        best = table.iloc[0]
        warning = memory_warning(hw, models, options.dtype)
        if warning:
            console.print(f"[yellow]warning:[/] {warning} (--dtype)")
        view = Table(title=f"{options.verifier} + {options.drafter} on {hw.name} ({options.dtype})",
                     title_justify="left")
        for column in ("block", "steps", "tokens/round", "draft ms", "verify ms", "tokens/s", "speedup"):
            view.add_column(column, justify="right")
        for row in table.head(options.top).itertuples(index=False):
            view.add_row(str(row.block_size), str(row.denoising_steps), f"{row.tokens_per_round:.2f}",
                         f"{row.draft_s * 1e3:.1f}", f"{row.verify_s * 1e3:.1f}", f"{row.tokens_per_s:.0f}",
                         f"{row.speedup:.2f}x")
        console.print(view)
        console.print(f"[bold]{hw.name}: best {setting(best)}, {best.tokens_per_s:.0f} tokens/s, speedup "
                      f"{best.speedup:.2f}x[/] over the verifier alone ({best.ar_tokens_per_s:.0f} tokens/s)")
        drafted = table[table["denoising_steps"] > 0]
        if best.denoising_steps == 0 and not drafted.empty:  # the lookup won: say what the drafter would give
            top = drafted.iloc[0]
            console.print(f"{hw.name}: best drafter setting {setting(top)}, {top.tokens_per_s:.0f} tokens/s, "
                          f"speedup {top.speedup:.2f}x")
