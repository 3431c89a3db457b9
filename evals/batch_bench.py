"""``specdiff bench --batch-size B`` (B > 1): batched speculative decoding against transformers' own
batched greedy ``generate()`` and against decoding the same prompts one by one.

The suite's prompts are cut, in order, into groups of B (the last may be smaller). Every group runs
each method before the next group starts, in an order rotated per group and per repeat, so machine
noise hits all alike:

``specdiff_batch``
    ``SpeculativeDecoder.generate_batch`` on the group (the decoder's batch policy, learning across
    groups as a decoder keeps its own);
``hf_batched``
    the verifier's batched greedy ``generate()`` on the group, left padding (``hf_batched_generate``);
``one_by_one``
    ``SpeculativeDecoder.generate`` on each prompt of the group in turn.

A method's total tokens/s is every row's tokens over the wall-clock seconds of its groups; a row's
own tokens/s is its tokens over its own seconds (``GenerationResult.elapsed_s``, from the batch's
start to the row's finish; for transformers, its group's seconds, since every row ends with the
batch). ``speedup_vs_hf_batched`` divides the total tokens/s by ``hf_batched``'s. Greedy outputs
must agree across the methods, prompt by prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from specdiff.evals.table import output_hash

from specdiff.errors import SpecdiffError
from specdiff.metrics import loop_share

if TYPE_CHECKING:
    import pandas as pd

BATCH_METHODS = ("specdiff_batch", "hf_batched", "one_by_one")


def groups(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut, in order, into lists of ``size`` (the last may be shorter)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def hf_batched_generate(verifier: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                        temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                        seed: int = 0) -> list[list[int]]:
    """transformers' batched ``generate()`` on token-id prompts, left padding: each row's new tokens,
    cut after its first EOS (a finished row is padded while the others go on)."""
    import torch

    width = max(len(p) for p in prompts)
    eos = list(verifier.eos_token_ids)
    pad = eos[0] if eos else 0
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], device=verifier.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=verifier.device)
    sampling: dict[str, Any] = dict(do_sample=False)
    if temperature > 0:
        torch.manual_seed(seed)
        sampling = dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    with torch.no_grad():
        out = verifier.model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      eos_token_id=eos or None, pad_token_id=pad, **sampling)
    rows = []
    for row in out[:, width:].tolist():
        stop = next((i for i, t in enumerate(row) if t in eos), None)
        rows.append(row if stop is None else row[: stop + 1])
    return rows


def _specdiff_batch(decoder: Any, group: list[list[int]], max_new_tokens: int) -> tuple[list[list[int]], list]:
    results = decoder.generate_batch(group, max_new_tokens=max_new_tokens)
    return [r.token_ids for r in results], [(r.elapsed_s, r.num_rounds) for r in results]


def _hf_batched(decoder: Any, group: list[list[int]], max_new_tokens: int) -> tuple[list[list[int]], list]:
    start = time.perf_counter()
    rows = hf_batched_generate(decoder.verifier, group, max_new_tokens)
    elapsed = time.perf_counter() - start
    return rows, [(elapsed, len(r)) for r in rows]


def _one_by_one(decoder: Any, group: list[list[int]], max_new_tokens: int) -> tuple[list[list[int]], list]:
    results = [decoder.generate(ids, max_new_tokens=max_new_tokens) for ids in group]
    return [r.token_ids for r in results], [(r.elapsed_s, r.num_rounds) for r in results]


RUNNERS: dict[str, Callable[[Any, list[list[int]], int], tuple[list[list[int]], list]]] = {
    "specdiff_batch": _specdiff_batch, "hf_batched": _hf_batched, "one_by_one": _one_by_one}


def batch_methods(methods: Sequence[str], default: Sequence[str]) -> list[str]:
    """The batch bench's methods: all three when ``methods`` is the single-row bench's default, else
    those named, each one of ``BATCH_METHODS``."""
    if tuple(methods) == tuple(default):
        return list(BATCH_METHODS)
    unknown = [m for m in methods if m not in BATCH_METHODS]
    if unknown or not methods:
        raise SpecdiffError(f"--batch-size above 1 runs the batch methods; {', '.join(unknown) or '(none given)'} "
                            f"is not one: pick from {', '.join(BATCH_METHODS)} (or leave --methods out)")
    return list(dict.fromkeys(methods))


def run_batch_groups(decoder: Any, prompt_ids: list[tuple[str, list[int]]], methods: list[str], batch_size: int,
                     max_new_tokens: int, repeats: int, advance: Callable[[str], None]) -> pd.DataFrame:
    """Every group under every method, interleaved; one row per method, prompt and repeat."""
    import pandas as pd

    for name in methods:  # warm-up: first-call costs (and the batch policy's first look) land nowhere
        RUNNERS[name](decoder, [ids for _, ids in prompt_ids[:2]], min(8, max_new_tokens))
    records = []
    for repeat in range(repeats):
        for g, group in enumerate(groups(prompt_ids, batch_size)):
            shift = (g + repeat) % len(methods)
            for name in methods[shift:] + methods[:shift]:
                start = time.perf_counter()
                rows, timing = RUNNERS[name](decoder, [ids for _, ids in group], max_new_tokens)
                group_s = time.perf_counter() - start
                advance(f"group {g} {name}")
                for (prompt_id, _), tokens, (row_s, rounds) in zip(group, rows, timing, strict=True):
                    records.append(dict(prompt_id=prompt_id, repeat=repeat, group=g, method=name,
                                        batch_size=len(group), new_tokens=len(tokens), rounds=rounds, row_s=row_s,
                                        group_s=group_s, output_hash=output_hash(tokens),
                                        loop_share=loop_share(tokens)))
    return pd.DataFrame(records)


def summarize_batch_bench(runs: pd.DataFrame, methods: list[str], batch_size: int,
                          mismatched: tuple[str, ...]) -> pd.DataFrame:
    """One row per method: total and mean per-row tokens/s, and the speedup over ``hf_batched``."""
    import pandas as pd

    wall = runs.drop_duplicates(["method", "repeat", "group"]).groupby("method")["group_s"].sum()
    tokens = runs.groupby("method")["new_tokens"].sum()
    per_row = (runs["new_tokens"] / runs["row_s"]).groupby(runs["method"]).mean()
    summary = pd.DataFrame({"method": methods})
    summary["batch_size"] = batch_size
    summary["prompts"] = runs.groupby("method")["prompt_id"].nunique().reindex(methods).to_numpy()
    summary["new_tokens"] = tokens.reindex(methods).to_numpy()
    summary["total_s"] = wall.reindex(methods).to_numpy()
    summary["tokens_per_s"] = summary["new_tokens"] / summary["total_s"]
    summary["per_row_tokens_per_s"] = per_row.reindex(methods).to_numpy()
    summary["rounds"] = runs.groupby("method")["rounds"].sum().reindex(methods).to_numpy()
    hf = summary.loc[summary["method"] == "hf_batched", "tokens_per_s"]
    summary["speedup_vs_hf_batched"] = summary["tokens_per_s"] / float(hf.iloc[0]) if len(hf) else float("nan")
    summary["loop_share"] = runs.groupby("method")["loop_share"].mean().reindex(methods).to_numpy()
    summary["greedy_identical"] = not mismatched
    return summary
