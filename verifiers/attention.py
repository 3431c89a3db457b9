"""Grouped-query attention for multi-token verifier forwards, without copying the KV cache.

transformers' ``sdpa`` attention (5.24) expands a grouped-query model's key and value states to
every query head (``repeat_kv``: a copy of the layer's whole cache) whenever a forward carries an
attention mask and more than one query token: every verification forward (a block scored against a
longer cache always carries a mask, a batch's padding too). A one-token forward (plain decoding,
``generate()``) packs the query heads instead and copies nothing, so the copy taxes exactly the
forwards speculation adds. On the CPU, ``scaled_dot_product_attention(..., enable_gqa=True)`` takes
the mask and the grouped states as they are and gives bit-identical outputs
(``tests/verifiers/test_attention.py``). Measured on the pocket verifier, B = 8 rows, 5 query tokens,
220 cached slots, one thread: 25.6 -> 23.7 ms a forward (median of 40 interleaved,
``benchmarks/gqa_attention.py``; ``benchmarks/results/batch_bench.md``, run G).

``GQA_SDPA`` names this attention for ``model.set_attn_implementation``; everything else (one query
token, no mask, no grouping, a position bias, soft-capping) goes to transformers' own ``sdpa``, and
masks are built exactly as for ``sdpa``. On CUDA a masked ``enable_gqa`` call falls back to the math
kernel, so ``use_grouped_attention`` switches only models on the CPU, and never a model whose own
code branches on the name ``sdpa`` (``branches_on_sdpa``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

GQA_SDPA = "specdiff_gqa_sdpa"


def gqa_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: ``query`` ``[B, H, Q, D]``, ``key`` / ``value``
    ``[B, H_kv, S, D]``, ``attention_mask`` ``[B, 1, Q, S]`` (bool or additive) -> ``[B, Q, H, D]``."""
    groups = getattr(module, "num_key_value_groups", 1)
    if (groups == 1 or query.shape[2] == 1 or attention_mask is None
            or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None):
        # transformers' own path already copies nothing here (or does what this one cannot).
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # With a mask, transformers' sdpa never sets is_causal: the mask carries causality.
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(GQA_SDPA, gqa_sdpa_forward)
AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)


def branches_on_sdpa(model: Any) -> bool:
    """Whether the model's own code treats the name ``sdpa`` specially, where another name would change
    what it does (Falcon, GLM-5 Next). Gemma 4's one such branch is in its KV-shared layers, which a
    model without them never reaches."""
    try:
        source = Path(inspect.getfile(type(model))).read_text(encoding="utf-8")
    except (OSError, TypeError):  # a class without a readable source file: assume it may branch
        return True
    if '_attn_implementation == "sdpa"' not in source and '_attn_implementation != "sdpa"' not in source:
        return False
    config = model.config.get_text_config(decoder=True)
    return not (str(config.model_type).startswith("gemma4") and not getattr(config, "num_kv_shared_layers", 0))


def use_grouped_attention(model: Any) -> bool:
    """Switch a CPU model on transformers' ``sdpa`` with grouped KV heads to ``GQA_SDPA``; whether it did."""
    config = model.config.get_text_config(decoder=True)
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    grouped = heads is not None and kv_heads is not None and heads != kv_heads
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not (grouped and on_cpu and model.config._attn_implementation == "sdpa") or branches_on_sdpa(model):
        return False
    model.set_attn_implementation(GQA_SDPA)
    return True
