"""The drafter's options on the pocket pair, and what a round costs. Prints three tables.

    python benchmarks/draft_options.py            # about 4 minutes on 2 CPU cores

1. The drafter's options, greedy: mean acceptance length at blocks 8 and 16 with 1 and 2
   denoising steps for the plain denoising loop, with the encoder's first token
   (``encoder_first_token``), and with the canvas also seeded from the context (``context_seed``).
2. Proposal modes under sampling: ``ARGMAX`` (one-hot drafts) against ``RESAMPLE`` at temperatures
   0.7 and 1.0, block 8, 1 step (``AUTO``, the default, picks RESAMPLE there).
3. Costs, median milliseconds at one thread: a verifier decoding step (one token against a warm
   cache), one denoising step with nothing new to encode, and a 1-step round that also appends 3
   committed tokens to the drafter's cache.

Prompts: the first ``--prompts`` of the code and prose suites; every generation is seeded, so
tables 1 and 2 repeat exactly.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch
from specdiff.drafts import ContextSeed, ProposalMode
from specdiff.evals.suites import load_suite

from specdiff.loaders import load_pocket
from specdiff.protocols import Choice


def acceptance_length(decoder, prompts: list, seeds: int = 1, **kwargs) -> float:
    """Tokens committed per round over every prompt and seed (the verifier's token included)."""
    tokens = rounds = 0
    for ids in prompts:
        for seed in range(seeds):
            result = decoder.generate(ids, seed=seed, **kwargs)
            tokens, rounds = tokens + len(result.token_ids), rounds + result.num_rounds
    return tokens / rounds


def median_ms(run: Callable[[], object], repeats: int = 40, warm: int = 5) -> float:
    times = []
    for _ in range(repeats + warm):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[warm:])


def round_costs(decoder, ids: torch.Tensor) -> dict[str, float]:
    from transformers import DynamicCache

    verifier = decoder.verifier.model
    with torch.no_grad():
        cache = DynamicCache(config=verifier.config)
        last = verifier(ids, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        # The cache grows by one token a call, as in plain decoding.
        verifier_ms = median_ms(lambda: verifier(last, cache=cache, use_cache=True))
    session = decoder.drafter.session(ids)
    generator = torch.Generator().manual_seed(0)
    session.propose(ids[:, :0], Choice.diffusion(8, 1), generator)  # encodes the prompt
    step_ms = median_ms(lambda: session.propose(ids[:, :0], Choice.diffusion(8, 1), generator))
    round_ms = median_ms(lambda: session.propose(ids[:, -3:], Choice.diffusion(8, 1), generator))
    return {"verifier decoding step (1 token)": verifier_ms, "one denoising step (canvas 64)": step_ms,
            "1-step round, appending 3 committed tokens": round_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    decoder = load_pocket()
    drafter = decoder.drafter
    suites = {name: [decoder.encode_prompt(p.prompt) for p in load_suite(name).prompts[: args.prompts]]
              for name in ("code", "prose")}
    n = args.max_new_tokens

    rows = []
    lookup = drafter.context_seed or ContextSeed()
    variants = {"decoder only": (False, None), "+ encoder first token": (True, None),
                "+ context seed": (True, lookup)}
    for block, steps in ((8, 1), (8, 2), (16, 1), (16, 2)):
        row = {"block_size": block, "denoising_steps": steps}
        for name, (first, context_seed) in variants.items():
            drafter.encoder_first_token, drafter.context_seed = first, context_seed
            row[name] = acceptance_length(decoder, suites["code"], max_new_tokens=n, block_size=block,
                                          denoising_steps=steps)
        rows.append(row)
    drafter.encoder_first_token, drafter.context_seed = True, lookup
    print(f"\n1. Mean acceptance length, greedy, {args.prompts} code prompts, {n} new tokens")
    print(pd.DataFrame(rows).round(2).to_string(index=False))

    rows = []
    for suite, prompts in suites.items():
        for temperature in (0.7, 1.0):
            row = {"suite": suite, "temperature": temperature}
            for mode in (ProposalMode.ARGMAX, ProposalMode.RESAMPLE):
                drafter.proposal_mode = mode
                row[mode.value] = acceptance_length(decoder, prompts, seeds=2, max_new_tokens=n, block_size=8,
                                                    denoising_steps=1, temperature=temperature)
            rows.append(row)
    drafter.proposal_mode = ProposalMode.AUTO
    print(f"\n2. Mean acceptance length under sampling, block 8, 1 step, {args.prompts} prompts x 2 seeds, "
          f"{n} new tokens")
    print(pd.DataFrame(rows).round(2).to_string(index=False))

    costs = round_costs(decoder, suites["code"][0])
    print("\n3. Median milliseconds, one thread")
    print(pd.Series(costs).round(1).to_string())


if __name__ == "__main__":
    main()
