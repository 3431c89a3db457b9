"""What a round costs inside the decode loop, and how well the drafter's confidence predicts
acceptance: the figures behind ``specdiff.controllers.cost`` and the drafter's calibration. Prints two tables.

    python benchmarks/round_costs.py              # about 3 minutes on 2 CPU cores

1. Costs: for each fixed block K at one denoising step, the median seconds of a drafted round's
   verify (bookkeeping included) and draft, timed by the decode loop itself (``RoundStats``), on
   code prompts 2-5 at 128 new tokens, blocks interleaved per prompt, ``--repeats`` passes; each
   generation's first round is left out (its draft also encodes the prompt). Timed in the loop,
   where drafter and verifier take turns, not alone.
2. Calibration: at block 64 and one step, greedy, on the first 8 code prompts at 256 new tokens,
   per bin of the drafter's confidence (``CONFIDENCE_EDGES below``): the positions
   judged (each round's accepted ones and its first rejected one) and the share accepted.

One torch thread (``--threads``); every generation is seeded, so the calibration repeats exactly;
timings drift between runs by up to 15%.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from specdiff.evals.suites import load_suite

from specdiff.controllers import Fixed
from specdiff.loaders import load_pocket

# Bins of the drafter's confidence (its largest probability at a position).
CONFIDENCE_EDGES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def confidence_bins(confidence: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(CONFIDENCE_EDGES), confidence, side="right")


@dataclass
class RecordingFixed(Fixed):
    """``Fixed``, with a cut that keeps every token and records the confidence it was shown."""

    seen: list[np.ndarray] = field(default_factory=list)

    def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
        self.seen.append(confidence)
        return len(confidence)


def cost_table(decoder, prompts: list, blocks: tuple[int, ...], repeats: int) -> pd.DataFrame:
    """Blocks interleaved per prompt and repeated, so that the machine's drift hits all alike."""
    verify: dict[int, list[float]] = {k: [] for k in blocks}
    draft: dict[int, list[float]] = {k: [] for k in blocks}
    for _ in range(repeats):
        for ids in prompts:
            for k in blocks:
                result = decoder.generate(ids, max_new_tokens=128, block_size=k, denoising_steps=1, seed=0)
                drafted = [s for s in result.stats if s.proposed == k][1:]
                verify[k] += [s.verify_s + s.other_s for s in drafted]
                draft[k] += [s.draft_s for s in drafted]
    return pd.DataFrame([{"block": k, "tokens scored": k + 1, "rounds": len(verify[k]),
                          "verify ms": 1e3 * statistics.median(verify[k]),
                          "draft ms": 1e3 * statistics.median(draft[k])} for k in blocks])


def calibration_table(decoder, prompts: list) -> pd.DataFrame:
    bins = len(CONFIDENCE_EDGES) + 1
    tried, hit = np.zeros(bins), np.zeros(bins)
    for ids in prompts:
        decoder.controller = policy = RecordingFixed(64, 1)
        result = decoder.generate(ids, max_new_tokens=256, seed=0)
        drafted = [s for s in result.stats if s.proposed >= 2]  # the decoder cuts (and records) only these
        for stats, confidence in zip(drafted, policy.seen, strict=True):
            judged = confidence_bins(confidence[: min(stats.accepted + 1, stats.proposed)])
            np.add.at(tried, judged, 1.0)
            np.add.at(hit, judged[: stats.accepted], 1.0)
    bounds = [0.0, *CONFIDENCE_EDGES, 1.0]
    return pd.DataFrame({"confidence": [f"{lo:g}-{hi:g}" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)],
                         "positions judged": tried.astype(int), "accepted": hit / np.maximum(tried, 1)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the cost prompts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    decoder = load_pocket()
    code = [p.prompt for p in load_suite("code").prompts]
    print("Round costs in the decode loop (1 step, medians):")
    print(cost_table(decoder, code[1:5], (1, 4, 8, 16, 24, 32, 64), args.repeats).round(1).to_string(index=False))
    print("\nDrafter confidence against acceptance (block 64, 1 step, greedy):")
    print(calibration_table(decoder, code[:8]).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
