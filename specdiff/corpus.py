"""The pocket corpus: the Python standard library's own sources, split by file.

The split is a pure function of each file's path relative to the stdlib root, so every
machine with the same Python version agrees on it without a manifest:

* held-out files (about 5%, by a SHA-256 of the relative path) never reach training; the
  evaluation suites build their prompts from them (`heldout_files()`);
* every other non-test module is training text (`train_files()`).

Documents are whole files, joined with `<eos>` between them. The tokenizer is a byte-level
BPE trained on the training files only and saved as a `PreTrainedTokenizerFast`, so
`AutoTokenizer.from_pretrained(folder)` works offline.
"""

from __future__ import annotations

import functools
import hashlib
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

HELDOUT_PER_MILLE = 50
VOCAB_SIZE = 4096
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0, 1, 2, 3

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


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str]):
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``; the special tokens take the
    first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_tokenizer(rel_paths: Sequence[str], out_dir: Path, vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE on `rel_paths` and save it as a fast tokenizer folder."""
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_level_bpe(iter_documents(rel_paths), vocab_size, SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def encode_documents(tokenizer, rel_paths: Sequence[str]) -> list[int]:
    """Token ids of all documents, each followed by `<eos>` (a flat stream for packing)."""
    eos = tokenizer.eos_token_id
    texts = list(iter_documents(rel_paths))
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return ids
