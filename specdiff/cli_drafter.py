"""`specdiff drafter ...`: train a DiffusionGemma drafter (and an AR drafter) for any causal-LM verifier.

Thin: the options build a ``DrafterTrainOptions``, which builds the recipe's config and calls
``specdiff.training.drafter_recipe.train_drafter_recipe``.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import typer

from specdiff.threads import passive_openmp, use_threads

drafter_app = typer.Typer(
    help="Drafters for any transformers causal-LM verifier, trained offline on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """``specdiff.cli.friendly_errors``, looked up when the command runs (cli imports this module)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from specdiff.cli import friendly_errors

        return friendly_errors(func)(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class DrafterTrainOptions:
    out: Path
    verifier: str | None = None
    pair: str | None = None
    budget_minutes: float | None = None  # None: the recipe's own budgets
    resume: bool = True
    smoke: bool = False
    threads: int = 1
    command: str = ""

    def verifier_location(self) -> str:
        """The verifier's folder or id: ``--verifier`` as given, or the named pair's verifier."""
        from specdiff.errors import SpecdiffError

        if (self.verifier is None) == (self.pair is None):
            raise SpecdiffError("name the verifier with --verifier PATH_OR_ID or --pair smol (exactly one of them)")
        if self.pair is None:
            return str(self.verifier)
        from specdiff.pairs import check_pair_name

        if check_pair_name(self.pair) != "smol":
            raise SpecdiffError(f"--pair {self.pair} brings its own drafters; --pair smol is the one to train for")
        from specdiff.verifiers.smol import convert_smol

        return str(convert_smol())

    def config(self):
        from specdiff.errors import SpecdiffError
        from specdiff.training.drafter_config import DrafterRecipeConfig

        cfg = DrafterRecipeConfig.smoke() if self.smoke else DrafterRecipeConfig()
        cfg = replace(cfg, threads=self.threads, command=self.command)
        if self.budget_minutes is not None:
            if self.budget_minutes <= 0:
                raise SpecdiffError(f"--budget-minutes must be positive (got {self.budget_minutes:g})")
            cfg = cfg.with_budget(self.budget_minutes)
        return cfg


_D = DrafterTrainOptions(out=Path("."))


@drafter_app.callback()
def _group() -> None:
    """Keeps `train` a subcommand even while it is the only one."""


@drafter_app.command()
@_friendly
def train(
    out: Path = typer.Option(..., "--out", help="Working folder: data, checkpoints, loss curves, the export."),
    verifier: str | None = typer.Option(None, "--verifier", help="The verifier's folder or (cached) hub id."),
    pair: str | None = typer.Option(None, "--pair", help="Train for a named pair's verifier (smol)."),
    budget_minutes: float | None = typer.Option(
        None, "--budget-minutes", help="Total minutes for the budgeted stages (distillation and training), "
        "shared in the recipe's proportions; default: the recipe's own (68)."
    ),
    resume: bool = typer.Option(_D.resume, "--resume/--no-resume", help="Skip finished stages, continue the rest."),
    smoke: bool = typer.Option(_D.smoke, "--smoke", help="A tiny drafter, a few steps per stage (seconds)."),
    threads: int = typer.Option(_D.threads, "--threads", help="torch threads (1: share the machine)."),
) -> None:
    """Corpus, the verifier's continuations, AR drafter, diffusion drafter, evaluation, export."""
    passive_openmp()
    use_threads(threads)
    from specdiff.training.drafter_recipe import train_drafter_recipe

    opts = DrafterTrainOptions(out=out, verifier=verifier, pair=pair, budget_minutes=budget_minutes, resume=resume,
                               smoke=smoke, threads=threads,
                               command=" ".join(["specdiff", *map(shlex.quote, sys.argv[1:])]))
    results = train_drafter_recipe(opts.verifier_location(), out, opts.config(), resume=opts.resume)
    typer.echo(f"exported to {results['export']['export_dir']}")
