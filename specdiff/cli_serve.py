"""``specdiff serve``: an OpenAI-compatible server on the batched decoder (``specdiff.server``).

A thin command: it loads the pair, builds a ``ServerConfig`` and calls ``specdiff.server.run.serve``.
"""

from __future__ import annotations

from typing import Any

import typer

from specdiff.cli_evals import friendly_errors
from specdiff.threads import CLI_THREADS, THREADS_ENV, THREADS_HELP

_HOST, _PORT, _BATCH = "127.0.0.1", 8000, 16


def served_name(pair: str | None, drafter: str | None, verifier: str | None) -> str:
    """The name a pair is served under (the pair's, else the verifier folder's), the choice checked."""
    from specdiff.errors import SpecdiffError
    from specdiff.loading import check_model_pair
    from specdiff.pairs import check_pair_name

    if pair is not None:
        if drafter is not None or verifier is not None:
            raise SpecdiffError("pass --pair or --drafter/--verifier, not both")
        return check_pair_name(pair)
    check_model_pair(drafter, verifier)
    return "pocket" if verifier is None else verifier.rstrip("/").rsplit("/", 1)[-1]


def load_served(pair: str | None, drafter: str | None, verifier: str | None, dtype: str | None,
                device_map: str | None) -> Any:
    """The decoder: a named pair, two model folders, or the pocket pair."""
    if pair is not None:
        from specdiff.pairs import load_pair

        return load_pair(pair)
    from specdiff.loaders import load_decoder

    return load_decoder(drafter, verifier, dtype, device_map)


@friendly_errors
def serve(
    pair: str | None = typer.Option(None, help="A named pair (pocket, smol). Default: the pocket pair."),
    drafter: str | None = typer.Option(None, help="Drafter folder or hub id (with --verifier)."),
    verifier: str | None = typer.Option(None, help="Verifier folder or hub id (with --drafter)."),
    dtype: str | None = typer.Option(None, help="e.g. bfloat16 (default: the checkpoint's)."),
    device_map: str | None = typer.Option(None, help="e.g. auto, cuda, cpu."),
    host: str = typer.Option(_HOST, help="Address to listen on."),
    port: int = typer.Option(_PORT, help="Port to listen on."),
    max_batch_size: int = typer.Option(_BATCH, help="Most requests in the running batch; the rest queue."),
    block_size: int | None = typer.Option(None, help="Fixed draft block for every round (default: adaptive)."),
    steps: int | None = typer.Option(None, help="Fixed denoising steps for every round (default: adaptive)."),
    proposer: str | None = typer.Option(None, help="Who drafts every round: diffusion or ngram (default: adaptive)."),
    served_model_name: str | None = typer.Option(None, help="The model name clients send (default: the pair's)."),
    chat_template: str | None = typer.Option(
        None, help="A Jinja chat template or a file holding one; 'plain' for simple role tags "
                   "(for models whose tokenizer has none, like the pocket pair)."),
    threads: int = typer.Option(CLI_THREADS, envvar=THREADS_ENV, help=THREADS_HELP),
) -> None:
    """Serve the pair over OpenAI's /v1/completions and /v1/chat/completions, batching concurrent requests."""
    from specdiff.cli import start_work

    start_work(threads)
    from specdiff.args import GenerateArgs
    from specdiff.server.app import ServerConfig
    from specdiff.server.run import serve as run_server

    # Every option is checked before the models load.
    args = GenerateArgs(block_size=block_size, denoising_steps=steps, proposer=proposer)
    name = served_model_name or served_name(pair, drafter, verifier)
    config = ServerConfig(model_name=name, max_batch_size=max_batch_size, args=args, chat_template=chat_template,
                          host=host, port=port)
    run_server(load_served(pair, drafter, verifier, dtype, device_map), config)
