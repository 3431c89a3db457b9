"""What canvas recycling does. Prints a table.

    python benchmarks/controller_bench.py                      # recycling: the pocket pair, code suite
    python benchmarks/controller_bench.py --suite prose --prompts 6 --max-new-tokens 96
    python benchmarks/controller_bench.py --drafter D --verifier V --ar-drafter A

``Fixed(block, steps, recycle)`` at 1 and 2 denoising steps, with and without recycling, run by
``specdiff bench``'s own machinery
(``specdiff.evals.bench``: greedy, interleaved per prompt, every output checked against the
verifier's own ``generate()``): tokens/s, mean acceptance length (tokens committed per round,
the verifier's token included) and acceptance rate. The policies themselves (fixed_best,
heuristic, adaptive) are compared by ``specdiff bench``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specdiff.evals.bench import BENCH_METHODS, BenchConfig, BenchMethod, run_bench, speculative

from specdiff.controllers import Fixed


def recycling_methods(block_size: int) -> dict[str, BenchMethod]:
    """Bench methods ``steps=S recycle=on|off``: ``Fixed(block_size, S, recycle)`` for S in 1, 2."""
    return {
        f"steps={steps} recycle={'on' if recycle else 'off'}": BenchMethod(
            speculative(lambda ctx, s=steps, r=recycle: Fixed(block_size, s, r))
        )
        for steps in (1, 2)
        for recycle in (False, True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drafter")
    parser.add_argument("--verifier")
    parser.add_argument("--suite", default="code")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path("benchmarks/results/recycling.csv")
    methods = recycling_methods(args.block_size)
    BENCH_METHODS.update(methods)  # the registry is how the bench takes new methods
    config = BenchConfig(out=out, suite=args.suite, max_new_tokens=args.max_new_tokens,
                         methods=("ar", *methods), limit=args.prompts, threads=args.threads,
                         drafter=args.drafter, verifier=args.verifier)
    result = run_bench(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.summary.to_csv(out, index=False)
    columns = ["method", "tokens_per_s", "speedup_vs_ar", "mean_acceptance_length", "acceptance_rate"]
    print(f"\nCanvas recycling ({args.suite}, {args.prompts} prompts, {args.max_new_tokens} new tokens, "
          f"block {args.block_size}, greedy outputs identical: {result.identical})")
    print(result.summary[columns].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
