"""The ``specdiff`` command line: thin commands that build a config and call the library.

Every command turns a ``SpecdiffError`` (and any other failure) into one line on stderr and exit
code 2; ``SPECDIFF_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from specdiff.args import GenerateArgs
from specdiff.pairs import CHAT_PAIRS, DEFAULT_PAIR, PAIR_HELP, Models
from specdiff.threads import CLI_THREADS, THREADS_ENV, THREADS_HELP, passive_openmp, use_threads

app = typer.Typer(
    name="specdiff",
    help=(
        "Lossless speculative decoding: a DiffusionGemma drafter proposes a block of tokens, an "
        "autoregressive verifier keeps the longest acceptable prefix in one forward pass. Output is "
        "exactly the verifier's own (greedy: same tokens; sampling: same distribution), only sooner. "
        "With no model named, commands use the embedded pocket pair."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Print one clear line and exit 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(code=130) from None
        except Exception as err:  # noqa: BLE001 - the CLI boundary: everything becomes one line
            if os.environ.get("SPECDIFF_DEBUG"):
                raise
            from specdiff.errors import SpecdiffError

            kind = "" if isinstance(err, SpecdiffError) else f"{type(err).__name__}: "
            err_console.print(f"[bold red]error:[/] {kind}{err}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class GenerateOptions:
    """What ``specdiff generate`` runs: the prompt, the models, and the generation's arguments."""

    prompt: str | list[dict[str, str]]
    args: GenerateArgs = GenerateArgs()
    models: Models = Models()
    dtype: str | None = None
    device_map: str | None = None


_ARGS = GenerateArgs()  # the CLI's generation defaults are the library's


def run_generate(options: GenerateOptions) -> Any:
    """Load the models and generate; returns the ``GenerationResult``."""
    decoder = options.models.load(options.dtype, options.device_map)
    return decoder.generate(options.prompt, options.args)


def threads_option() -> Any:
    return typer.Option(CLI_THREADS, envvar=THREADS_ENV, help=THREADS_HELP)


def start_work(threads: int) -> None:
    """What every command does first: its torch threads (OpenMP told not to spin, before torch loads)."""
    passive_openmp()
    use_threads(threads)


def read_prompt(prompt: str) -> str:
    """``-`` reads the prompt from standard input; an empty prompt is refused."""
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        from specdiff.errors import SpecdiffError

        raise SpecdiffError("the prompt is empty; pass some text to continue (or - to read it from standard input)")
    return prompt


@app.command()
@friendly_errors
def generate(
    prompt: str = typer.Argument(..., help="Text to continue; - reads it from standard input."),
    chat: bool = typer.Option(False, "--chat", help="PROMPT is a user message: answer it through the chat template."),
    pair: str | None = typer.Option(None, help=PAIR_HELP),
    drafter: str | None = typer.Option(None, help="Drafter folder or hub id (with --verifier)."),
    verifier: str | None = typer.Option(None, help="Verifier folder or hub id (with --drafter)."),
    proposer: str | None = typer.Option(
        None, help="Who drafts every round: diffusion or ngram. Default: the controller picks per round."
    ),
    block_size: int | None = typer.Option(
        _ARGS.block_size, help="Draft tokens per round. Default: the controller's."
    ),
    steps: int | None = typer.Option(
        _ARGS.denoising_steps,
        help="Cap on the diffusion drafter's denoising steps per round. Default: the controller's.",
    ),
    temperature: float = typer.Option(_ARGS.temperature, help="0 = greedy."),
    top_k: int | None = typer.Option(_ARGS.top_k, help="Verifier top-k (unset or 0: none)."),
    top_p: float | None = typer.Option(_ARGS.top_p, help="Verifier top-p in (0, 1] (unset: none)."),
    max_new_tokens: int = typer.Option(_ARGS.max_new_tokens, help="Most new tokens."),
    seed: int | None = typer.Option(_ARGS.seed, help="Seed: the same seed repeats a run exactly."),
    dtype: str | None = typer.Option(None, help="e.g. bfloat16 (default: the checkpoint's)."),
    device_map: str | None = typer.Option(None, help="e.g. auto, cuda, cpu."),
    threads: int = threads_option(),
) -> None:
    """Continue PROMPT by speculative decoding and print the text and a summary."""
    start_work(threads)
    args = GenerateArgs(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, block_size=block_size, denoising_steps=steps, proposer=proposer)
    prompt = read_prompt(prompt)
    request = [{"role": "user", "content": prompt}] if chat else prompt
    result = run_generate(GenerateOptions(request, args, Models(pair, drafter, verifier), dtype, device_map))
    print_generation(prompt if not chat else f"user: {prompt}\nassistant: ", result)


def print_generation(prompt: str, result: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"[dim]{escape(prompt)}[/]", end="", highlight=False, markup=True, soft_wrap=True)
    console.print(result.text, highlight=False, markup=False, soft_wrap=True)
    split = result.time_split()
    total = sum(split.values()) or 1.0
    table = Table(title="speculative decoding", show_header=False, title_justify="left")
    table.add_row("new tokens", str(len(result.token_ids)))
    table.add_row("tokens/s", f"{result.tokens_per_s:.1f}")
    table.add_row("rounds", str(result.num_rounds))
    table.add_row("mean acceptance length", f"{result.mean_acceptance_length:.2f}")
    table.add_row("acceptance rate", f"{result.acceptance_rate:.1%}")
    table.add_row(
        "round time split",
        f"draft {split['draft_s'] / total:.0%} · verify {split['verify_s'] / total:.0%} · "
        f"other {split['other_s'] / total:.0%}",
    )
    console.print(table)


@dataclass(frozen=True)
class DemoOptions:
    """What ``specdiff demo`` runs: a prompt (None: the built-in one) and the generation's arguments."""

    prompt: str | None = None
    args: GenerateArgs = GenerateArgs(max_new_tokens=256)
    pair: str = DEFAULT_PAIR


_DEMO = DemoOptions()
# A pair whose verifier answers chat gets a question; the others continue code.
DEMO_CHAT = "Explain in a few sentences what a Python generator is, with a short example."


def demo_request(pair: str, prompt: str | None) -> str | list[dict[str, str]]:
    """The demo's input for ``pair``: the prompt given (a user message for a chat pair), else the built-in one."""
    from specdiff.loaders import DEMO_PROMPT
    from specdiff.pairs import check_pair_name

    chat = check_pair_name(pair) in CHAT_PAIRS
    prompt = (DEMO_CHAT if chat else DEMO_PROMPT) if prompt is None else read_prompt(prompt)
    return [{"role": "user", "content": prompt}] if chat else prompt


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Answer (or continue) a prompt with a pair, and with its verifier alone, side by side.

    Returns the speculative ``result``, the verifier's own ``reference`` tokens, both wall-clock
    times, and whether the outputs are identical.
    """
    import time

    import torch

    from specdiff.pairs import load_pair

    prompt = demo_request(options.pair, options.prompt)
    decoder = load_pair(options.pair)
    ids = decoder.encode_prompt(prompt)
    eos = list(decoder.verifier.eos_token_ids)
    n = options.args.max_new_tokens
    # One short warm-up each, so neither side pays first-call costs inside the timing.
    decoder.generate(prompt, GenerateArgs.of(options.args, {"max_new_tokens": min(n, 8)}))
    decoder.verifier.model.generate(ids, do_sample=False, max_new_tokens=8, eos_token_id=eos)
    start = time.perf_counter()
    with torch.no_grad():
        out = decoder.verifier.model.generate(ids, do_sample=False, max_new_tokens=max(n, 1), eos_token_id=eos)
    plain_s = time.perf_counter() - start
    reference = out[0, ids.shape[1]:].tolist()[:n]
    result = decoder.generate(prompt, options.args)
    return {
        "prompt": prompt,
        "result": result,
        "reference": reference,
        "plain_s": plain_s,
        "identical": result.token_ids == reference,
    }


LOOP_NOTE = (
    "Why the text repeats itself: the pocket verifier is a 5M-parameter model trained for minutes on "
    "CPU, and such a model loops under greedy decoding (loop share {share:.2f}: the share of its 4-grams "
    "seen earlier in the output; real code scores about 0.09). specdiff writes exactly the verifier's "
    "text, loops included, and loops are easy to draft, so this speedup is far above what a real pair shows."
)


@app.command()
@friendly_errors
def demo(
    prompt: str | None = typer.Option(
        _DEMO.prompt, help="Code to continue, or for a chat pair a question (default: a built-in one)."
    ),
    pair: str = typer.Option(_DEMO.pair, help=PAIR_HELP),
    max_new_tokens: int = typer.Option(_DEMO.args.max_new_tokens, help="Most new tokens."),
    block_size: int | None = typer.Option(_DEMO.args.block_size, help="Fixed block size."),
    steps: int | None = typer.Option(_DEMO.args.denoising_steps, help="Fixed denoising steps."),
    threads: int = threads_option(),
) -> None:
    """Continue a code prompt (answer a question, for a chat pair) with a pair; compare with the verifier alone."""
    from specdiff.metrics import loop_share

    start_work(threads)
    args = GenerateArgs.of(_DEMO.args, dict(max_new_tokens=max_new_tokens, block_size=block_size,
                                            denoising_steps=steps))
    out = run_demo(DemoOptions(prompt, args, pair))
    result = out["result"]
    shown = out["prompt"] if isinstance(out["prompt"], str) else f"user: {out['prompt'][0]['content']}\nassistant: "
    print_generation(shown, result)
    plain_tps = len(out["reference"]) / out["plain_s"] if out["plain_s"] > 0 else 0.0
    verdict = "[green]identical[/]" if out["identical"] else "[bold red]DIFFERENT (a bug: please report)[/]"
    console.print(
        f"verifier alone: {plain_tps:.1f} tokens/s · speculative: {result.tokens_per_s:.1f} tokens/s · "
        f"[bold]speedup {result.tokens_per_s / plain_tps if plain_tps else 0:.2f}x[/] · "
        f"mean acceptance length {result.mean_acceptance_length:.2f} · output {verdict}"
    )
    share = loop_share(result.token_ids)
    note = LOOP_NOTE.format(share=share) if pair == "pocket" else f"loop share of this answer: {share:.2f}"
    console.print(note, style="dim", highlight=False)
    if not out["identical"]:
        raise typer.Exit(code=1)


tiny_app = typer.Typer(help="Tiny random-weight checkpoints for trying the loading path offline.",
                       no_args_is_help=True)
app.add_typer(tiny_app, name="tiny")


@tiny_app.command("build")
@friendly_errors
def tiny_build(
    out: Path = typer.Argument(..., help="Folder to write verifier/ and drafter/ into."),
    threads: int = threads_option(),
) -> None:
    """Save a tiny random Gemma 4 verifier and DiffusionGemma drafter (they accept almost nothing)."""
    start_work(threads)
    from specdiff.training.tiny import build_tiny_pair

    verifier_dir, drafter_dir = build_tiny_pair(out)
    console.print(f"verifier: {verifier_dir}\ndrafter:  {drafter_dir}")


def _register_subcommands() -> None:
    # The evals commands and the pocket recipe live beside the code they drive; importing their
    # modules is cheap (heavy imports sit inside each command).
    from specdiff.cli_estimate import estimate
    from specdiff.cli_evals import bench, report, sweep
    from specdiff.cli_pocket import pocket_app
    from specdiff.cli_serve import serve

    for command in (sweep, report, bench, estimate, serve):
        app.command()(command)
    app.add_typer(pocket_app, name="pocket")
    app.add_typer(__import__("specdiff.cli_drafter", fromlist=["drafter_app"]).drafter_app, name="drafter")


_register_subcommands()


def main() -> None:
    passive_openmp()  # before anything loads torch, so OpenMP reads it
    # transformers' per-file progress bars drown the one-line summaries this CLI prints.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    app(prog_name="specdiff")


if __name__ == "__main__":
    sys.exit(main())
