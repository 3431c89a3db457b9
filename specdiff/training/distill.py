"""Distillation data for any causal-LM verifier: its own continuations of the prompt corpus.

`generate_rows` runs the verifier's batched ``generate()`` (left padding, the chat template
already applied by `prompt_corpus.encode_prompt`) over prompts of similar length, greedy or
sampled per batch, and saves after every batch, so a killed run resumes where the file ends and
a time budget stops it between batches. A row is a ``DistilledRow``: the unpadded prompt, the
continuation (``continuation_len`` tokens; after an end-of-sequence token ``generate()`` pads, and
`valid_len` says where the verifier really stopped) and whether it was sampled.

`row_batches` turns rows into training batches for the drafter objectives: rows of near-equal
prompt length are batched together and their prompts cropped on the left to the shortest one
(attention is rotary, so the crop only drops the oldest context), labels ignoring the prompt and
everything after the verifier's end of sequence.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from specdiff.training.lm import IGNORE_INDEX, BatchSource


@dataclass(frozen=True)
class DistilledRow:
    prompt: torch.Tensor  # [P] long
    continuation: torch.Tensor  # [N] long
    valid_len: int  # continuation tokens the verifier produced, its end-of-sequence token included
    sampled: bool
    kind: str


@dataclass(frozen=True)
class GenerationPlan:
    continuation_len: int = 128
    batch_size: int = 32
    sampled_share: float = 0.25  # of batches drawn at `temperature` instead of greedily
    temperature: float = 0.7
    budget_minutes: float | None = None
    seed: int = 0


def valid_length(continuation: torch.Tensor, eos_ids: Sequence[int]) -> int:
    """Tokens up to and including the first end-of-sequence id (all of them when there is none)."""
    ends = torch.isin(continuation, torch.tensor(list(eos_ids), dtype=continuation.dtype)).nonzero()
    return int(ends[0]) + 1 if ends.numel() else int(continuation.numel())


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (little left padding), in a fixed order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def eos_ids_of(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos


@torch.no_grad()
def generate_batch(model, prompts: Sequence[list[int]], pad_id: int, eos_ids: Sequence[int], new_tokens: int,
                   temperature: float | None, seed: int) -> torch.Tensor:
    """Continuations ``[B, new_tokens]`` of left-padded prompts; greedy when ``temperature`` is None."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    sampling = dict(do_sample=False) if temperature is None else dict(
        do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                         max_new_tokens=new_tokens, min_new_tokens=0, pad_token_id=pad_id,
                         eos_token_id=list(eos_ids), **sampling)
    cont = out[:, width:].cpu()
    if cont.shape[1] < new_tokens:  # every row ended early: generate() stops the batch
        cont = torch.cat([cont, torch.full((cont.shape[0], new_tokens - cont.shape[1]), pad_id)], dim=1)
    return cont


def generate_rows(model, tokenizer, prompts: Sequence[list[int]], kinds: Sequence[str], plan: GenerationPlan,
                  out_path: Path, resume: bool = True, greedy_only: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> list[DistilledRow]:
    """The verifier's continuations of ``prompts`` (token ids), saved to ``out_path`` batch by batch.

    Batches run in a seeded shuffled order (so a time budget keeps a fair mix of kinds and lengths);
    a resumed run skips the batches the file already holds.
    """
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = eos_ids_of(model, tokenizer)
    batches = length_batches([len(p) for p in prompts], plan.batch_size)
    random.Random(plan.seed).shuffle(batches)
    rows: list[DistilledRow] = []
    done = 0
    if resume and out_path.exists():
        saved = torch.load(out_path, weights_only=False)
        rows, done = saved["rows"], saved["batches"]
    t0 = time.monotonic()
    for index in range(done, len(batches)):
        if plan.budget_minutes is not None and time.monotonic() - t0 > plan.budget_minutes * 60:
            break
        sampled = not greedy_only and random.Random(plan.seed * 7_919 + index).random() < plan.sampled_share
        batch = batches[index]
        cont = generate_batch(model, [prompts[i] for i in batch], pad_id, eos_ids, plan.continuation_len,
                              plan.temperature if sampled else None, seed=plan.seed * 1_000_003 + index)
        for i, row in zip(batch, cont, strict=True):
            rows.append(DistilledRow(torch.tensor(prompts[i]), row, valid_length(row, eos_ids), sampled, kinds[i]))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".tmp")
        torch.save({"batches": index + 1, "rows": rows}, tmp)
        tmp.replace(out_path)  # atomic: a kill mid-save keeps the previous batches
        if progress:
            progress(index + 1, len(batches))
    return rows


def crop_batch(rows: Sequence[DistilledRow], continuation_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, P + N], labels [B, P + N])``: prompts cropped on the left to the shortest one,
    labels ``IGNORE_INDEX`` over the prompt and after each row's end of sequence."""
    prompt_len = min(int(r.prompt.numel()) for r in rows)
    n = continuation_len or int(rows[0].continuation.numel())
    ids = torch.stack([torch.cat([r.prompt[r.prompt.numel() - prompt_len :], r.continuation[:n]]) for r in rows])
    labels = ids.clone()
    labels[:, :prompt_len] = IGNORE_INDEX
    for b, r in enumerate(rows):
        labels[b, prompt_len + min(r.valid_len, n) :] = IGNORE_INDEX
    return ids, labels


def row_batches(rows: Sequence[DistilledRow], batch_size: int, seed: int, min_valid: int = 1) -> BatchSource:
    """A pure function of the step: ``batch_size`` rows of neighbouring prompt lengths (rows whose
    verifier output is shorter than ``min_valid`` tokens are left out: a canvas needs targets)."""
    usable = sorted((r for r in rows if r.valid_len >= min_valid), key=lambda r: int(r.prompt.numel()))
    assert len(usable) >= 1, "no distilled rows long enough to train on"
    width = min(batch_size, len(usable))

    def source(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(seed * 1_000_003 + step)
        start = rng.randrange(len(usable) - width + 1)
        picked = [usable[start + rng.randrange(width)] for _ in range(batch_size)]
        return crop_batch(picked)

    return source
