"""What any staged training recipe needs: a ``done.json`` per finished stage (so a rerun skips
it and a killed run resumes), rich progress bars, and loss-curve plots."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

StepHook = Callable[[str, int], None]  # (stage, step); raising interrupts that stage


def done_path(out_dir: Path, stage: str) -> Path:
    return out_dir / stage / "done.json"


def read_done(out_dir: Path, stage: str) -> dict | None:
    path = done_path(out_dir, stage)
    return json.loads(path.read_text()) if path.exists() else None


def mark_done(out_dir: Path, stage: str, info: dict) -> dict:
    path = done_path(out_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, default=str))
    return info


class Progress:
    """Rich progress bars, one per stage, plus a plain log line at each held-out evaluation."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.bar = Progress(
            TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console,
        )

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def log(self, msg: str) -> None:
        self.bar.console.log(msg)

    def stage(self, name: str, hook: StepHook | None):
        task = self.bar.add_task(name, total=None, info="")

        def update(step: int, done: int, total: int, metrics: dict) -> None:
            info = f"step {step}  loss {metrics['loss']:.3f}"
            if metrics.get("heldout") == metrics.get("heldout"):  # not NaN: an evaluation ran
                info += f"  held-out {metrics['heldout']:.3f}"
                self.log(f"{name} step {step} loss {metrics['loss']:.4f} held-out {metrics['heldout']:.4f}")
            self.bar.update(task, completed=done, total=total, info=info)
            if hook:
                hook(name, step)

        return update


def plot_losses(csv_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(df["step"], df["train_loss"], label="train (EMA)")
    ho = df.dropna(subset=["heldout_loss"])
    if len(ho):
        ax.plot(ho["step"], ho["heldout_loss"], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def run_stages(out_dir: Path, stages: Sequence[str], run_stage: Callable[[str], dict], progress: Progress,
               resume: bool = True) -> dict[str, dict]:
    """Run each stage in order unless its ``done.json`` exists (with ``resume``); returns every
    stage's record, ``stage_wall_s`` added to the ones run now.

    Without ``resume`` a stage's old files are removed first (its folders are kept: callers that
    resume mid-stage find their checkpoints there).
    """
    results: dict[str, dict] = {}
    for stage in stages:
        done = read_done(out_dir, stage) if resume else None
        if done is not None:
            progress.log(f"{stage}: done, skipped")
            results[stage] = done
            continue
        if not resume:
            for stale in (out_dir / stage).glob("*"):
                if stale.is_file():
                    stale.unlink()
        t0 = time.monotonic()
        progress.log(f"{stage}: starting")
        info = run_stage(stage)
        info["stage_wall_s"] = time.monotonic() - t0
        results[stage] = mark_done(out_dir, stage, info)
        summary = {k: v for k, v in info.items() if isinstance(v, (int, float))}
        progress.log(f"{stage}: done {json.dumps(summary, default=str)}")
    return results
