"""Controllers side by side, and what canvas recycling does to acceptance. Prints two tables.

    python benchmarks/controller_bench.py                      # the pocket pair, code suite
    python benchmarks/controller_bench.py --suite prose --prompts 6 --max-new-tokens 96
    python benchmarks/controller_bench.py --drafter D --verifier V

Table 1, policies: greedy, interleaved per prompt (each prompt runs every method before the next,
in an order rotated per prompt, so machine noise hits all alike): ``ar`` (the verifier's own
``generate()``), ``fixed`` (``--block-size``/``--steps``), ``heuristic`` and ``adaptive`` (one
policy kept across prompts, as a decoder keeps its own). Every method must give ``ar``'s tokens.

Table 2, canvas recycling: ``Fixed(block, steps, recycle)`` at 1 and 2 denoising steps, with and
without recycling: mean acceptance length (tokens committed per round, the verifier's token
included), acceptance rate and tokens/s. The loop share of the outputs (share of 4-grams already
seen earlier in the same output) stands beside them: looping text is trivially easy to draft.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from specdiff.evals.suites import load_suite
from specdiff.evals.sweep import loop_share, verifier_generate

from specdiff.controller import Adaptive, Fixed, Heuristic


def load(drafter: str | None, verifier: str | None):
    from specdiff.cli import load_decoder

    return load_decoder(drafter, verifier)


def speculative_row(decoder, controller, ids, max_new_tokens: int) -> dict:
    from specdiff.decoding import SpeculativeDecoder

    run = SpeculativeDecoder(decoder.drafter, decoder.verifier, controller=controller)
    result = run.generate(ids, max_new_tokens)
    proposed = sum(s.proposed for s in result.stats)
    return dict(
        tokens=result.token_ids,
        seconds=result.elapsed_s,
        rounds=result.num_rounds,
        proposed=proposed,
        accepted=sum(s.accepted for s in result.stats),
        plain_rounds=sum(s.proposed == 0 for s in result.stats),
    )


def ar_row(decoder, ids, max_new_tokens: int) -> dict:
    start = time.perf_counter()
    tokens = verifier_generate(decoder.verifier, ids, max_new_tokens, 0.0, 0, 1.0, 0)
    return dict(tokens=tokens, seconds=time.perf_counter() - start, rounds=len(tokens), proposed=0, accepted=0,
                plain_rounds=len(tokens))


def summarize(rows: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    sums = rows.groupby("method").agg(
        new_tokens=("new_tokens", "sum"), seconds=("seconds", "sum"), rounds=("rounds", "sum"),
        proposed=("proposed", "sum"), accepted=("accepted", "sum"), plain_rounds=("plain_rounds", "sum"),
        loop_share=("loop_share", "mean"), identical=("identical", "all"),
    ).reindex(order)
    table = pd.DataFrame(index=sums.index)
    table["tokens_per_s"] = sums["new_tokens"] / sums["seconds"]
    if "ar" in sums.index:
        table["vs_ar"] = table["tokens_per_s"] / table.loc["ar", "tokens_per_s"]
    table["mean_acceptance_length"] = sums["new_tokens"] / sums["rounds"]
    table["acceptance_rate"] = sums["accepted"] / sums["proposed"].where(sums["proposed"] > 0)
    table["plain_round_share"] = sums["plain_rounds"] / sums["rounds"]
    table["loop_share"] = sums["loop_share"]
    table["identical_to_ar"] = sums["identical"]
    return table


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    torch.set_num_threads(args.threads)
    decoder = load(args.drafter, args.verifier)
    canvas = decoder.drafter.canvas_length
    block = min(args.block_size, canvas)
    prompts = [decoder.encode_prompt(p.prompt) for p in load_suite(args.suite).prompts[: args.prompts]]
    adaptive = Adaptive()
    methods = {
        "ar": None,
        f"fixed({block},{args.steps})": lambda: Fixed(block, args.steps),
        "heuristic": Heuristic,
        "adaptive": lambda: adaptive,
    }
    recycling = {
        f"steps={steps} recycle={'on' if recycle else 'off'}": (lambda s=steps, r=recycle: Fixed(block, s, r))
        for steps in (1, 2)
        for recycle in (False, True)
    }
    decoder.generate(prompts[0], 8, block_size=block)  # first-call costs land in no measurement
    references = [ar_row(decoder, ids, args.max_new_tokens)["tokens"] for ids in prompts]
    tables = []
    for title, group in (("policies", methods), ("recycling", recycling)):
        names, records = list(group), []
        for i, (ids, reference) in enumerate(zip(prompts, references, strict=True)):
            for name in names[i % len(names):] + names[: i % len(names)]:  # rotated per prompt
                make = group[name]
                if make is None:
                    row = ar_row(decoder, ids, args.max_new_tokens)
                else:
                    row = speculative_row(decoder, make(), ids, args.max_new_tokens)
                tokens = row.pop("tokens")
                records.append(dict(row, method=name, new_tokens=len(tokens), identical=tokens == reference,
                                    loop_share=loop_share(tokens)))
            print(f"{title}: prompt {i + 1}/{len(prompts)}", flush=True)
        tables.append(summarize(pd.DataFrame(records), names))
    return tables[0], tables[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafter")
    parser.add_argument("--verifier")
    parser.add_argument("--suite", default="code")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    policies, recycling = run(args)
    with pd.option_context("display.width", 200, "display.precision", 3):
        print(f"\nPolicies ({args.suite}, {args.prompts} prompts, {args.max_new_tokens} new tokens, greedy)")
        print(policies.to_string())
        print(f"\nCanvas recycling (fixed block size {args.block_size}, capped at the canvas; same prompts)")
        print(recycling.to_string())


if __name__ == "__main__":
    main()
