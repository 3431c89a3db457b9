"""Batch policies replayed on recorded greedy outputs: noise-free comparisons of a closed batch's time.

    OMP_NUM_THREADS=1 python benchmarks/batch_replay.py --threads 1              # pocket pair, float32, ~2 minutes
    OMP_NUM_THREADS=1 python benchmarks/batch_replay.py --dtype bfloat16 --seeds 8

Timing one B = 8 ``generate_batch`` on a shared 2-core machine moves 15-30% between runs, more than
the differences between batch policies, so ``batch_bench.py`` cannot rank them. Here the code
suite's first ``2 x --batch-size`` prompts are decoded once by the verifier alone (its greedy
``generate()``, which every row of a batch reproduces), and each policy then replays closed batches
of them: each round the policy picks a choice, each row's n-gram lookup guesses from the row's
committed tokens exactly as in a real run, its acceptance is the guess's agreement with the
recorded output, and the round's seconds come from a cost model (the policy sees them with
lognormal noise, ``--noise``). Printed: each policy's speedup over plain batched decoding (the
replayed time of ``BatchFixed(PLAIN)``), per group of prompts, for a fresh policy (``cold``) and
for one that decoded the other group first (``warm``, as a decoder's own policy is after its first
batch), the rounds of the cold replay, and the tokens a round of the batch's slowest row (the one
that sets when a closed batch ends).

The cost model: the verifier's forward ``a + b * B + c * B * S`` milliseconds for B rows of S scored
tokens, fitted here on timed forwards against a warm cache (B = 1, 8; S = 1, 4, 16; medians); the
rest from ``docs/batching.md``'s profile: the rollback 0.12 ms (``RowBuffers``; 2.4 ms when rows kept
different counts with the right-aligned cache before it, 0.4 otherwise), 1.6 ms of bookkeeping a
round, the lookup 0.07 ms a row (its batched session: 0.5-0.7 ms a B = 8 round in
``batch_costs.py``; one session per row cost 0.15), a model round ``8 + 7 * B`` ms a denoising step
plus 8 ms. The drafter's acceptance is not replayed (its canvases depend on the
drafter's state): a model draft position is taken right with chance 0.45 at the first position and
0.2 after, about the pocket drafter's (it rarely runs at B = 8, where a round costs 3-4 plain ones).
Prefill is left out (the same for every method), so the ratios are those of the decoding rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from specdiff.drafts.ngram import context_continuation

from specdiff.threads import use_threads


@dataclass(frozen=True)
class RoundCost:
    """Milliseconds of a batch round's parts (see the module docstring)."""

    base: float
    per_row: float
    per_row_token: float
    rollback: float = 0.12
    other: float = 1.6
    lookup_per_row: float = 0.07

    def forward(self, rows: int, scored: int) -> float:
        return self.base + self.per_row * rows + self.per_row_token * rows * scored

    def model_draft(self, rows: int, steps: int) -> float:
        return (8.0 + 7.0 * rows) * max(steps, 1) + 8.0


def fit_costs(verifier, prompts: list[list[int]], repeats: int = 5) -> RoundCost:
    """Time the verifier's forward at B = 1, 8 and S = 1, 4, 16 against a warm cache; least squares."""
    points = []
    for rows in (1, 8):
        session = verifier.batch_session()
        session.add_rows([torch.tensor(p) for p in prompts[:rows]])
        for scored in (1, 4, 16):
            times = []
            for _ in range(repeats):
                tokens = torch.randint(0, 4000, (rows, scored))
                start = time.perf_counter()
                session.score(tokens)
                times.append(time.perf_counter() - start)
                session.keep(torch.zeros(rows, dtype=torch.long))
            points.append((rows, scored, 1e3 * statistics.median(times)))
    design = np.array([[1.0, b, b * s] for b, s, _ in points])
    coef = np.linalg.lstsq(design, np.array([ms for _, _, ms in points]), rcond=None)[0]
    return RoundCost(*(max(float(c), 0.0) for c in coef))


def replay(policy, prompts: list[list[int]], outputs: list[list[int]], limits, max_steps, cost: RoundCost,
           noise: float, seed: int) -> tuple[float, int, float]:
    """Seconds and rounds of one closed batch under ``policy`` (see the module docstring), and the
    tokens a round of its slowest row (the fewest committed per round it took part in)."""
    from specdiff.controllers.batch import BatchRoundStats
    from specdiff.protocols import Proposer

    rng = np.random.default_rng(seed)
    policy.reset(limits, max_steps)
    done = [0] * len(prompts)
    active = list(range(len(prompts)))
    seconds, rounds = 0.0, 0
    taken = [0] * len(prompts)  # rounds each row took part in
    while active:
        rows = len(active)
        choice = policy.choose(rows)
        drafting = choice.proposer is not Proposer.PLAIN
        caps = [min(choice.block_size, len(outputs[i]) - done[i] - 1) if drafting else 0 for i in active]
        proposed, accepted = [], []
        for i, cap in zip(active, caps, strict=True):
            target = outputs[i][done[i] :]
            if cap <= 0:
                guess = []
            elif choice.proposer is Proposer.NGRAM:
                guess = context_continuation(torch.tensor(prompts[i] + outputs[i][: done[i]]), cap).tolist()
            else:
                right = np.cumprod(rng.random(cap) < np.r_[0.45, np.full(cap - 1, 0.2)]).astype(bool)
                guess = [t if ok else -1 for t, ok in zip(target[:cap], right, strict=True)]
            n = 0
            while n < len(guess) and guess[n] == target[n]:
                n += 1
            proposed.append(len(guess))
            accepted.append(n)
        width = max(proposed)
        committed = [n + 1 for n in accepted]
        # A lookup round in which no row guessed stays a lookup round (as in the decoder), a plain forward.
        kind = choice.proposer if width or (choice.proposer is Proposer.NGRAM and max(caps) > 0) else Proposer.PLAIN
        drafted = kind is not Proposer.PLAIN
        verify = cost.forward(rows, 1 + width) + cost.rollback
        draft = {Proposer.NGRAM: cost.lookup_per_row * rows, Proposer.PLAIN: 0.0}.get(
            kind, cost.model_draft(rows, choice.denoising_steps))
        seconds += (verify + draft + cost.other) / 1e3

        def jitter(ms: float) -> float:
            return ms / 1e3 * float(np.exp(rng.normal(0.0, noise)))

        policy.observe(BatchRoundStats(
            round_index=rounds, batch_size=rows, proposer=kind, block_size=choice.block_size if drafted else 0,
            denoising_steps=choice.denoising_steps if drafted else 0,
            denoising_steps_used=choice.denoising_steps if drafted else 0, scored=1 + width,
            blocks=tuple(caps) if drafted else (0,) * rows, proposed=tuple(proposed), accepted=tuple(accepted),
            committed=tuple(committed), side_reach=(-1,) * rows, draft_s=jitter(draft), verify_s=jitter(verify),
            other_s=jitter(cost.other), fed=1))
        rounds += 1
        for i, n in zip(active, committed, strict=True):
            done[i] += n
            taken[i] += 1
        active = [i for i in active if done[i] < len(outputs[i])]
    return seconds, rounds, min(len(out) / n for out, n in zip(outputs, taken, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="code")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from batch_bench import reference
    from specdiff.evals.suites import load_suite

    from specdiff.controllers import PLAIN
    from specdiff.controllers.batch import BatchAdaptive, BatchFixed
    from specdiff.loaders import load_pocket
    from specdiff.protocols import Choice

    decoder = load_pocket(dtype=getattr(torch, args.dtype))
    size = args.batch_size
    texts = [p.decoder_input for p in load_suite(args.suite).prompts[: 2 * size]]
    prompts = [decoder.encode_prompt(t)[0].tolist() for t in texts]
    outputs = [reference(decoder.verifier, p, args.max_new_tokens) for p in prompts]
    with torch.no_grad():
        cost = fit_costs(decoder.verifier, prompts)
    print(f"{args.suite} suite, {len(prompts)} prompts in 2 batches of {size}, {args.max_new_tokens} new tokens, "
          f"{args.dtype}; forward ms = {cost.base:.2f} + {cost.per_row:.2f} B + {cost.per_row_token:.3f} B S")
    groups = [(prompts[:size], outputs[:size]), (prompts[size:], outputs[size:])]
    limits, max_steps = decoder.limits, decoder.max_steps

    def run(policy, group: int, seed: int) -> tuple[float, int, float]:
        return replay(policy, *groups[group], limits, max_steps, cost, args.noise, seed)

    plain = [run(BatchFixed(PLAIN), g, 0)[0] for g in (0, 1)]
    makers = {f"BatchFixed(ngram, K={k})": (lambda k=k: BatchFixed(Choice.ngram(k))) for k in args.blocks}
    makers["BatchAdaptive()"] = BatchAdaptive
    print("\n| policy | cold, batch 1 | cold, batch 2 | warm, batch 1 | warm, batch 2 | rounds (cold) "
          "| slowest row's tokens a round (cold, batches 1 / 2) |")
    print("|---|---|---|---|---|---|---|")
    for name, make in makers.items():
        cold, warm, rounds, slowest = [[], []], [[], []], [], [[], []]
        for seed in range(args.seeds):
            for g in (0, 1):
                seconds, n, tokens = run(make(), g, seed)
                cold[g].append(plain[g] / seconds)
                rounds.append(n)
                slowest[g].append(tokens)
                policy = make()
                run(policy, 1 - g, 1000 + seed)  # the other batch first: what the policy carries over
                warm[g].append(plain[g] / run(policy, g, seed)[0])
        cells = [f"{np.mean(x):.3f}" for x in (*cold, *warm)]
        print(f"| {name} | {' | '.join(cells)} | {np.mean(rounds):.0f} | "
              f"{np.mean(slowest[0]):.2f} / {np.mean(slowest[1]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
