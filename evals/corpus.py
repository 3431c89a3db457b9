"""The offline corpus: the Python standard library's own sources, split by file.

The split is a pure function of each file's path relative to the stdlib root, so every
machine with the same Python version agrees on it without a manifest:

* held-out files (about 5%, by a SHA-256 of the relative path) never reach training; the
  evaluation suites build their prompts from them (`heldout_files()`);
* every other non-test module is training text (`train_files()`).

Documents are whole files, joined with `<eos>` between them; the training recipes' tokenizer is
trained on the training files only (``specdiff.training.corpus``).
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path

HELDOUT_PER_MILLE = 50

# Directory names anywhere in the relative path that mark tests, third-party code or build
# artefacts rather than library modules.
_SKIPPED_DIRS = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idle_test",
        "__pycache__",
        "turtledemo",
        "__phello__",
        "ensurepip",
        "lib-dynload",
    }
)
# Generated data that reads nothing like code (pydoc's topic dump is 0.7 MB of prose).
_SKIPPED_FILES = frozenset({"pydoc_data/topics.py"})


def stdlib_root() -> Path:
    """The base interpreter's stdlib directory (a venv's `sysconfig` already points there)."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def _is_library_module(rel: Path) -> bool:
    if rel.suffix != ".py" or rel.as_posix() in _SKIPPED_FILES:
        return False
    if any(part in _SKIPPED_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
        return False
    return not (rel.name.startswith("test_") or rel.name == "conftest.py")


def is_heldout(rel_path: str) -> bool:
    """Whether a stdlib-relative POSIX path belongs to the held-out set (stable, pure)."""
    digest = hashlib.sha256(rel_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 1000 < HELDOUT_PER_MILLE


def library_files(root: Path | None = None) -> list[str]:
    """All non-test stdlib module paths, relative to `root`, sorted."""
    return list(_library_files(stdlib_root() if root is None else root))


@functools.lru_cache(maxsize=4)
def _library_files(root: Path) -> tuple[str, ...]:
    # Walking the stdlib (13k files with site-packages) takes seconds; the split is asked often.
    rels = (p.relative_to(root) for p in root.rglob("*.py"))
    return tuple(sorted(rel.as_posix() for rel in rels if _is_library_module(rel)))


def train_files(root: Path | None = None) -> list[str]:
    return [rel for rel in library_files(root) if not is_heldout(rel)]


def heldout_files(root: Path | None = None) -> list[str]:
    return [rel for rel in library_files(root) if is_heldout(rel)]


def read_source(rel_path: str, root: Path | None = None) -> str:
    # A few stdlib files are Latin-1 or deliberately malformed; keep them, lossy.
    root = stdlib_root() if root is None else root
    return (root / rel_path).read_bytes().decode("utf-8", errors="replace")


def iter_documents(rel_paths: Sequence[str], root: Path | None = None) -> Iterator[str]:
    for rel in rel_paths:
        yield read_source(rel, root)
