"""The recipes' tokenizer: a byte-level BPE on the offline corpus's training files
(``specdiff.evals.corpus``), saved as a ``PreTrainedTokenizerFast`` so that
``AutoTokenizer.from_pretrained(folder)`` works offline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from specdiff.evals.corpus import (
    heldout_files,
    is_heldout,
    iter_documents,
    library_files,
    read_source,
    stdlib_root,
    train_files,
)

__all__ = ["encode_documents", "heldout_files", "is_heldout", "library_files", "read_source", "stdlib_root",
           "train_byte_level_bpe", "train_files", "train_tokenizer"]

VOCAB_SIZE = 4096
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0, 1, 2, 3


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
