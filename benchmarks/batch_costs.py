"""What one round of a batch costs, part by part: the figures behind ``docs/batching.md``'s profile.

    OMP_NUM_THREADS=1 python benchmarks/batch_costs.py --threads 1     # about a minute on 2 CPU cores

1. The verifier's forward over ``[B, K]`` new tokens against a warm cache (the code suite's first B
   prompts prefilled, so rows of different lengths), for B in ``--sizes`` and K in ``--blocks``:
   median milliseconds, and the same per token scored. Then the rollback after it
   (``RowBuffers.keep``): every row keeping the same count (a crop) and rows keeping different counts
   (the re-alignment). Each measurement rolls back to the warm cache, so the cache never grows.
2. A B=8 ``generate_batch`` at ``--max-new-tokens``, timed by the loop itself (``BatchRoundStats``):
   per proposer, block and batch size, rounds, milliseconds drafting / verifying / the rest, committed
   tokens a round; the prefill; and the batch policy's own ``choose`` and ``observe`` a round.
   Greedy, the decoder's own batch policy.

Medians of ``--repeats`` interleaved passes; the machine is shared, so read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch

from specdiff.threads import use_threads


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def forward_costs(decoder, prompts: list[list[int]], sizes: list[int], blocks: list[int], repeats: int) -> None:
    """Table 1: forward and rollback milliseconds per B and K, on a warm cache."""
    verifier = decoder.verifier
    print("| B | K | forward ms | ms per row-token | keep, same count ms | keep, ragged ms |")
    print("|---|---|---|---|---|---|")
    for b in sizes:
        session = verifier.batch_session()
        session.add_rows([torch.tensor(p) for p in prompts[:b]])
        times = {k: ([], [], []) for k in blocks}
        for _ in range(repeats):
            for k in blocks:
                tokens = torch.randint(0, 4000, (b, k))
                forward, crop, ragged = times[k]
                start = time.perf_counter()
                session.score(tokens)
                forward.append(time.perf_counter() - start)
                start = time.perf_counter()
                session.keep(torch.zeros(b, dtype=torch.long))  # every row drops the whole block: a crop
                crop.append(time.perf_counter() - start)
                if b > 1 and k > 1:
                    saved = snapshot(session.rows)
                    session.score(tokens)
                    start = time.perf_counter()
                    session.keep(torch.arange(b) % k)  # rows keep different counts: the re-alignment
                    ragged.append(time.perf_counter() - start)
                    restore(session.rows, saved)
        for k in blocks:
            forward, crop, ragged = times[k]
            print(f"| {b} | {k} | {median_ms(forward):.1f} | {median_ms(forward) / (b * k):.2f} | "
                  f"{median_ms(crop):.2f} | {median_ms(ragged) if ragged else float('nan'):.2f} |")


def snapshot(rows) -> tuple:
    """A ``RowBuffers``' bookkeeping: its lengths and each ring's record of positions. A block's writes
    destroy no state a query can still reach, so restoring these undoes the block."""
    rings = {w: layout.positions.clone() for w, layout in rows.layouts.items() if hasattr(layout, "positions")}
    return rows.lengths.clone(), rings


def restore(rows, saved: tuple) -> None:
    rows.lengths, rings = saved
    for window, positions in rings.items():
        rows.layouts[window].positions = positions


def round_profile(decoder, prompts: list[list[int]], max_new_tokens: int) -> None:
    """Table 2: a B=len(prompts) run's rounds, grouped by what they did."""
    from specdiff.args import GenerateArgs
    from specdiff.batch import BatchRun

    run = BatchRun(decoder, GenerateArgs(max_new_tokens=max_new_tokens))
    for p in prompts:
        run.add_ids(p)
    policy_s = dict.fromkeys(("choose", "observe"), 0.0)  # the policy's own time, which no stats field holds
    for name in policy_s:
        def timed(*args, _method=getattr(run.policy, name), _name=name):
            began = time.perf_counter()
            out = _method(*args)
            policy_s[_name] += time.perf_counter() - began
            return out
        setattr(run.policy, name, timed)
    start = time.perf_counter()
    run._admit()
    prefill = time.perf_counter() - start
    groups: dict[tuple, list] = collections.defaultdict(list)
    for round_ in run.rounds():
        s = round_.stats
        groups[(s.proposer.value, s.block_size, s.batch_size)].append(s)
    total = time.perf_counter() - start
    tokens = sum(len(run.result(i).token_ids) for i in range(len(prompts)))
    print(f"\nB={len(prompts)}: {tokens} tokens in {total:.2f} s ({tokens / total:.1f} tok/s), prefill {prefill:.2f} s")
    print("| proposer | K | B | rounds | draft ms | verify ms | rest ms | committed a round | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (proposer, k, b), rounds in sorted(groups.items(), key=lambda kv: -sum(s.total_s for s in kv[1])):
        n = len(rounds)
        draft, verify, rest = (1e3 * sum(getattr(s, f) for s in rounds) / n for f in ("draft_s", "verify_s", "other_s"))
        print(f"| {proposer} | {k} | {b} | {n} | {draft:.1f} | {verify:.1f} | "
              f"{rest:.1f} | {sum(sum(s.committed) for s in rounds) / n:.1f} | "
              f"{sum(s.total_s for s in rounds):.2f} |")
    count = sum(len(rounds) for rounds in groups.values())
    choose, observe = (1e3 * policy_s[name] / count for name in ("choose", "observe"))
    print(f"\nthe batch policy ({type(run.policy).__name__}), a round: choose {choose:.2f} ms, "
          f"observe {observe:.2f} ms ({count} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from specdiff.evals.suites import load_suite

    from specdiff.loaders import load_pocket

    decoder = load_pocket()
    texts = [p.decoder_input for p in load_suite("code").prompts[:8]]
    prompts = [decoder.encode_prompt(t)[0].tolist() for t in texts]
    decoder.generate_batch(prompts[:2], max_new_tokens=8)  # warm-up: first calls pay for lazy setup
    with torch.no_grad():
        forward_costs(decoder, prompts, args.sizes, args.blocks, args.repeats)
    round_profile(decoder, prompts, args.max_new_tokens)


if __name__ == "__main__":
    main()
