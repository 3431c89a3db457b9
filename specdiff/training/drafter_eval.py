"""How well a trained drafter matches its verifier: accuracy by canvas position on held-out prompts.

The targets are the verifier's float32 greedy continuations of held-out chat and code prompts
(the recipe's ``heldout_data`` stage). At each cut ``c`` of a continuation, every proposer sees the
prompt plus the first ``c`` verifier tokens, exactly as at decode time, and proposes a block:

* the diffusion drafter through the draft engine itself (``DiffusionGemmaDrafter``: encoder first
  token, context seeding as the checkpoint records it, 1 or 2 denoising steps),
* the AR drafter greedily, token by token (what assisted generation's assistant proposes),
* the context lookup alone (``specdiff.drafts.ngram.context_continuation``), for reference.

`position_table` reports, per canvas position ``i``, the share of drafts whose token ``i`` equals the
verifier's (``token_acc``) and the share whose first ``i + 1`` tokens all do (``prefix_acc``: what
greedy verification accepts); the sum of ``prefix_acc`` over the first ``k`` positions is the
expected number of draft tokens accepted from a block of ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from specdiff.training.distill import DistilledRow

Propose = Callable[[torch.Tensor, int], torch.Tensor]  # (context [T], k) -> draft [<= k]


@dataclass(frozen=True)
class Case:
    context: torch.Tensor  # [T]
    target: torch.Tensor  # [<= C]: the verifier's next tokens, cut at its end of sequence
    kind: str


def eval_cases(rows: Sequence[DistilledRow], cuts: Sequence[int], canvas_length: int) -> list[Case]:
    """One case per row and cut that leaves at least one verifier token to predict."""
    cases = []
    for row in rows:
        for cut in cuts:
            if cut < row.valid_len:
                target = row.continuation[cut : min(row.valid_len, cut + canvas_length)]
                cases.append(Case(torch.cat([row.prompt, row.continuation[:cut]]), target, row.kind))
    return cases


def match_flags(draft: torch.Tensor, target: torch.Tensor, length: int) -> tuple[list[float], list[float]]:
    """Per position ``< length``: token match and prefix match (NaN where the target has ended)."""
    token, prefix, alive = [], [], True
    for i in range(length):
        if i >= target.numel():
            token.append(float("nan"))
            prefix.append(float("nan"))
            continue
        hit = i < draft.numel() and int(draft[i]) == int(target[i])
        alive = alive and hit
        token.append(float(hit))
        prefix.append(float(alive))
    return token, prefix


def position_table(propose: Propose, cases: Sequence[Case], length: int):
    """A DataFrame: kind, position, token_acc, prefix_acc, cases (targets reaching that position)."""
    import pandas as pd

    records = []
    for case in cases:
        token, prefix = match_flags(propose(case.context, length), case.target, length)
        pairs = enumerate(zip(token, prefix, strict=True))
        records += [dict(kind=case.kind, position=i, token=t, prefix=p) for i, (t, p) in pairs]
    df = pd.DataFrame.from_records(records).dropna()
    grouped = df.groupby(["kind", "position"])
    table = grouped.agg(token_acc=("token", "mean"), prefix_acc=("prefix", "mean"), cases=("token", "size"))
    return table.reset_index()


def expected_accepted(table, kind: str, block: int) -> float:
    """Expected draft tokens accepted from a ``block``-token draft (sum of prefix accuracies)."""
    rows = table[(table.kind == kind) & (table.position < block)]
    return float(rows.prefix_acc.sum())


def diffusion_proposer(drafter, steps: int, seed: int = 0) -> Propose:
    """Fresh drafting sessions of a ``DiffusionGemmaDrafter`` (greedy, ``steps`` denoising steps)."""
    from specdiff.protocols import Choice

    def propose(context: torch.Tensor, k: int) -> torch.Tensor:
        session = drafter.session(context[None], greedy=True)
        generator = torch.Generator(device=drafter.device).manual_seed(seed)
        draft = session.propose(context[None, :0], Choice.diffusion(k, steps), generator)
        return draft.tokens[0].cpu()

    return propose


def ar_proposer(model) -> Propose:
    """An autoregressive drafter's greedy ``k`` tokens."""

    @torch.no_grad()
    def propose(context: torch.Tensor, k: int) -> torch.Tensor:
        out = model.generate(input_ids=context[None], attention_mask=torch.ones_like(context[None]),
                             max_new_tokens=k, min_new_tokens=k, do_sample=False,
                             pad_token_id=model.generation_config.pad_token_id)
        return out[0, context.numel() :]

    return propose


def lookup_proposer(seed) -> Propose:
    from specdiff.drafts.ngram import context_continuation

    return lambda context, k: context_continuation(context, k, seed)


def summarize(tables: dict[str, object], blocks: Sequence[int] = (4, 8, 16)) -> dict[str, dict]:
    """``{proposer: {kind: {"first_token": acc, "accepted@k": ...}}}`` for done.json and the card."""
    out: dict[str, dict] = {}
    for name, table in tables.items():
        out[name] = {}
        for kind in sorted(set(table.kind)):
            first = table[(table.kind == kind) & (table.position == 0)]
            entry = {"first_token": float(first.token_acc.iloc[0]) if len(first) else float("nan")}
            entry.update({f"accepted@{k}": expected_accepted(table, kind, k) for k in blocks})
            out[name][kind] = entry
    return out
