"""``GenerateArgs``: how to generate, the prompt aside. The library, the CLI, sweeps and the bench
all build this one frozen dataclass, so its defaults and checks live in one place."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from specdiff.errors import SpecdiffError
from specdiff.protocols import Proposer

if TYPE_CHECKING:
    from specdiff.sampling import SamplingConfig


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenerateArgs:
    """Arguments of ``SpeculativeDecoder.generate`` / ``stream``.

    Attributes:
        max_new_tokens: the most new tokens to produce (0 returns nothing).
        temperature: 0 for greedy decoding, else the verifier's sampling temperature.
        top_k, top_p: the verifier's truncation (None: none; top_k 0 also means none, as in
            transformers and the sweep).
        seed: makes the drafter's noise and the sampling repeatable.
        eos_token_id: None for the verifier's generation config, an id, a tuple of ids, or () (never stop).
        block_size: draft tokens per round; with ``denoising_steps`` and ``proposer``, overrides the
            decoder's controller with a fixed choice for this call.
        denoising_steps: the cap on the diffusion drafter's denoising steps per round (>= 1).
        proposer: who drafts when overriding the controller (``Proposer`` or its name).
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    block_size: int | None = None
    denoising_steps: int | None = None
    proposer: Proposer | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 0:
            raise SpecdiffError(f"max_new_tokens must be a whole number >= 0 (got {self.max_new_tokens!r})")
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature):
            raise SpecdiffError(f"temperature must be a finite number >= 0 (got {self.temperature!r})")
        for name in ("block_size", "denoising_steps", "seed", "top_k"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise SpecdiffError(f"{name} must be a whole number (got {value!r})")
        if self.block_size is not None and self.block_size < 1:
            raise SpecdiffError(f"block_size must be >= 1 (got {self.block_size})")
        if self.denoising_steps is not None and self.denoising_steps < 1:
            raise SpecdiffError(
                f"denoising_steps must be >= 1 (got {self.denoising_steps}); to draft without a model, "
                "pass proposer='ngram'"
            )
        if self.top_k == 0:
            object.__setattr__(self, "top_k", None)
        if isinstance(self.proposer, str):
            object.__setattr__(self, "proposer", proposer_named(self.proposer))
        if self.proposer is Proposer.PLAIN:
            raise SpecdiffError("proposer 'plain' drafts nothing; use the verifier's own generate() for that")
        if self.proposer is not None and not self.proposer.denoises and self.denoising_steps is not None:
            raise SpecdiffError(f"denoising_steps apply to the diffusion drafter, not to the {self.proposer.value} "
                                "proposer; drop one of the two")
        eos = self.eos_token_id
        if eos is not None and not _is_int(eos):
            ids = tuple(eos)
            if not all(_is_int(e) for e in ids):
                raise SpecdiffError(f"eos_token_id must be an id or a list of ids (got {eos!r})")
            object.__setattr__(self, "eos_token_id", ids)
        if self.temperature or self.top_k is not None or self.top_p is not None:
            self.sampling  # noqa: B018 - its own checks, early (the defaults pass them)

    @property
    def sampling(self) -> SamplingConfig:
        from specdiff.sampling import SamplingConfig

        return SamplingConfig(self.temperature, self.top_k, self.top_p)

    @property
    def overrides_controller(self) -> bool:
        return self.block_size is not None or self.denoising_steps is not None or self.proposer is not None

    @classmethod
    def of(cls, args: GenerateArgs | None, overrides: dict[str, Any]) -> GenerateArgs:
        """``args`` (or the defaults) with ``overrides`` applied; an unknown name is an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise SpecdiffError(
                f"unknown generation argument(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        base = {f.name: getattr(args, f.name) for f in fields(cls)} if args is not None else {}
        return cls(**(base | overrides))


def proposer_named(name: str) -> Proposer:
    """The proposer called ``name`` (``diffusion``, ``ngram``), or a clear error listing them."""
    try:
        return Proposer(name.strip().lower())
    except ValueError:
        names = ", ".join(p.value for p in Proposer if p is not Proposer.PLAIN)
        raise SpecdiffError(f"unknown proposer {name!r}; choose one of {names}") from None
