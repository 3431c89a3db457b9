"""``specdiff serve``: an OpenAI-compatible server on the batched decoder (``specdiff.server``).

A thin command: it loads the pair, builds a ``ServerConfig`` and calls ``specdiff.server.run.serve``.
"""

from __future__ import annotations

import typer

from specdiff.cli_evals import friendly_errors
from specdiff.pairs import PAIR_HELP, Models
from specdiff.threads import CLI_THREADS, THREADS_ENV, THREADS_HELP

_HOST, _PORT, _BATCH = "127.0.0.1", 8000, 16


def served_name(models: Models, dtype: str | None = None) -> str:
    """The name the models are served under (the pair's, else the verifier folder's), the choice checked."""
    return models.check(dtype).labels[1].rstrip("/").rsplit("/", 1)[-1]


@friendly_errors
def serve(
    pair: str | None = typer.Option(None, help=PAIR_HELP),
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
    models = Models(pair, drafter, verifier)
    name = served_model_name or served_name(models, dtype)
    config = ServerConfig(model_name=name, max_batch_size=max_batch_size, args=args, chat_template=chat_template,
                          host=host, port=port)
    run_server(models.load(dtype, device_map), config)
