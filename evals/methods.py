"""The bench's methods: what a runner returns (``MethodRun``), what runners share
(``BenchContext``), and the runners that are not specdiff: the verifier alone, transformers'
assisted generation and its prompt lookup decoding, with their round time split by timing the
models' forward calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from specdiff.evals.running import verifier_generate


@dataclass(frozen=True)
class MethodRun:
    """One method on one prompt."""

    token_ids: list[int]
    total_s: float
    rounds: int
    proposed: int = 0
    accepted: int = 0
    draft_s: float = 0.0
    verify_s: float = 0.0
    other_s: float = 0.0


@dataclass
class BenchContext:
    """What runners share: the models, the output length, the sampling settings and the grid's choice."""

    decoder: Any
    max_new_tokens: int
    ar_drafter: Any | None = None
    best: Any | None = None  # a specdiff.protocols.Choice, once the grid ran
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: none
    top_p: float = 1.0  # 1: none
    seed: int = 0  # this prompt's seed when sampling (the bench's seed + the prompt's index)

    def sampling(self) -> dict[str, Any]:
        """specdiff ``generate()``'s sampling arguments: none when greedy (so a decoder keeps its policy
        and the wall clock across prompts), else the temperature, truncation and this prompt's seed."""
        if self.temperature == 0:
            return {}
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, seed=self.seed)


Runner = Callable[[BenchContext, Any], MethodRun]


@dataclass(frozen=True)
class BenchMethod:
    run: Runner
    needs_grid: bool = False
    needs_ar_drafter: bool = False


class _ForwardTimer:
    """Seconds and calls spent in a module's forward while the context is open."""

    def __init__(self, module: Any) -> None:
        self.module, self.seconds, self.calls, self._start = module, 0.0, 0, 0.0

    def __enter__(self) -> _ForwardTimer:
        def before(*_: Any) -> None:
            self._start = time.perf_counter()

        def after(*_: Any) -> None:
            self.seconds += time.perf_counter() - self._start
            self.calls += 1

        self._handles = [
            self.module.register_forward_pre_hook(before),
            self.module.register_forward_hook(after),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


def run_ar(ctx: BenchContext, prompt_ids: Any) -> MethodRun:
    return _timed_generate(ctx, prompt_ids, assistant=None)


def run_assisted_ar_drafter(ctx: BenchContext, prompt_ids: Any) -> MethodRun:
    return _timed_generate(ctx, prompt_ids, assistant=ctx.ar_drafter)


# transformers' prompt lookup decoding drafts this many tokens from the context per step (its docs'
# suggested value; NOTES measured 10 on SmolLM2, where it is the free baseline to beat).
PROMPT_LOOKUP_TOKENS = 10


def run_hf_prompt_lookup(ctx: BenchContext, prompt_ids: Any) -> MethodRun:
    """transformers' prompt lookup decoding (``generate(prompt_lookup_num_tokens=...)``): what a user
    gets for free, with no drafter model."""
    return _timed_generate(ctx, prompt_ids, assistant=None, prompt_lookup_num_tokens=PROMPT_LOOKUP_TOKENS)


def _timed_generate(ctx: BenchContext, prompt_ids: Any, assistant: Any | None, **extra: Any) -> MethodRun:
    verifier = ctx.decoder.verifier
    if assistant is not None:
        extra["assistant_model"] = assistant
    with (
        _ForwardTimer(verifier.model) as verify,
        _ForwardTimer(assistant) if assistant is not None else nullcontext() as draft,
    ):
        start = time.perf_counter()
        tokens = verifier_generate(
            verifier, prompt_ids, ctx.max_new_tokens, ctx.temperature, ctx.top_k, ctx.top_p, ctx.seed, **extra
        )
        total = time.perf_counter() - start
    draft_s = draft.seconds if draft is not None else 0.0
    return MethodRun(
        tokens,
        total,
        rounds=verify.calls,
        draft_s=draft_s,
        verify_s=verify.seconds,
        other_s=max(total - draft_s - verify.seconds, 0.0),
    )


def load_ar_drafter(path: str, like: Any) -> Any:
    """The AR drafter (a causal LM) on the verifier's dtype and device."""
    from transformers import AutoModelForCausalLM

    from specdiff.loading import load_model

    return load_model(AutoModelForCausalLM, path, dtype=like.dtype).to(like.device)
