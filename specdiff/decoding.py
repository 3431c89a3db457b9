"""The decode loop: draft, verify, commit, roll back, repeat.

A round, for a context whose newest committed token (the *pending* token) the verifier has not
yet read:

1. the controller picks a proposer, a block size K and (for a diffusion drafter) denoising steps;
2. that proposer's session takes the tokens committed since its last round and proposes K tokens
   with the distribution each was drawn from (and its confidence in each, where it has one); the
   controller may cut the block on that confidence (``Controller.cut``), K becoming what it keeps;
3. the verifier scores ``[pending] + draft`` in one forward: K + 1 distributions;
4. the acceptance rule keeps a prefix of the draft and adds one verifier token;
5. the verifier's cache is rolled back to the kept length; the verifier token becomes pending.

The committed tokens are what the verifier alone would produce (see ``specdiff.acceptance``); EOS
and ``max_new_tokens`` cut a round's tokens exactly where the verifier's ``generate()`` would stop.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, is_dataclass, replace
from typing import Any

import torch

from specdiff.acceptance import AcceptanceOutcome, greedy_accept, stochastic_accept
from specdiff.args import GenerateArgs
from specdiff.controllers import Adaptive, Controller, Fixed, check_choice, check_steps
from specdiff.controllers.cost import NominalClock, nominal_seconds
from specdiff.errors import SpecdiffError
from specdiff.metrics import GenerationResult, RoundStats
from specdiff.prompts import prompt_token_ids
from specdiff.protocols import Draft, DraftEngine, DraftSession, Proposer, SideReport, Verifier
from specdiff.sampling import SamplingConfig, target_probs

Prompt = str | Sequence[int] | torch.Tensor | Sequence[dict]


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


def side_reach(side: SideReport | None, committed: list[int]) -> int:
    """How many of a round's committed tokens a side report's first row had right, counting from
    the first (-1: no side report; 0 for an empty guess)."""
    if side is None:
        return -1
    reach = 0
    for guessed, token in zip(side.tokens[0][: len(committed)].tolist(), committed, strict=False):
        if guessed != token:
            break
        reach += 1
    return reach


def sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously; without a sync the timers would charge them to the wrong phase.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SpeculativeDecoder:
    """Lossless speculative decoding: proposers draft, a verifier decides.

    Args:
        drafter: a draft engine (``specdiff.drafts``), or several of different kinds (the diffusion
            drafter and an n-gram lookup, say): the controller picks one per round.
        verifier: a verifier adapter (``specdiff.verifiers.CausalLMVerifier``).
        controller: picks each round's proposer, block size and steps; ``Adaptive()`` when omitted.
        tokenizer: for string prompts and text; the verifier's (else a drafter's) when omitted.
        nominal_clock: the seconds a seeded call's policy learns from, so that it repeats (``NominalClock``;
            a pair whose multi-token forwards cost more than the pocket pair's carries its own).
    """

    def __init__(
        self,
        drafter: DraftEngine | Sequence[DraftEngine],
        verifier: Verifier,
        controller: Controller | None = None,
        tokenizer: Any | None = None,
        nominal_clock: NominalClock = nominal_seconds,
    ) -> None:
        engines = list(drafter) if isinstance(drafter, (list, tuple)) else [drafter]
        if not engines:
            raise SpecdiffError("a decoder needs at least one proposer (a drafter or an n-gram lookup)")
        self.proposers: dict[Proposer, DraftEngine] = {}
        for engine in engines:
            if engine.kind in self.proposers:
                raise SpecdiffError(f"two {engine.kind.value} proposers given; a decoder takes one of each kind")
            if engine.vocab_size != verifier.vocab_size:
                raise SpecdiffError(
                    f"the {engine.kind.value} proposer's vocabulary ({engine.vocab_size} tokens) differs from the "
                    f"verifier's ({verifier.vocab_size}); draft tokens are verified by id, so both must share one "
                    "tokenizer"
                )
            self.proposers[engine.kind] = engine
        self.drafter = engines[0]
        self.verifier = verifier
        self.controller = controller if controller is not None else Adaptive()
        self.nominal_clock = nominal_clock  # what a seeded call's policy learns from (``NominalClock``)
        self.tokenizer = tokenizer or verifier.tokenizer or next((e.tokenizer for e in engines if e.tokenizer), None)
        verifier_tok = verifier.tokenizer
        for engine in engines:
            if engine.tokenizer is not None and verifier_tok is not None and (
                    engine.tokenizer is not verifier_tok and engine.tokenizer.get_vocab() != verifier_tok.get_vocab()):
                raise SpecdiffError(
                    f"the {engine.kind.value} proposer's and the verifier's tokenizers map tokens to different ids; "
                    "use a drafter trained with the verifier's tokenizer"
                )

    @property
    def max_steps(self) -> int | None:
        """The diffusion drafter's most denoising steps a round (None without one)."""
        return getattr(self.proposers.get(Proposer.DIFFUSION), "max_denoising_steps", None)

    @property
    def limits(self) -> dict[Proposer, int]:
        """The largest block each proposer drafts (what the controller is told at every reset)."""
        return {kind: engine.max_block_size for kind, engine in self.proposers.items()}

    # -- input checks -------------------------------------------------------------------------------

    def encode_prompt(self, prompt: Prompt) -> torch.Tensor:
        """The prompt as ``[1, T]`` token ids."""
        ids = prompt_token_ids(prompt, self.tokenizer)
        if not ids:
            raise SpecdiffError("the prompt is empty; pass at least one token (or a non-empty string)")
        if min(ids) < 0 or max(ids) >= self.verifier.vocab_size:
            raise SpecdiffError(f"prompt token ids must lie in 0..{self.verifier.vocab_size - 1}")
        return torch.tensor([ids], dtype=torch.long)

    def resolve_eos(self, eos_token_id: int | tuple[int, ...] | None) -> tuple[int, ...]:
        """The stop ids of a call: the verifier's for None, else the id or ids given (() never stops)."""
        if eos_token_id is None:
            return self.verifier.eos_token_ids
        if isinstance(eos_token_id, int):
            return (eos_token_id,)
        return tuple(eos_token_id)

    def controller_for(self, args: GenerateArgs) -> Controller:
        """The call's controller: explicit block, steps or proposer override the decoder's policy
        with a fixed one (the decoder's own ``Fixed`` fills what the call leaves out). A seeded call
        gets a fresh copy of the decoder's policy (what it learnt from earlier calls would make the
        run depend on them); the loop then feeds it the nominal clock (``nominal_seconds``)."""
        if args.denoising_steps is not None:
            check_steps(args.denoising_steps, maximum=self.max_steps)
        if not args.overrides_controller:
            if args.seed is None:
                return self.controller
            return replace(self.controller) if is_dataclass(self.controller) else copy.deepcopy(self.controller)
        default = self.controller if isinstance(self.controller, Fixed) else None
        proposer = args.proposer or (default.proposer if default else None)
        if proposer is None:
            proposer = Proposer.DIFFUSION if Proposer.DIFFUSION in self.proposers else next(iter(self.proposers))
        if args.denoising_steps is not None and not proposer.denoises:
            raise SpecdiffError(
                f"denoising_steps apply to the diffusion drafter; this decoder drafts with {proposer.value}"
            )
        base = default or Fixed()
        return Fixed(
            args.block_size if args.block_size is not None else base.block_size,
            args.denoising_steps if args.denoising_steps is not None else base.denoising_steps,
            base.recycle_canvas,
            proposer,
        )

    # -- the loop ----------------------------------------------------------------------------------

    def stream(self, prompt: Prompt, args: GenerateArgs | None = None, **overrides: Any) -> Iterator[Round]:
        """Yield each round's committed tokens as soon as the round ends (arguments as ``generate``)."""
        return self._start(prompt, GenerateArgs.of(args, overrides))[1]

    def _start(self, prompt: Prompt, args: GenerateArgs) -> tuple[torch.Tensor, Iterator[Round]]:
        """Check every argument (nothing runs before they all pass); the prompt ids and the rounds."""
        controller = self.controller_for(args)
        controller.reset(self.limits)
        prompt_ids = self.encode_prompt(prompt)
        limit = self.verifier.max_positions
        if limit is not None and prompt_ids.shape[1] + args.max_new_tokens > limit:
            raise SpecdiffError(
                f"the prompt ({prompt_ids.shape[1]} tokens) plus max_new_tokens ({args.max_new_tokens}) exceeds "
                f"the verifier's {limit} positions; shorten the prompt or lower max_new_tokens"
            )
        eos_ids = self.resolve_eos(args.eos_token_id)
        return prompt_ids, self._rounds(prompt_ids, args, controller, eos_ids)

    def _rounds(
        self, prompt_ids: torch.Tensor, args: GenerateArgs, controller: Controller, eos_ids: tuple[int, ...]
    ) -> Iterator[Round]:
        device = self.verifier.device
        sampling, max_new_tokens, limits, max_steps = args.sampling, args.max_new_tokens, self.limits, self.max_steps
        # A seeded run's policy learns from nominal seconds, so its choices (and so the drafter's
        # draws from the generator) repeat; the stats it yields keep the measured ones.
        clock = self.nominal_clock if args.seed is not None else None
        generator = torch.Generator(device=device)
        if args.seed is None:
            generator.seed()
        else:
            generator.manual_seed(args.seed)
        verifier = self.verifier.session(prompt_ids)
        # Each proposer's session, started lazily (a run that never drafts never encodes the prompt),
        # and how many committed tokens it has seen.
        sessions: dict[Proposer, tuple[DraftSession, int]] = {}
        pending = prompt_ids[:, -1:].to(device)  # [1, 1]
        committed: list[int] = []  # every token committed so far (the output)
        round_index = 0
        while len(committed) < max_new_tokens:
            choice = controller.choose()
            check_choice(choice, limits, max_steps)
            # A round commits at most K + 1 tokens, so never draft past the end of the output.
            k = min(choice.block_size, max_new_tokens - len(committed) - 1)
            proposer = choice.proposer if k > 0 else Proposer.PLAIN
            t0 = time.perf_counter()
            if k > 0:
                session, seen = sessions.get(proposer) or (
                    self.proposers[proposer].session(prompt_ids, greedy=sampling.is_greedy), 0)
                new_tokens = torch.tensor([committed[seen:]], dtype=torch.long)
                draft = session.propose(new_tokens, replace(choice, block_size=k), generator)
                sessions[proposer] = (session, len(committed))
                draft = self._cut(controller, draft)
                draft_tokens, steps_used = draft.tokens.to(device), draft.denoising_steps_used
            else:
                draft, draft_tokens, steps_used = None, pending[:, :0], 0
            cap, k = k, draft_tokens.shape[1]  # the block the controller chose, and what it kept of it
            sync(device)
            t1 = time.perf_counter()
            target_logits = verifier.score(torch.cat([pending, draft_tokens], dim=1))  # [1, K + 1, V]
            sync(device)
            t2 = time.perf_counter()
            outcome = self._accept(draft_tokens, draft, target_logits, sampling, generator)
            n = int(outcome.num_accepted[0])
            new = draft_tokens[0, :n].tolist() + [int(outcome.next_token[0])]
            kept, done = cut_at_stop(new, eos_ids, max_new_tokens - len(committed))
            committed.extend(kept)
            if not done:
                verifier.keep(1 + n, 1 + k)
                pending = outcome.next_token[:, None]
            sync(device)
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
                proposer=proposer,
                side_reach=side_reach(None if draft is None else draft.side, kept),
            )
            controller.observe(stats if clock is None else clock(stats))
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

    def generate_batch(self, prompts: Sequence[Prompt], args: GenerateArgs | None = None, policy: Any | None = None,
                       **overrides: Any) -> list[GenerationResult]:
        """Generate for every prompt in one batch (``specdiff.batch``): one ``GenerationResult`` per
        prompt, in order, each row's output what ``generate`` gives it alone. Arguments as
        ``generate``, shared by every row (``seed`` makes the whole batch repeatable); prompts of one
        kind per batch; ``policy`` overrides the batch policy (``specdiff.controllers.batch``)."""
        from specdiff.batch import generate_batch  # the batch machinery loads only when used

        return generate_batch(self, prompts, GenerateArgs.of(args, overrides), policy)

    def stream_batch(self, prompts: Sequence[Prompt], args: GenerateArgs | None = None, policy: Any | None = None,
                     **overrides: Any) -> Iterator[Any]:
        """Yield each batch round's committed tokens per row (``specdiff.batch.BatchRound``; row ids
        are the prompts' indices); arguments as ``generate_batch``, all checked before the first round."""
        from specdiff.batch import stream_batch

        return stream_batch(self, prompts, GenerateArgs.of(args, overrides), policy)

    def generate(self, prompt: Prompt, args: GenerateArgs | None = None, **overrides: Any) -> GenerationResult:
        """Generate after ``prompt``: a string (needs a tokenizer), chat messages
        (``[{"role": "user", "content": ...}]``, through the tokenizer's chat template), a list of
        token ids, or a ``[1, T]`` tensor. ``args`` (``GenerateArgs``), with any of its fields
        given by name overriding it: ``generate(prompt, max_new_tokens=64, seed=0)``."""
        prompt_ids, rounds = self._start(prompt, GenerateArgs.of(args, overrides))
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
