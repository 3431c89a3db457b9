"""The verifier a drafter recipe trains for, and the drafter models built to share its vocabulary.

`load_recipe_verifier` loads any transformers causal LM from a folder (or a cached hub id) with its
tokenizer, refusing early what the recipe cannot use: a folder without tokenizer files, a
tokenizer with no end-of-sequence token, or one whose ids run past the model's output rows (a
drafter must score exactly the verifier's vocabulary). `verifier_vocab` is that shared size.

Both drafters' embedding tables start from the verifier's own, projected to the drafter's width
(`projected_embedding`, the top principal directions of the verifier's input embeddings): tokens
the verifier treats alike start alike, and with the output layer tied to the embedding, as in
every DiffusionGemma, the 49,152-row head a small drafter is mostly made of starts meaningful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from specdiff.errors import SpecdiffError
from specdiff.training.lm import TextShape


def load_recipe_verifier(path_or_id: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a causal-LM verifier, checked for what a drafter needs to share."""
    from transformers import AutoModelForCausalLM

    from specdiff.loading import TOKENIZER_FILES, load_model, load_tokenizer, resolve_model_location

    location = resolve_model_location(path_or_id)
    folder = Path(location)
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise SpecdiffError(
            f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); a drafter shares its verifier's "
            "tokenizer: save it beside the model (tokenizer.save_pretrained(folder))"
        )
    tokenizer = load_tokenizer(location)
    if tokenizer is None:
        raise SpecdiffError(f"the tokenizer in {location} could not be loaded; re-save it with save_pretrained")
    model = load_model(AutoModelForCausalLM, location, dtype=dtype).eval()
    check_shared_vocab(model, tokenizer, str(location))
    return model, tokenizer


def verifier_vocab(model) -> int:
    """Rows of the verifier's output layer: the drafter scores the same ids."""
    return int(model.get_output_embeddings().weight.shape[0])


def check_shared_vocab(model, tokenizer, where: str) -> None:
    vocab = verifier_vocab(model)
    if tokenizer.eos_token_id is None:
        raise SpecdiffError(f"the tokenizer in {where} has no end-of-sequence token; set tokenizer.eos_token")
    if len(tokenizer) > vocab:
        raise SpecdiffError(
            f"the tokenizer in {where} has {len(tokenizer)} ids but the verifier scores only {vocab}: a drafter "
            "could propose ids the verifier cannot score; save the tokenizer that belongs to this model"
        )
    rows = model.get_input_embeddings().weight.shape[0]
    if rows != vocab:
        raise SpecdiffError(
            f"the verifier in {where} embeds {rows} ids but scores {vocab}; the recipe needs one vocabulary for both"
        )


def special_ids(tokenizer) -> dict[str, int | None]:
    """Pad, BOS and EOS ids for the drafter configs (pad falls back to EOS, as ``generate()`` does)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return dict(pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


@torch.no_grad()
def projected_embedding(embedding: torch.Tensor, width: int, target_std: float) -> torch.Tensor:
    """``[V, width]``: the verifier's embedding ``[V, H]`` on its top ``width`` principal directions,
    scaled to ``target_std`` per entry (the drafter's initializer scale, so training starts stable)."""
    table = embedding.float()
    if width > table.shape[1]:
        raise SpecdiffError(f"the drafter is wider ({width}) than the verifier's embedding ({table.shape[1]})")
    centred = table - table.mean(dim=0, keepdim=True)
    # Top right-singular vectors of the centred table, via the small [H, H] covariance.
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projected = centred @ vectors[:, -width:].flip(-1)  # [V, width], strongest direction first
    return projected * (target_std / projected.std().clamp_min(1e-12))


def init_embedding(model, verifier, embed_std: float) -> None:
    """Overwrite ``model``'s (tied) input embedding with the verifier's, projected to its width."""
    weight = model.get_input_embeddings().weight
    weight.data.copy_(projected_embedding(verifier.get_input_embeddings().weight, weight.shape[1], embed_std))


def build_recipe_models(shape: TextShape, vocab: int, tokenizer, canvas_length: int, seed: int) -> tuple[Any, Any]:
    """``(ar_drafter, drafter)``: a ``Gemma4ForCausalLM`` with DiffusionGemma's layer layout (MoE,
    ``attention_k_eq_v``) and a ``DiffusionGemmaForBlockDiffusion`` of the same shape, both over the
    verifier's ``vocab`` ids; the AR drafter's trained weights later start the drafter's encoder."""
    from specdiff.training.diffusion import build_drafter
    from specdiff.training.lm import build_causal_lm

    if shape.num_experts <= 0:
        raise SpecdiffError("a DiffusionGemma drafter has a mixture-of-experts block: set num_experts > 0")
    ids = special_ids(tokenizer)
    ar = build_causal_lm(shape, vocab, ids, seed=seed)
    drafter = build_drafter(shape, vocab, ids, canvas_length, seed=seed + 1)
    return ar, drafter


def set_generation_ids(model, tokenizer) -> None:
    gen = model.generation_config
    ids = special_ids(tokenizer)
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = ids["eos_token_id"], ids["pad_token_id"], ids["bos_token_id"]
