"""CPU threads for the command line: one torch thread unless told otherwise, OpenMP not spinning.

Why one: the pocket models are small, so a second thread buys little on an idle machine, and on a
machine where another process holds a core torch's default (one thread per core) runs 10-28x
slower: OpenMP threads spin-wait at every barrier for a core the other process has. A passive
wait policy (``OMP_WAIT_POLICY=PASSIVE``) makes waiting threads sleep instead; it must be in the
environment before torch loads OpenMP, so the CLI sets it before any command imports torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from specdiff.errors import SpecdiffError

CLI_THREADS = 1
THREADS_ENV = "SPECDIFF_THREADS"
THREADS_HELP = (
    "torch CPU threads (also $SPECDIFF_THREADS). Default 1: the pocket models gain little from more, "
    "and with another process on the cores extra threads spin-wait and run many times slower."
)


def passive_openmp() -> bool:
    """Ask OpenMP to sleep rather than spin while waiting (unless the user chose a policy).

    Returns whether it can still take effect: False once torch (and with it OpenMP) is loaded.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules


def check_threads(threads: int | None, option: str = "--threads") -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise SpecdiffError(f"{option} must be a whole number >= 1 (got {threads!r})")


def use_threads(threads: int | None) -> None:
    """Set torch's CPU threads for this process; None leaves torch's choice (one per core)."""
    check_threads(threads)
    if threads is not None:
        passive_openmp()
        import torch

        torch.set_num_threads(threads)


@contextmanager
def threads_for(threads: int) -> Iterator[None]:
    """torch's CPU threads set to ``threads`` while the block runs, then put back: a library call
    (a training recipe) must not leave the caller's process with a thread count it did not choose."""
    import torch

    before = torch.get_num_threads()
    use_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
