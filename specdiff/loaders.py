"""Loaders: ready decoders from named models, and the embedded default shipped in the package.

``load_decoder(drafter, verifier)`` loads a DiffusionGemma drafter and a causal-LM verifier from
folders or hub ids (with the n-gram lookup beside the drafter). ``load_pocket()`` returns a ready
``SpeculativeDecoder`` over the pocket Gemma 4 verifier, its DiffusionGemma drafter
(``specdiff/pocket_models``) and the n-gram lookup, with the tokenizer attached. Nothing is
downloaded: the folders are package data. ``specdiff pocket train`` rebuilds them from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specdiff.errors import SpecdiffError

POCKET_DIR = Path(__file__).parent / "pocket_models"
DEMO_PROMPT = '''def read_lines(path, encoding="utf-8"):
    """Return the lines of the file at *path*, without trailing newlines."""
    with open(path, encoding=encoding) as f:
'''


def pocket_folder(name: str) -> Path:
    """The shipped folder of one pocket model: ``verifier``, ``drafter`` or ``ar_drafter``."""
    folder = POCKET_DIR / name
    if not (folder / "config.json").is_file():
        raise SpecdiffError(
            f"the pocket model {name!r} is not in {POCKET_DIR}; reinstall specdiff, or rebuild the pocket "
            "pair with `specdiff pocket train --out DIR` (it exports there)"
        )
    return folder


def load_pocket(controller: Any | None = None, proposal_mode: Any | None = None, **kwargs: Any) -> Any:
    """The pocket pair as a ``SpeculativeDecoder`` (float32 on the CPU unless kwargs say otherwise).

    Args:
        controller: the decoder's policy (the default controller when omitted).
        proposal_mode: the drafter's ``ProposalMode`` (AUTO when omitted).
        kwargs: passed to both ``from_pretrained`` calls (``dtype``, ``device_map``, ...).
    """
    import torch

    from specdiff.decoding import SpeculativeDecoder
    from specdiff.drafts import ContextSeed, DiffusionGemmaDrafter, NgramLookup, ProposalMode
    from specdiff.verifiers import CausalLMVerifier

    # The weights are stored in bfloat16 to keep the package small; CPUs run float32 far faster.
    kwargs.setdefault("dtype", torch.float32)
    drafter = DiffusionGemmaDrafter.from_pretrained(
        pocket_folder("drafter"), proposal_mode=proposal_mode or ProposalMode.AUTO, **kwargs
    )
    verifier = CausalLMVerifier.from_pretrained(pocket_folder("verifier"), **kwargs)
    # The n-gram lookup the drafter seeds its canvases with drafts as a proposer of its own too.
    lookup = NgramLookup(verifier.vocab_size, drafter.context_seed or ContextSeed(), drafter.canvas_length)
    return SpeculativeDecoder([drafter, lookup], verifier, controller=controller)


def load_decoder(drafter: str | None, verifier: str | None, dtype: str | None = None,
                 device_map: str | None = None) -> Any:
    """A ``SpeculativeDecoder`` for the named models (with an n-gram lookup beside the drafter), or
    the pocket pair when neither is named."""
    from specdiff.loading import check_model_pair, resolve_model_location
    from specdiff.model_checks import check_device_map, check_model_files

    check_model_pair(drafter, verifier)
    if drafter is None:
        return load_pocket()
    from transformers import AutoModelForCausalLM, DiffusionGemmaForBlockDiffusion

    # Both models checked before either loads: a mistake in the second costs no wait for the first.
    check_device_map(device_map)
    check_model_files(DiffusionGemmaForBlockDiffusion, resolve_model_location(drafter))
    check_model_files(AutoModelForCausalLM, resolve_model_location(verifier))
    from specdiff.decoding import SpeculativeDecoder
    from specdiff.drafts import ContextSeed, DiffusionGemmaDrafter, NgramLookup
    from specdiff.verifiers import CausalLMVerifier

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    diffusion = DiffusionGemmaDrafter.from_pretrained(drafter, **kwargs)
    target = CausalLMVerifier.from_pretrained(verifier, **kwargs)
    lookup = NgramLookup(target.vocab_size, diffusion.context_seed or ContextSeed(), diffusion.canvas_length)
    return SpeculativeDecoder([diffusion, lookup], target)
