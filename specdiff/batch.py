"""Batched speculative decoding with ragged acceptance, and continuous batching at round granularity.

A round over a batch of B rows (each an independent generation, with its own pending token):

1. the batch policy picks one proposer, block size K and step count for the batch
   (``specdiff.controllers.batch``); each row's block is capped so that it never drafts past its own
   ``max_new_tokens``;
2. that proposer's batched session (``specdiff.batch_drafts``: the diffusion drafter's own, the
   n-gram lookup's) takes each row's tokens committed since it last saw the row,
   and proposes for every row; a row may propose fewer tokens (a lookup without a guess proposes
   none): the draft is ragged (``RaggedDraft``);
3. one verifier forward scores ``[pending] + draft`` for every row, ``[B, 1 + max k_i]``;
4. each row's acceptance test runs on its own block (the rule of ``specdiff.acceptance``), keeps its
   own prefix and adds one verifier token; EOS and ``max_new_tokens`` cut it as in ``generate``;
5. the verifier's cache rolls back per row (``specdiff.row_buffers``); finished rows leave the batch.

Rows join between rounds (``BatchRun.add``) and leave when they finish or are cancelled
(``BatchRun.cancel``): that is all a server's continuous batching needs. One generator, seeded once,
drives every row's drafting and sampling in a fixed order, so a seeded batch repeats exactly; a row's
sampled output follows the verifier's distribution whatever the others do, since each acceptance test
is exact for any draft distribution. A row may carry its own ``max_new_tokens``, sampling, EOS and
seed (``add(prompt, args)``; a seeded row samples its acceptance tests from a generator of its own),
and a cap on its block (``draft_cap``; 0: the row never drafts, a plain step inside the batch's forward).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

import torch

from specdiff.acceptance import AcceptanceOutcome, accepted_prefix_length, stochastic_accept
from specdiff.args import GenerateArgs
from specdiff.batch_drafts import BatchDraftSession, RaggedDraft, batch_draft_session, batch_verifier_session
from specdiff.batch_prompts import Prompt, encode_one, encode_prompts, prompt_kind  # noqa: F401 - re-exported
from specdiff.controllers import Fixed, check_choice
from specdiff.controllers.batch import BatchAdaptive, BatchFixed, BatchRoundStats, nominal_batch_seconds
from specdiff.decoding import cut_at_stop, side_reach, sync
from specdiff.errors import SpecdiffError
from specdiff.metrics import GenerationResult, RoundStats
from specdiff.protocols import Draft, Proposer
from specdiff.sampling import SamplingConfig, target_probs

# One batch-aware policy per decoder, so that the costs learnt in one batch serve the next.
_POLICIES: weakref.WeakKeyDictionary[Any, BatchAdaptive] = weakref.WeakKeyDictionary()


def policy_for(decoder: Any, args: GenerateArgs, policy: Any | None) -> Any:
    """The call's batch policy: explicit block, steps or proposer fix the choice (as ``generate``'s
    do), a ``Fixed`` decoder controller stays fixed, anything else gets the decoder's
    ``BatchAdaptive`` (a fresh one for a seeded call, so that it repeats). A batch never recycles
    canvases (rows commit different counts); recycling changes speed only, never the output."""
    if policy is not None:
        return policy
    controller = decoder.controller_for(args)
    if isinstance(controller, Fixed):
        return BatchFixed(replace(controller.choice, recycle_canvas=False))
    if args.seed is not None:
        return BatchAdaptive()
    return _POLICIES.setdefault(decoder, BatchAdaptive())


# What a row may set for itself in ``BatchRun.add``; the rest of ``GenerateArgs`` is the batch's.
ROW_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "eos_token_id")


@dataclass
class _Row:
    """One generation in the batch; ``unseen[p]``: committed tokens proposer p's session has not seen.
    ``generator``: the row's own for its acceptance tests (a seeded row), else None (the batch's)."""

    row_id: int
    prompt_ids: list[int]
    pending: int
    max_new_tokens: int
    sampling: SamplingConfig
    eos_ids: tuple[int, ...]
    generator: torch.Generator | None = None
    draft_cap: int | None = None
    unseen: dict[Proposer, list[int]] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    stats: list[RoundStats] = field(default_factory=list)
    started: float = 0.0


@dataclass(frozen=True)
class BatchRound:
    """What one round of a batch committed: each row's new tokens by row id, the rows that finished."""

    tokens: dict[int, list[int]]
    finished: tuple[int, ...]
    stats: BatchRoundStats


class BatchRun:
    """A running batch: rows join with ``add`` and are admitted at the next round boundary; a row
    leaves when it finishes (EOS or ``max_new_tokens``) and its result is kept (``result``).

    ``args`` (``GenerateArgs``) are every row's defaults (a row may override ``ROW_FIELDS`` in
    ``add``); ``policy`` overrides the batch policy (``specdiff.controllers.batch``). Every argument
    is checked here, before any row runs.
    """

    def __init__(self, decoder: Any, args: GenerateArgs | None = None, policy: Any | None = None) -> None:
        self.decoder, self.args = decoder, args or GenerateArgs()
        self.sampling = self.args.sampling
        self.policy = policy_for(decoder, self.args, policy)
        self.policy.reset(decoder.limits, decoder.max_steps)
        # A seeded batch's policy learns from nominal seconds, so its choices repeat.
        self.clock = partial(nominal_batch_seconds, clock=decoder.nominal_clock) if self.args.seed is not None else None
        self.generator = torch.Generator(device=decoder.verifier.device)
        if self.args.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.args.seed)
        self.verifier = batch_verifier_session(decoder.verifier)
        # One batched draft session per proposer, started when first chosen (with every active row).
        self.drafters: dict[Proposer, BatchDraftSession] = {}
        self.active: list[_Row] = []
        self.waiting: list[_Row] = []
        self.results: dict[int, GenerationResult] = {}
        self.round_index = 0
        self._next_id = 0

    # -- rows ----------------------------------------------------------------------------------------

    def add(self, prompt: Prompt, args: GenerateArgs | None = None, draft_cap: int | None = None) -> int:
        """Queue a prompt; it joins at the next round. Returns its row id (0, 1, ... in call order).

        ``args``: this row's ``max_new_tokens``, sampling, seed and EOS (``ROW_FIELDS``; None: the
        batch's); ``draft_cap``: the most draft tokens its block may hold a round (0: never drafts)."""
        return self.add_ids(encode_one(self.decoder, prompt, self._next_id), args, draft_cap)

    def add_ids(self, ids: list[int], args: GenerateArgs | None = None, draft_cap: int | None = None) -> int:
        args = self._row_args(args, draft_cap)
        limit = self.decoder.verifier.max_positions
        if limit is not None and len(ids) + args.max_new_tokens > limit:
            raise SpecdiffError(
                f"a prompt of {len(ids)} tokens plus max_new_tokens ({args.max_new_tokens}) exceeds the "
                f"verifier's {limit} positions; shorten the prompt or lower max_new_tokens"
            )
        generator = None
        if args.seed is not None and args is not self.args:
            generator = torch.Generator(device=self.decoder.verifier.device).manual_seed(args.seed)
        row = _Row(self._next_id, ids, pending=ids[-1], max_new_tokens=args.max_new_tokens, sampling=args.sampling,
                   eos_ids=self.decoder.resolve_eos(args.eos_token_id), generator=generator, draft_cap=draft_cap,
                   started=time.perf_counter())
        self._next_id += 1
        if row.max_new_tokens == 0:
            self._finish(row)
        else:
            self.waiting.append(row)
        return row.row_id

    def _row_args(self, args: GenerateArgs | None, draft_cap: int | None) -> GenerateArgs:
        """A row's arguments, refusing overrides of what the whole batch shares (block, steps, proposer)."""
        if draft_cap is not None and (not isinstance(draft_cap, int) or draft_cap < 0):
            raise SpecdiffError(f"draft_cap must be a whole number >= 0 (got {draft_cap!r}); 0 never drafts")
        if args is None:
            return self.args
        shared = [f.name for f in fields(GenerateArgs)
                  if f.name not in ROW_FIELDS and getattr(args, f.name) != getattr(self.args, f.name)]
        if shared:
            raise SpecdiffError(
                f"{', '.join(shared)} are the whole batch's (one draft call serves every row); set them on the "
                "BatchRun, or cap one row's block with draft_cap")
        return args

    def cancel(self, row_id: int) -> GenerationResult:
        """Drop a row now (between rounds): it leaves the batch, its cache rows are freed, and what it
        committed so far comes back; a finished row's result is handed back (and forgotten) instead."""
        if row_id in self.results:
            return self.results.pop(row_id)
        for i, row in enumerate(self.waiting):
            if row.row_id == row_id:
                del self.waiting[i]
                return self._result_of(row)
        for i, row in enumerate(self.active):
            if row.row_id == row_id:
                stay = [j for j in range(len(self.active)) if j != i]
                self.verifier.remove_rows(stay)
                for session in self.drafters.values():
                    session.remove_rows(stay)
                del self.active[i]
                return self._result_of(row)
        raise SpecdiffError(f"row {row_id} is not in this batch (never added, or already cancelled)")

    def pop_result(self, row_id: int) -> GenerationResult:
        """A finished row's result, forgotten by the run (a long-running server would keep them all)."""
        result = self.result(row_id)
        del self.results[row_id]
        return result

    @property
    def done(self) -> bool:
        return not self.active and not self.waiting

    def result(self, row_id: int) -> GenerationResult:
        if row_id not in self.results:
            raise SpecdiffError(f"row {row_id} has not finished (or was never added)")
        return self.results[row_id]

    def _admit(self) -> None:
        if not self.waiting:
            return
        prompts = [torch.tensor(r.prompt_ids, dtype=torch.long) for r in self.waiting]
        self.verifier.add_rows(prompts)
        for kind, session in self.drafters.items():
            session.add_rows(prompts)
            for row in self.waiting:
                row.unseen[kind] = []
        self.active += self.waiting
        self.waiting = []

    def _drafter(self, kind: Proposer) -> BatchDraftSession:
        """Proposer ``kind``'s batched session; a new one starts from every active row's prompt, and
        sees the row's committed tokens as its first new tokens."""
        if kind not in self.drafters:
            session = batch_draft_session(self.decoder.proposers[kind], greedy=self.sampling.is_greedy)
            session.add_rows([torch.tensor(r.prompt_ids, dtype=torch.long) for r in self.active])
            for row in self.active:
                row.unseen[kind] = list(row.tokens)
            self.drafters[kind] = session
        return self.drafters[kind]

    def _finish(self, row: _Row) -> None:
        self.results[row.row_id] = self._result_of(row)

    def _result_of(self, row: _Row) -> GenerationResult:
        tokenizer = self.decoder.tokenizer
        return GenerationResult(
            token_ids=row.tokens, text=tokenizer.decode(row.tokens, skip_special_tokens=True) if tokenizer else "",
            prompt_ids=row.prompt_ids, elapsed_s=time.perf_counter() - row.started, stats=tuple(row.stats))

    # -- the loop ------------------------------------------------------------------------------------

    def rounds(self) -> Iterator[BatchRound]:
        """Run rounds until every row (including rows added meanwhile) has finished."""
        while not self.done:
            yield self.step()

    @torch.no_grad()
    def step(self) -> BatchRound:
        """Admit waiting rows, then run one round over the batch."""
        self._admit()
        rows, device = self.active, self.decoder.verifier.device
        if not rows:
            raise SpecdiffError("the batch is empty; add a prompt before stepping")
        choice = self.policy.choose(len(rows))
        check_choice(choice, self.decoder.limits, self.decoder.max_steps)
        rooms = [r.max_new_tokens - len(r.tokens) for r in rows]
        caps = torch.tensor([min(choice.block_size, room - 1, choice.block_size if r.draft_cap is None else r.draft_cap)
                             for r, room in zip(rows, rooms, strict=True)], dtype=torch.long)
        proposer = choice.proposer if int(caps.max()) > 0 else Proposer.PLAIN
        t0 = time.perf_counter()
        ragged, fed = None, 0
        lengths = torch.zeros(len(rows), dtype=torch.long)
        if proposer is not Proposer.PLAIN:
            session = self._drafter(proposer)
            fed = max(len(r.unseen[proposer]) for r in rows)
            new = [torch.tensor(r.unseen[proposer], dtype=torch.long) for r in rows]
            ragged = session.propose(new, replace(choice, block_size=int(caps.max())), self.generator)
            for r in rows:
                r.unseen[proposer] = []
            lengths = torch.minimum(ragged.lengths.cpu(), caps)
        width = int(lengths.max())
        block = torch.zeros(len(rows), 1 + width, dtype=torch.long, device=device)
        block[:, 0] = torch.tensor([r.pending for r in rows], device=device)
        if ragged is not None and width:
            valid = torch.arange(width)[None] < lengths[:, None]  # [B, K]
            block[:, 1:] = torch.where(valid.to(device), ragged.draft.tokens[:, :width].to(device), 0)
        sync(device)
        t1 = time.perf_counter()
        target_logits = self.verifier.score(block)  # [B, 1 + K, V]
        sync(device)
        t2 = time.perf_counter()
        new_tokens, kept_slots, finished, per_row = self._commit(rows, block, lengths, ragged, target_logits, rooms)
        self.verifier.keep(torch.tensor(kept_slots, dtype=torch.long))
        if finished:
            stay = [i for i in range(len(rows)) if i not in finished]
            self.verifier.remove_rows(stay)
            for session in self.drafters.values():
                session.remove_rows(stay)
        sync(device)
        t3 = time.perf_counter()
        steps_used = ragged.draft.denoising_steps_used if ragged is not None else 0
        stats = BatchRoundStats(
            round_index=self.round_index, batch_size=len(rows), proposer=proposer,
            block_size=choice.block_size if ragged is not None else 0,
            denoising_steps=choice.denoising_steps if ragged is not None else 0, denoising_steps_used=steps_used,
            scored=1 + width, blocks=tuple(int(c) if ragged is not None else 0 for c in caps),
            proposed=tuple(p[0] for p in per_row), accepted=tuple(p[1] for p in per_row),
            committed=tuple(len(new_tokens[r.row_id]) for r in rows), side_reach=tuple(p[2] for p in per_row),
            draft_s=t1 - t0, verify_s=t2 - t1, other_s=t3 - t2, fed=fed)
        for row, cap, (k, n, reach) in zip(rows, caps.tolist(), per_row, strict=True):
            drafted = ragged is not None and cap > 0
            row.stats.append(RoundStats(
                round_index=len(row.stats), block_size=cap if drafted else 0,
                denoising_steps=choice.denoising_steps if drafted else 0,
                denoising_steps_used=steps_used if drafted else 0, proposed=k, accepted=n,
                committed=len(new_tokens[row.row_id]), draft_s=stats.draft_s, verify_s=stats.verify_s,
                other_s=stats.other_s, proposer=proposer if drafted else Proposer.PLAIN, side_reach=reach))
        self.policy.observe(stats if self.clock is None else self.clock(stats))
        for i in finished:
            self._finish(rows[i])
        self.active = [r for i, r in enumerate(rows) if i not in finished]
        self.round_index += 1
        return BatchRound(tokens=new_tokens, finished=tuple(rows[i].row_id for i in finished), stats=stats)

    def _commit(self, rows: list[_Row], block: torch.Tensor, lengths: torch.Tensor, ragged: RaggedDraft | None,
                target_logits: torch.Tensor, rooms: list[int]) -> tuple[dict, list[int], list[int], list[tuple]]:
        """Each row's acceptance test on its own block, in row order (one generator for all but seeded
        rows, under each row's own sampling): the new tokens per row id, the verifier slots each row
        keeps, the finished rows' indices, and per row ``(proposed, accepted, side_reach)``. Greedy
        rows are tested all at once (``greedy_accept_ragged``)."""
        greedy = greedy_accept_ragged(block, lengths, target_logits)
        block_rows = block.tolist()
        new_tokens: dict[int, list[int]] = {}
        kept_slots, finished, per_row = [], [], []
        for i, row in enumerate(rows):
            k = int(lengths[i])
            draft = ragged.row(i).truncated(k) if ragged is not None else None
            if row.sampling.is_greedy:
                n, token = greedy[0][i], greedy[1][i]
            else:
                row_probs = target_probs(target_logits[i : i + 1, : k + 1], row.sampling)  # [1, k + 1, V]
                outcome = self._sampled_accept(block[i : i + 1, 1 : 1 + k], draft if k else None, row_probs,
                                               row.generator or self.generator)
                n, token = int(outcome.num_accepted[0]), int(outcome.next_token[0])
            new = block_rows[i][1 : 1 + n] + [token]
            kept, done = cut_at_stop(new, row.eos_ids, rooms[i])
            row.tokens += kept
            new_tokens[row.row_id] = kept
            kept_slots.append(1 + n)
            for unseen in row.unseen.values():
                unseen += new  # each drafter's context runs to the newest committed token
            row.pending = new[-1]
            per_row.append((k, n, side_reach(None if draft is None else draft.side, kept)))
            if done:
                finished.append(i)
        return new_tokens, kept_slots, finished, per_row

    @staticmethod
    def _sampled_accept(draft_tokens: torch.Tensor, draft: Draft | None, probs: torch.Tensor,
                        generator: torch.Generator) -> AcceptanceOutcome:
        """One sampled row's acceptance test on its own block (``draft_tokens`` ``[1, k]``) under its
        own processed distributions ``probs`` ``[1, k + 1, V]``."""
        vocab = probs.shape[-1]
        draft_probs = probs[:, :0] if draft is None else draft.distribution(vocab).to(probs.device)
        return stochastic_accept(draft_tokens, draft_probs, probs, generator)


def greedy_accept_ragged(block: torch.Tensor, lengths: torch.Tensor,
                         target_logits: torch.Tensor) -> tuple[list[int], list[int]]:
    """Every row's greedy test at once (``greedy_accept``'s rule on the padded block, each row's count capped
    at its own draft length): per row, the draft tokens accepted and the verifier's next token.

    Args:
        block: ``[B, 1 + K]``, each row's pending token then its draft (filler past ``lengths``).
        lengths: ``[B]``, each row's draft length.
        target_logits: ``[B, 1 + K, V]``.
    """
    argmax = target_logits.argmax(dim=-1)  # [B, 1 + K]
    matches = block[:, 1:] == argmax[:, :-1]  # greedy_accept's rule, over the padded block
    accepted = torch.minimum(accepted_prefix_length(matches), lengths.to(block.device))  # filler may match
    return accepted.tolist(), argmax.gather(1, accepted[:, None])[:, 0].tolist()


def start_batch(decoder: Any, prompts: Sequence[Prompt], args: GenerateArgs, policy: Any | None = None) -> BatchRun:
    """A ``BatchRun`` with every prompt added (row ids are the prompts' indices); every argument is
    checked before the first round runs."""
    ids = encode_prompts(decoder, prompts)
    run = BatchRun(decoder, args, policy)
    for row in ids:
        run.add_ids(row)
    return run


def stream_batch(decoder: Any, prompts: Sequence[Prompt], args: GenerateArgs,
                 policy: Any | None = None) -> Iterator[BatchRound]:
    """Yield each round's newly committed tokens per row (``SpeculativeDecoder.stream_batch``)."""
    return start_batch(decoder, prompts, args, policy).rounds()


def generate_batch(decoder: Any, prompts: Sequence[Prompt], args: GenerateArgs,
                   policy: Any | None = None) -> list[GenerationResult]:
    """Generate for every prompt in one batch (``SpeculativeDecoder.generate_batch``)."""
    run = start_batch(decoder, prompts, args, policy)
    for _ in run.rounds():
        pass
    return [run.result(i) for i in range(len(prompts))]
