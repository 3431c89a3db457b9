"""Tiny Gemma 4 and DiffusionGemma checkpoints with random weights, built and saved locally.

Tests build these in fixtures, and ``specdiff tiny build DIR`` writes a pair to disk, so the real
loading path (``from_pretrained`` of a folder) runs without any download. They accept almost
nothing (random weights): use the pocket pair (``specdiff.load_pocket``) to see real acceptance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    DiffusionGemmaConfig,
    DiffusionGemmaForBlockDiffusion,
    Gemma4ForCausalLM,
    Gemma4TextConfig,
    PreTrainedTokenizerFast,
)


@dataclass(frozen=True)
class TinyShape:
    """A small text-model shape shared by the verifier and the drafter."""

    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    sliding_window: int = 16
    max_position_embeddings: int = 1024


def text_config_kwargs(shape: TinyShape, *, moe: bool) -> dict:
    """Gemma 4 text-config arguments for a dense (verifier) or MoE (drafter) model of ``shape``:
    the pocket recipe's builder (``specdiff.training.lm.text_config_kwargs``, which avoids
    Gemma 4's large defaults), with every layer but the last sliding and tiny MoE experts."""
    from specdiff.training.lm import TextShape
    from specdiff.training.lm import text_config_kwargs as gemma4_text_kwargs

    layers = shape.num_hidden_layers
    text_shape = TextShape(
        num_layers=layers,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_heads=shape.num_attention_heads,
        num_kv_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        sliding_window=shape.sliding_window,
        full_attention_every=layers,  # only the last layer attends globally
        num_experts=4 if moe else 0,
        top_k_experts=2,
        moe_intermediate_size=shape.intermediate_size // 2 if moe else 0,
    )
    kwargs = gemma4_text_kwargs(text_shape, shape.vocab_size, dict(pad_token_id=0, bos_token_id=1, eos_token_id=2))
    kwargs["max_position_embeddings"] = shape.max_position_embeddings
    return kwargs


def tiny_verifier(shape: TinyShape = TinyShape(), seed: int = 0) -> Gemma4ForCausalLM:
    torch.manual_seed(seed)
    config = Gemma4TextConfig(**text_config_kwargs(shape, moe=False))
    return Gemma4ForCausalLM(config).eval()


def tiny_drafter(shape: TinyShape = TinyShape(), canvas_length: int = 16, seed: int = 1) -> (
    DiffusionGemmaForBlockDiffusion
):
    torch.manual_seed(seed)
    config = DiffusionGemmaConfig(
        text_config=text_config_kwargs(shape, moe=True),
        # Without a tiny vision tower the default builds a 167M-parameter one.
        vision_config={"model_type": "gemma4_vision", "hidden_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8,
                       "intermediate_size": 32},
        canvas_length=canvas_length,
    )
    return DiffusionGemmaForBlockDiffusion(config).eval()


def tiny_tokenizer(vocab_size: int = TinyShape.vocab_size) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of at most ``vocab_size`` ids, trained on the shipped prompt suites.

    Ids 0, 1 and 2 are ``<pad>``, ``<bos>`` and ``<eos>``, matching the tiny configs. The suites are
    fixed data: trained on specdiff's own source, the tokenizer (and so every tiny test's token ids)
    changed with each edit of the package.
    """
    from specdiff.evals.suites import BUILTIN_SUITES, load_suite
    from specdiff.training.corpus import train_byte_level_bpe

    texts = [p.prompt for name in BUILTIN_SUITES for p in load_suite(name).prompts]
    tok = train_byte_level_bpe(texts, vocab_size, ["<pad>", "<bos>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")


def build_tiny_pair(out_dir: str | Path, shape: TinyShape = TinyShape(), canvas_length: int = 16) -> (
    tuple[Path, Path]
):
    """Save a tiny verifier and drafter, each with the tiny tokenizer, under ``out_dir``."""
    out = Path(out_dir)
    verifier_dir, drafter_dir = out / "verifier", out / "drafter"
    tokenizer = tiny_tokenizer(shape.vocab_size)
    for model, folder in ((tiny_verifier(shape), verifier_dir), (tiny_drafter(shape, canvas_length), drafter_dir)):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return verifier_dir, drafter_dir
