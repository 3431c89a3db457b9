"""How close do the controllers come to the best any controller could do? Prints a table.

    python benchmarks/controller_replay.py                      # code suite, 8 prompts x 256 tokens, ~5 minutes
    python benchmarks/controller_replay.py --suite prose --steps 1 2

1. Measured: ``Heuristic``, ``Fixed(block, 1)``, ``Adaptive`` (one instance across prompts, as a
   decoder keeps its own) and ``Fixed.ngram(block)`` (the n-gram lookup alone) decode each prompt
   greedily, interleaved in a shuffled order per prompt; tokens/s, and the controller's own
   milliseconds per round (choose, cut, observe).
2. Traces (``specdiff.evals.replay``): a full canvas drafted at every position of each output, by
   the n-gram lookup and by the drafter at each ``--steps`` setting; saved to ``--traces`` and
   reused by later runs (delete to redo).
3. Replayed: the same controllers run on the traces, each round timed by a cost model fitted on
   every measured round (controller compute and timing noise left out). Replayed beside measured
   says how far a replay is to be trusted; replays then compare controller designs in seconds.
4. Hindsight: the least time any choice of block and steps per round could take, knowing every
   round's acceptance in advance (``hindsight_seconds``). No online controller can beat it here.
Replayed only: the best fixed setting on the traces (a grid); Adaptive without each of its
mechanisms (``ABLATIONS``), to show what each adds; and the bound without plain rounds (every
round drafts), to split what foresight gains into knowing where a run ends and knowing when not
to draft at all.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from specdiff.evals.replay import RoundCosts, Setting, Trace, hindsight_seconds, record_trace, replay
from specdiff.evals.suites import load_suite

from specdiff.controllers import Adaptive, Fixed, Heuristic
from specdiff.loaders import load_pocket

# Adaptive without one mechanism each (replayed only): what each one adds.
ABLATIONS = {
    "adaptive, no lookup": "no-lookup",
    "adaptive, no escalation": dict(escalate=False),
    "adaptive, exploring 1 round in 16": dict(explore_every=16),
    "adaptive, no exploration": dict(explore_every=10**9),
    "adaptive, no regime buckets": dict(regime_edges=()),
    "adaptive, deciding every round": dict(decide_every=1),
    "adaptive, no hysteresis": dict(hysteresis=0.0),
}


class Timed:
    """A controller with a stopwatch on its own calls (``choose``, ``cut``, ``observe``)."""

    def __init__(self, inner) -> None:
        self.inner, self.seconds, self.rounds = inner, 0.0, 0
        if hasattr(inner, "cut"):
            self.cut = self._cut

    def _timed(self, method, *args):
        start = time.perf_counter()
        result = method(*args)
        self.seconds += time.perf_counter() - start
        return result

    def reset(self, limits) -> None:
        self.inner.reset(limits)

    def choose(self):
        return self._timed(self.inner.choose)

    def _cut(self, confidence, steps_used):
        return self._timed(self.inner.cut, confidence, steps_used)

    def observe(self, stats) -> None:
        self.rounds += 1
        self._timed(self.inner.observe, stats)


def settings_of(steps: tuple[int, ...]) -> tuple[Setting, ...]:
    """The lookup, then the drafter at each step count: the rows a trace records."""
    return (Setting.ngram(), *(Setting.diffusion(s) for s in steps))


def load_traces(path: Path, steps: tuple[int, ...]) -> list[Trace] | None:
    """Saved traces; rows: the lookup, then the drafter at ``steps`` (``steps`` lists 0 first for the lookup)."""
    if not path.is_file():
        return None
    saved = np.load(path)
    if tuple(saved["steps"].tolist()) != (0, *steps) or "offered0" not in saved:
        return None
    count = int(saved["count"])
    return [Trace(settings=settings_of(steps), reach=saved[f"reach{i}"], confidence=saved[f"confidence{i}"],
                  offered=saved[f"offered{i}"]) for i in range(count)]


def save_traces(path: Path, traces: list[Trace]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"reach{i}": t.reach for i, t in enumerate(traces)}
    arrays |= {f"confidence{i}": t.confidence.astype(np.float32) for i, t in enumerate(traces)}
    arrays |= {f"offered{i}": t.offered for i, t in enumerate(traces)}
    steps = [s.steps for s in traces[0].settings]  # the lookup's row saves as 0 steps
    np.savez_compressed(path, steps=np.array(steps), count=len(traces), **arrays)


def without_lookup(traces: list[Trace]) -> list[Trace]:
    return [Trace(t.settings[1:], t.reach[1:], t.confidence[1:], t.offered[1:]) for t in traces]


def without_lookup_costs(costs: RoundCosts) -> RoundCosts:
    return RoundCosts(draft_s=costs.draft_s[1:], verify_s=costs.verify_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="code")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=16, help="the fixed block measured beside the others")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2],
                        help="the drafter's denoising steps the traces record (the lookup is always recorded)")
    parser.add_argument("--grid-blocks", type=int, nargs="+", default=[4, 8, 16, 32, 64],
                        help="block sizes of the replayed fixed grid (x every recorded steps setting)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--traces", type=Path, help="trace file (default benchmarks/results/traces_SUITE.npz)")
    parser.add_argument("--out", type=Path, help="CSV of the table (default benchmarks/results/replay_SUITE.csv)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = tuple(sorted(set(args.steps)))
    trace_path = args.traces or Path(f"benchmarks/results/traces_{args.suite}.npz")
    out = args.out or Path(f"benchmarks/results/replay_{args.suite}.csv")
    decoder = load_pocket()
    canvas = decoder.drafter.canvas_length
    prompts = [decoder.encode_prompt(p.prompt) for p in load_suite(args.suite).prompts[: args.prompts]]
    fixed = f"fixed {args.block_size} x 1"
    makers = {"heuristic": Heuristic, fixed: lambda: Fixed(args.block_size, 1), "adaptive": Adaptive,
              f"lookup {args.block_size}": lambda: Fixed.ngram(args.block_size)}
    shared = {"adaptive": Timed(Adaptive())}  # one policy across prompts, as the bench runs it
    timers = {name: shared.get(name) or Timed(makers[name]()) for name in makers}

    measured = {name: [0.0, 0] for name in makers}
    rounds, outputs, first_extra = [], [], []
    shuffle = random.Random(0)
    for ids in prompts:
        order = list(makers)
        shuffle.shuffle(order)
        results = {}
        for name in order:
            if name not in shared:  # a fresh policy per prompt, keeping the stopwatch
                timers[name].inner = makers[name]()
            decoder.controller = timers[name]
            results[name] = result = decoder.generate(ids, max_new_tokens=args.max_new_tokens, seed=0)
            measured[name][0] += result.elapsed_s
            measured[name][1] += len(result.token_ids)
            rounds += list(result.stats[1:])
        assert len({tuple(r.token_ids) for r in results.values()}) == 1, "greedy outputs differ: not lossless"
        outputs.append(results["heuristic"].token_ids)
        first_extra.append(results[fixed].stats[0])
    settings = settings_of(steps)
    costs = RoundCosts.fitted(rounds, settings, canvas)
    # The first round's prompt encoding: its seconds beyond what the fit predicts for such a round.
    one_step = min(range(1, len(settings)), key=lambda i: abs(settings[i].steps - 1))  # the fixed block's row
    extra = [max(s.total_s - costs.draft_s[one_step, s.block_size] - costs.verify_s[s.proposed], 0.0)
             for s in first_extra]

    traces = load_traces(trace_path, steps)
    stale = traces is None or [t.length for t in traces] != [len(o) for o in outputs]
    if stale:
        traces = [record_trace(decoder.proposers, ids, output, settings, seed=i)
                  for i, (ids, output) in enumerate(zip(prompts, outputs, strict=True))]
        save_traces(trace_path, traces)

    rows = []
    for name, make in makers.items():
        replayed = replay(make(), traces, costs, extra)
        seconds, tokens = measured[name]
        rows.append({"controller": name, "measured tok/s": tokens / seconds, "replayed tok/s": replayed.tokens_per_s,
                     "controller ms/round": 1e3 * timers[name].seconds / max(timers[name].rounds, 1)})
    # Replayed only: what each part of Adaptive adds.
    nan = float("nan")
    for name, change in ABLATIONS.items():
        if change == "no-lookup":  # the traces without the lookup's row: a decoder without the n-gram proposer
            played = replay(Adaptive(), without_lookup(traces), without_lookup_costs(costs), extra)
        else:
            played = replay(Adaptive(**change), traces, costs, extra)
        rows.append({"controller": name, "measured tok/s": nan, "replayed tok/s": played.tokens_per_s,
                     "controller ms/round": nan})
    # The best fixed setting, as the bench's grid would find it, but found on the traces themselves.
    grid = [Fixed.ngram(block) for block in args.grid_blocks] + [Fixed(block, s) for block in args.grid_blocks
                                                                  for s in steps]
    fixed_grid = {policy.choice: replay(policy, traces, costs, extra).tokens_per_s for policy in grid}
    best, best_fixed = max(fixed_grid.items(), key=lambda item: item[1])
    rows.append({"controller": f"best fixed on the traces: {best.proposer.value} {best.block_size} x "
                 f"{best.denoising_steps}", "measured tok/s": nan, "replayed tok/s": best_fixed,
                 "controller ms/round": nan})
    total = sum(t.length for t in traces)
    for name, plain in (("hindsight bound", True), ("hindsight bound, drafting every round", False)):
        bound = sum(hindsight_seconds(t, costs, plain) + e for t, e in zip(traces, extra, strict=True))
        rows.append({"controller": name, "measured tok/s": nan, "replayed tok/s": total / bound,
                     "controller ms/round": nan})
    table = pd.DataFrame(rows)
    heuristic = table.set_index("controller").loc["heuristic"]
    table["measured / heuristic"] = table["measured tok/s"] / heuristic["measured tok/s"]
    table["replayed / heuristic"] = table["replayed tok/s"] / heuristic["replayed tok/s"]
    print(f"\n{args.suite}, {len(prompts)} prompts x {args.max_new_tokens} new tokens, greedy, "
          f"{args.threads} thread(s); traces: the lookup and the drafter at steps {list(steps)}; round costs "
          "fitted on the measured rounds:")
    def ms(row: np.ndarray, blocks: tuple[int, ...]) -> str:
        return " / ".join(f"{1e3 * row[k]:.1f}" for k in blocks)

    for setting, row in zip(settings, costs.draft_s, strict=True):
        print(f"  draft ms, {setting.proposer.value} {setting.steps} step(s), block 1/16/{canvas}: "
              f"{ms(row, (1, 16, canvas))}")
    print(f"  verify ms, block 0/1/4/16/{canvas}: {ms(costs.verify_s, (0, 1, 4, 16, canvas))}")
    print(table.round(3).to_string(index=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)


if __name__ == "__main__":
    main()
