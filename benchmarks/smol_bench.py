"""The bench on the smol pair (SmolLM2 verifier + the n-gram proposer; no smol drafter yet), chat and code suites,
128 new tokens, one thread:  .venv/bin/python benchmarks/smol_bench.py chat code
"""
import sys
from pathlib import Path

import torch
from specdiff.evals.bench import BenchConfig, run_bench

from specdiff.pairs import load_pair

torch.set_num_threads(1)

decoder = load_pair("smol")
for suite in sys.argv[1:]:
    out = Path(f"benchmarks/results/bench_smol_{suite}_128.csv")
    config = BenchConfig(out=out, suite=suite, max_new_tokens=128, limit=8, threads=1, grid_prompts=4,
                         methods=("ar", "hf_prompt_lookup", "fixed_best", "heuristic", "adaptive"),
                         grid_block_sizes=(4, 8, 16))
    result = run_bench(config, decoder, progress=False)
    result.summary.to_csv(out, index=False)
    result.runs.to_csv(out.with_name(out.stem + ".runs.csv"), index=False)
    cols = ["method", "proposer", "block_size", "tokens_per_s", "speedup_vs_ar", "mean_acceptance_length", "loop_share"]
    print(suite, "identical:", result.identical)
    print(result.summary[cols].round(3).to_string(index=False), flush=True)
