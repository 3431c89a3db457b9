"""The decode loop: draft, verify, commit, roll back, repeat.

A round, for a context whose newest committed token (the *pending* token) the verifier has not
yet read:

1. the controller picks a block size K and a number of denoising steps;
2. the drafter appends the tokens committed since its last round to its cache and proposes K
   tokens with the distribution each was drawn from and its confidence in each; the controller
   may cut the block on that confidence (``Controller.cut``), K becoming what it keeps;
3. the verifier scores ``[pending] + draft`` in one forward: K + 1 distributions;
4. the acceptance rule keeps a prefix of the draft and adds one verifier token;
5. the verifier's cache is rolled back to the kept length; the verifier token becomes pending.

The committed tokens are what the verifier alone would produce (see ``specdiff.acceptance``); EOS
and ``max_new_tokens`` cut a round's tokens exactly where the verifier's ``generate()`` would stop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from specdiff.acceptance import AcceptanceOutcome, greedy_accept, stochastic_accept
from specdiff.controller import Adaptive, Controller, Fixed, check_block_and_steps
from specdiff.drafts.base import Draft, DraftEngine
from specdiff.errors import SpecdiffError
from specdiff.metrics import GenerationResult, RoundStats
from specdiff.sampling import SamplingConfig, target_probs


@dataclass(frozen=True)
class Round:
    """What ``SpeculativeDecoder.stream`` yields: the tokens one round committed, and its statistics."""

    token_ids: list[int]
    stats: RoundStats


def cut_at_stop(tokens: list[int], eos_ids: Sequence[int], room: int) -> tuple[list[int], bool]:
    """Keep at most ``room`` tokens and stop after the first EOS.

    Returns:
        The tokens kept, and whether generation ends with them.
    """
    for i, token in enumerate(tokens[:room]):
        if token in eos_ids:
            return tokens[: i + 1], True
    kept = tokens[:room]
    return kept, len(kept) == room


def lookup_reach(guess: list[int] | None, committed: list[int]) -> int:
    """How many of a round's committed tokens the context lookup's guess had right, counting from
    the first (-1: no guess was computed; 0 for an empty guess)."""
    if guess is None:
        return -1
    reach = 0
    for guessed, token in zip(guess, committed, strict=False):
        if guessed != token:
            break
        reach += 1
    return reach


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously; without a sync the timers would charge them to the wrong phase.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpeculativeDecoder:
    """Lossless speculative decoding: a drafter proposes, a verifier decides.

    Args:
        drafter: a draft engine (``specdiff.drafts``).
        verifier: a ``specdiff.verifiers.CausalLMVerifier``.
        controller: picks each round's block size and denoising steps; ``Adaptive()`` when omitted.
        tokenizer: for string prompts and text; the verifier's (else the drafter's) when omitted.
    """

    def __init__(
        self,
        drafter: DraftEngine,
        verifier: Any,
        controller: Controller | None = None,
        tokenizer: Any | None = None,
    ) -> None:
        if drafter.vocab_size != verifier.vocab_size:
            raise SpecdiffError(
                f"the drafter's vocabulary ({drafter.vocab_size} tokens) differs from the verifier's "
                f"({verifier.vocab_size}); draft tokens are verified by id, so both must share one tokenizer"
            )
        self.drafter = drafter
        self.verifier = verifier
        self.controller = controller if controller is not None else Adaptive()
        self.tokenizer = tokenizer or verifier.tokenizer or drafter.tokenizer
        drafter_tok, verifier_tok = drafter.tokenizer, verifier.tokenizer
        if drafter_tok is not None and verifier_tok is not None and drafter_tok.get_vocab() != verifier_tok.get_vocab():
            raise SpecdiffError(
                "the drafter's and the verifier's tokenizers map tokens to different ids; "
                "use a drafter trained with the verifier's tokenizer"
            )

    @property
    def min_steps(self) -> int:
        """The fewest denoising steps the drafter runs (0: it can propose its context lookup's guess)."""
        return int(getattr(self.drafter, "min_denoising_steps", 1))

    # -- input checks -------------------------------------------------------------------------------

    def encode_prompt(self, prompt: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The prompt as ``[1, T]`` token ids."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise SpecdiffError("a string prompt needs a tokenizer; attach one or pass token ids")
            ids = list(self.tokenizer(prompt)["input_ids"])
        elif isinstance(prompt, torch.Tensor):
            ids = prompt.reshape(-1).tolist()
            if prompt.dim() == 2 and prompt.shape[0] != 1:
                raise SpecdiffError("batched prompts are not supported yet; pass one prompt per call")
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise SpecdiffError("the prompt is empty; pass at least one token (or a non-empty string)")
        if min(ids) < 0 or max(ids) >= self.verifier.vocab_size:
            raise SpecdiffError(f"prompt token ids must lie in 0..{self.verifier.vocab_size - 1}")
        return torch.tensor([ids], dtype=torch.long)

    def _resolve_eos(self, eos_token_id: int | Sequence[int] | None) -> tuple[int, ...]:
        if eos_token_id is None:
            return self.verifier.eos_token_ids
        if isinstance(eos_token_id, int):
            return (eos_token_id,)
        return tuple(int(e) for e in eos_token_id)

    def _controller_for(self, block_size: int | None, denoising_steps: int | None) -> Controller:
        """The call's controller: explicit arguments override the decoder's policy with a fixed one."""
        if block_size is None and denoising_steps is None:
            return self.controller
        default = self.controller if isinstance(self.controller, Fixed) else Fixed()
        return Fixed(
            block_size if block_size is not None else default.block_size,
            denoising_steps if denoising_steps is not None else default.denoising_steps,
            default.recycle_canvas,
        )

    # -- the loop ----------------------------------------------------------------------------------

    def stream(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        max_new_tokens: int = 128,
        block_size: int | None = None,
        denoising_steps: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> Iterator[Round]:
        """Yield each round's committed tokens as soon as the round ends (arguments as ``generate``)."""
        return self._start(
            prompt, max_new_tokens, block_size, denoising_steps, temperature, top_k, top_p, seed, eos_token_id
        )[1]

    def _start(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        max_new_tokens: int,
        block_size: int | None,
        denoising_steps: int | None,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int | None,
        eos_token_id: int | Sequence[int] | None,
    ) -> tuple[torch.Tensor, Iterator[Round]]:
        """Check every argument (nothing runs before they all pass); the prompt ids and the rounds."""
        sampling = SamplingConfig(temperature, top_k, top_p)
        if max_new_tokens < 0:
            raise SpecdiffError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
        controller = self._controller_for(block_size, denoising_steps)
        controller.reset(self.drafter.canvas_length, self.min_steps)
        prompt_ids = self.encode_prompt(prompt)
        limit = self.verifier.max_positions
        if limit is not None and prompt_ids.shape[1] + max_new_tokens > limit:
            raise SpecdiffError(
                f"the prompt ({prompt_ids.shape[1]} tokens) plus max_new_tokens ({max_new_tokens}) exceeds "
                f"the verifier's {limit} positions; shorten the prompt or lower max_new_tokens"
            )
        eos_ids = self._resolve_eos(eos_token_id)
        return prompt_ids, self._rounds(prompt_ids, max_new_tokens, controller, sampling, seed, eos_ids)

    def _rounds(
        self,
        prompt_ids: torch.Tensor,
        max_new_tokens: int,
        controller: Controller,
        sampling: SamplingConfig,
        seed: int | None,
        eos_ids: tuple[int, ...],
    ) -> Iterator[Round]:
        device = self.verifier.device
        generator = torch.Generator(device=device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        verifier = self.verifier.session(prompt_ids)
        drafter = None  # started lazily: a run that never drafts never encodes the prompt
        pending = prompt_ids[:, -1:].to(device)  # [1, 1]
        backlog = prompt_ids[:, :0].to(device)  # committed, not yet shown to the drafter
        produced = 0
        round_index = 0
        while produced < max_new_tokens:
            choice = controller.choose()
            check_block_and_steps(max(choice.block_size, 1), choice.denoising_steps, self.drafter.canvas_length,
                                  self.min_steps)
            # A round commits at most K + 1 tokens, so never draft past the end of the output.
            k = min(choice.block_size, max_new_tokens - produced - 1)
            t0 = time.perf_counter()
            if k > 0:
                if drafter is None:
                    drafter = self.drafter.session(prompt_ids, greedy=sampling.is_greedy)
                draft = drafter.propose(backlog, k, choice.denoising_steps, generator, choice.recycle_canvas)
                draft = self._cut(controller, draft)
                draft_tokens, steps_used = draft.tokens.to(device), draft.denoising_steps_used
                backlog = backlog[:, :0]
            else:
                draft, draft_tokens, steps_used = None, pending[:, :0], 0
            cap, k = k, draft_tokens.shape[1]  # the block the controller chose, and what it kept of it
            _sync(device)
            t1 = time.perf_counter()
            target_logits = verifier.score(torch.cat([pending, draft_tokens], dim=1))  # [1, K + 1, V]
            _sync(device)
            t2 = time.perf_counter()
            outcome = self._accept(draft_tokens, draft, target_logits, sampling, generator)
            n = int(outcome.num_accepted[0])
            new = draft_tokens[0, :n].tolist() + [int(outcome.next_token[0])]
            kept, done = cut_at_stop(new, eos_ids, max_new_tokens - produced)
            produced += len(kept)
            if not done:
                verifier.keep(1 + n, 1 + k)
                pending = outcome.next_token[:, None]
                backlog = torch.cat([backlog, torch.tensor([new], device=device)], dim=1)
            _sync(device)
            t3 = time.perf_counter()
            stats = RoundStats(
                round_index=round_index,
                block_size=cap,
                denoising_steps=choice.denoising_steps if k > 0 else 0,
                denoising_steps_used=steps_used,
                proposed=k,
                accepted=n,
                committed=len(kept),
                draft_s=t1 - t0,
                verify_s=t2 - t1,
                other_s=t3 - t2,
                canvas_recycled=choice.recycle_canvas and k > 0,
                lookup_reach=lookup_reach(
                    None if draft is None or draft.guesses is None else draft.guesses[0][: len(kept)].tolist(), kept
                ),
            )
            controller.observe(stats)
            round_index += 1
            yield Round(token_ids=kept, stats=stats)
            if done:
                return

    @staticmethod
    def _cut(controller: Controller, draft: Draft) -> Draft:
        """The draft after the controller's cut on the drafter's confidence, if it makes one.

        The cut sees only the drafter's per-position confidence, which comes from the distributions
        the tokens were drawn from and not from the tokens, so every kept token's acceptance test
        is still exact (``Draft.confidence``). A controller without a cut never pays for it.
        """
        cut = getattr(controller, "cut", None)
        proposed = draft.tokens.shape[1]
        if cut is None or draft.scores is None or proposed < 2:
            return draft
        kept = int(cut(draft.confidence()[0].float().cpu().numpy(), draft.denoising_steps_used))
        if not 1 <= kept <= proposed:
            raise SpecdiffError(
                f"the controller cut a {proposed}-token draft to {kept} tokens; a cut keeps 1..{proposed}"
            )
        return draft if kept == proposed else draft.truncated(kept)

    @staticmethod
    def _accept(
        draft_tokens: torch.Tensor,
        draft: Draft | None,
        target_logits: torch.Tensor,
        sampling: SamplingConfig,
        generator: torch.Generator,
    ) -> AcceptanceOutcome:
        if sampling.is_greedy:
            return greedy_accept(draft_tokens, target_logits)  # reads no draft distribution
        probs = target_probs(target_logits, sampling)
        vocab = probs.shape[-1]
        draft_probs = probs[:, :0] if draft is None else draft.distribution(vocab).to(probs.device)
        return stochastic_accept(draft_tokens, draft_probs, probs, generator)

    def generate(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        max_new_tokens: int = 128,
        block_size: int | None = None,
        denoising_steps: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> GenerationResult:
        """Generate up to ``max_new_tokens`` tokens after ``prompt``.

        Args:
            prompt: a string (needs a tokenizer), a list of token ids, or a ``[1, T]`` tensor.
            max_new_tokens: the most new tokens to produce (0 returns nothing).
            block_size: draft tokens per round, 1..canvas length; with ``denoising_steps``, overrides
                the controller for this call.
            denoising_steps: the cap on denoising steps per round (>= 1; 0 proposes the drafter's
                context lookup guess without denoising, where the drafter has one).
            temperature: 0 for greedy decoding, else the verifier's sampling temperature.
            top_k, top_p: the verifier's truncation (None: none).
            seed: makes the drafter's noise and the sampling repeatable.
            eos_token_id: None for the verifier's generation config, an id, a list, or [] (never stop).
        """
        prompt_ids, rounds = self._start(
            prompt, max_new_tokens, block_size, denoising_steps, temperature, top_k, top_p, seed, eos_token_id
        )
        start = time.perf_counter()
        tokens: list[int] = []
        stats: list[RoundStats] = []
        for r in rounds:
            tokens.extend(r.token_ids)
            stats.append(r.stats)
        elapsed = time.perf_counter() - start
        text = self.tokenizer.decode(tokens, skip_special_tokens=True) if self.tokenizer is not None else ""
        return GenerationResult(
            token_ids=tokens, text=text, prompt_ids=prompt_ids[0].tolist(), elapsed_s=elapsed, stats=tuple(stats)
        )


