"""`specdiff pocket ...`: train the embedded pocket pair (thin: builds a config, calls the library)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

pocket_app = typer.Typer(
    help=(
        "The pocket pair: a tiny Gemma 4 verifier, a DiffusionGemma drafter and an AR drafter, "
        "trained on the Python standard library's sources on CPU (about 115 minutes on 2 cores)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass(frozen=True)
class PocketTrainOptions:
    out: Path
    resume: bool = True
    minutes_scale: float = 1.0
    smoke: bool = False
    export_dir: Path | None = None

    def config(self):
        from specdiff.loaders import POCKET_DIR
        from specdiff.training.pocket_config import PocketConfig

        export_dir = self.export_dir or (self.out / "pocket_models" if self.smoke else POCKET_DIR)
        if self.smoke:
            return PocketConfig.smoke(export_dir=export_dir, minutes_scale=self.minutes_scale)
        return PocketConfig(minutes_scale=self.minutes_scale, export_dir=export_dir)


_D = PocketTrainOptions(out=Path("."))


@pocket_app.callback()
def _group() -> None:
    """Keeps `train` a subcommand even while it is the only one."""


@pocket_app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Working folder: checkpoints, loss curves, stage markers."),
    resume: bool = typer.Option(_D.resume, "--resume/--no-resume", help="Skip finished stages, continue the rest."),
    minutes_scale: float = typer.Option(
        _D.minutes_scale, "--minutes-scale", help="Multiply every stage's time budget."
    ),
    smoke: bool = typer.Option(_D.smoke, "--smoke", help="Tiny models, a few steps per stage (seconds)."),
    export_dir: Path | None = typer.Option(
        None,
        "--export-dir",
        help="Where to export (default: the package's pocket_models; OUT/pocket_models with --smoke).",
    ),
) -> None:
    """Run the pocket training recipe: tokenizer, verifier, AR drafter, distillation, diffusion drafter, export."""
    # Passive OpenMP threads: with busy spinning, two threads on cores shared with other jobs
    # ran a training step 5-15x slower than one thread (measured); passive is never worse.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from specdiff.training.pocket import train_pocket

    opts = PocketTrainOptions(out=out, resume=resume, minutes_scale=minutes_scale, smoke=smoke, export_dir=export_dir)
    results = train_pocket(out, opts.config(), resume=opts.resume)
    typer.echo(f"exported to {results['export']['export_dir']}")


if __name__ == "__main__":
    pocket_app()
