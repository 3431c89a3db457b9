"""The sweep's batch-size axis: a configuration at batch size B runs the suite's prompts in groups of B.

The groups are the suite's prompts in order, cut every B (the last may be smaller), the same for every
configuration, so a group's specdiff rows (``generate_batch``) and its baseline rows (transformers'
batched ``generate()``, left padding: ``specdiff.evals.batch_bench.hf_batched_generate``) decode the
same rows together. One group runs as one call and gives a row per prompt; how its seconds are shared
out is in ``specdiff.evals.table`` (``batch_size``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from specdiff.evals.table import AR, DIFFUSION

if TYPE_CHECKING:
    from specdiff.evals.sweep import SweepConfig, Task


def batch_group(prompt_order: list[str], prompt_id: str, size: int) -> list[str]:
    """The prompt ids of ``prompt_id``'s group at batch size ``size``."""
    start = prompt_order.index(prompt_id) // size * size
    return prompt_order[start : start + size]


def measure_batch(decoder: Any, ids: list[Any], task: Task, config: SweepConfig) -> list[dict[str, Any]]:
    """One timed batch of ``ids`` (``[1, T_i]`` each) under ``task``'s configuration: each row's measured
    part, as ``specdiff.evals.running`` gives a generation alone's."""
    prompts = [t[0].tolist() for t in ids]
    if task.method == AR:
        from specdiff.evals.batch_bench import hf_batched_generate

        start = time.perf_counter()
        rows = hf_batched_generate(decoder.verifier, prompts, config.max_new_tokens, task.temperature,
                                   config.top_k, config.top_p, task.seed)
        share = (time.perf_counter() - start) / len(rows)
        return [dict(new_tokens=len(r), rounds=len(r), proposed=0, accepted=0, mean_acceptance_length=1.0,
                     acceptance_rate=0.0, denoising_steps_used=0.0, draft_s=0.0, verify_s=share, other_s=0.0,
                     setup_s=0.0, total_s=share, position_judged=[], position_accepted=[], token_ids=r)
                for r in rows]
    from specdiff.metrics import position_counts

    start = time.perf_counter()
    results = decoder.generate_batch(
        prompts, max_new_tokens=config.max_new_tokens, proposer=task.proposer, block_size=task.block_size,
        denoising_steps=task.denoising_steps if task.proposer == DIFFUSION else None,
        temperature=task.temperature, top_k=config.top_k or None, top_p=config.top_p, seed=task.seed)
    share = (time.perf_counter() - start) / len(results)
    measured = []
    for result in results:
        judged, accepted = position_counts(result.stats, task.block_size)
        # A batch round's seconds are the batch's, in every row's stats: scaled to the row's share.
        scale = share / result.elapsed_s if result.elapsed_s > 0 else 0.0
        split = {k: v * scale for k, v in result.time_split().items()}
        drafting = [s.denoising_steps_used for s in result.stats if s.proposed > 0]
        measured.append(dict(
            new_tokens=len(result.token_ids), rounds=result.num_rounds, proposed=result.proposed,
            accepted=result.accepted, mean_acceptance_length=result.mean_acceptance_length,
            acceptance_rate=result.acceptance_rate,
            denoising_steps_used=sum(drafting) / len(drafting) if drafting else 0.0, **split,
            setup_s=max(share - sum(split.values()), 0.0), total_s=share, position_judged=judged,
            position_accepted=accepted, token_ids=result.token_ids))
    return measured
