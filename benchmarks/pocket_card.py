"""The pocket pair's measured tables for its model card (issue: the pocket pair's bars).

Runs, on the held-out code suite, greedy:
1. an acceptance sweep over blocks 8/16/32/64 x steps 1/2/4/8 with 128-token continuations
   (``specdiff.evals.sweep``; resumable), plus the verifier alone, checking every output equals
   the verifier's own ``generate()`` and reporting the loop share of its continuations;
2. the speed benchmark at 256 new tokens: ``ar``, ``assisted_ar_drafter`` and ``fixed_best``
   interleaved per prompt in one run (``specdiff.evals.bench``);
3. the cold start: ``load_pocket()`` plus a first 64-token generation, imports excluded;
4. draft accuracy by position: at cut points of the verifier's greedy continuations, how often
   each draft position equals the verifier's token, for the diffusion drafter's 1-step canvas
   with and without the encoder's first token, and for the AR drafter's greedy rollout.

Usage: ``.venv/bin/python benchmarks/pocket_card.py [--out benchmarks/results] [--prompts N]``.
Prints markdown tables and writes them to OUT/pocket_card.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
from specdiff.drafts import ContextSeed

LOOPING = 0.5  # a continuation with more repeated 4-grams than this counts as looping

COLD_START = """
import time, torch
import specdiff, specdiff.decoding, specdiff.drafts, specdiff.verifiers, transformers
start = time.perf_counter()
decoder = specdiff.load_pocket()
result = decoder.generate("import os\\n\\ndef main():\\n", max_new_tokens=64, eos_token_id=[])
print(time.perf_counter() - start, len(result.token_ids))
"""


def acceptance_tables(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Mean acceptance length by block size x steps: all prompts, and prompts that do not loop."""
    ar = results[results["method"] == "ar"].set_index("prompt_id")["loop_share"]
    calm = set(ar[ar <= LOOPING].index)
    spec = results[results["method"] == "specdiff"]

    def pivot(rows: pd.DataFrame) -> pd.DataFrame:
        sums = rows.groupby(["block_size", "denoising_steps"])[["new_tokens", "rounds"]].sum()
        table = (sums["new_tokens"] / sums["rounds"]).unstack("denoising_steps").round(2)
        table.columns = [f"{steps} steps" for steps in table.columns]
        return table

    return {
        f"all {ar.size} prompts (verifier loop share {ar.mean():.2f})": pivot(spec),
        f"{len(calm)} non-looping prompts (loop share <= {LOOPING}; mean {ar[list(calm)].mean():.2f})": pivot(
            spec[spec["prompt_id"].isin(calm)]
        ),
    }


def draft_accuracy(decoder, ar_model, prompts: list, positions: int = 8, cuts: int = 8,
                   spacing: int = 8) -> pd.DataFrame:
    """Share of draft positions 0..positions-1 equal to the verifier's greedy continuation.

    Each prompt is continued greedily by the verifier; at ``cuts`` points ``spacing`` tokens apart
    each drafter proposes ``positions`` tokens from the true prefix (the diffusion drafter one
    denoising step from fresh noise, or from the context lookup's guess, the AR drafter a greedy
    rollout). Position i counts as right
    when it equals the verifier's token, whatever the earlier positions did.
    """
    import torch
    from specdiff.evals.running import verifier_generate

    from specdiff.protocols import Choice

    engine = decoder.drafter
    lookup = engine.context_seed or ContextSeed()
    variants = {"diffusion, context seed + encoder first token": (True, lookup),
                "diffusion, encoder first token": (True, None), "diffusion, decoder only": (False, None)}
    rows: dict[str, list] = {**{name: [] for name in variants}, "AR drafter (greedy rollout)": []}
    for ids in prompts:
        continuation = verifier_generate(decoder.verifier, ids, cuts * spacing + positions, 0.0, 0, 1.0, 0)
        full = torch.cat([ids, torch.tensor([continuation])], dim=1)
        for c in range(cuts):
            cut = ids.shape[1] + c * spacing
            truth = full[0, cut: cut + positions]
            if truth.numel() < positions:
                break
            for name, (first, context_seed) in variants.items():
                engine.encoder_first_token, engine.context_seed = first, context_seed
                draft = engine.session(full[:, :cut]).propose(full[:, :0], Choice.diffusion(positions, 1),
                                                              torch.Generator().manual_seed(cut))
                rows[name].append((draft.tokens[0] == truth).float())
            rollout = ar_model.generate(full[:, :cut], attention_mask=torch.ones_like(full[:, :cut]),
                                        max_new_tokens=positions, min_new_tokens=positions, do_sample=False,
                                        pad_token_id=0)
            rows["AR drafter (greedy rollout)"].append((rollout[0, cut:] == truth).float())
    engine.encoder_first_token, engine.context_seed = True, lookup
    table = pd.DataFrame({name: torch.stack(hits).mean(0).numpy() for name, hits in rows.items()}).T
    table.columns = [f"pos {i}" for i in range(positions)]
    table.index.name = f"drafter ({len(rows['diffusion, decoder only'])} cuts)"
    return table.round(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--prompts", type=int, default=None, help="use the first N prompts of the suite")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from specdiff.evals.bench import BenchConfig, run_bench
    from specdiff.evals.report import greedy_agreement, markdown_table
    from specdiff.evals.sweep import SweepConfig, run_sweep

    lines = ["# pocket pair: measured tables", ""]
    if not args.skip_sweep:
        sweep = SweepConfig(
            out=args.out / "pocket_sweep.parquet", suite="code", block_sizes=(8, 16, 32, 64),
            denoising_steps=(1, 2, 4, 8), max_new_tokens=128, limit=args.prompts, resume=True,
        )
        results = run_sweep(sweep)
        agree = greedy_agreement(results)
        lines += [f"Lossless: {int(agree['identical'].sum())}/{int(agree['prompts'].sum())} held-out prompts give "
                  "the verifier's own greedy output under every configuration.", ""]
        for title, table in acceptance_tables(results).items():
            lines += [f"Mean acceptance length (128 new tokens), {title}; rows block size, columns steps:", "",
                      markdown_table(table.reset_index()), ""]
    if not args.skip_bench:
        methods = ("ar", "assisted_ar_drafter", "fixed_best", "heuristic", "adaptive")
        bench = run_bench(BenchConfig(out=args.out / "pocket_bench.csv", suite="code", max_new_tokens=256,
                                      limit=args.prompts, methods=methods))
        bench.summary.to_csv(args.out / "pocket_bench.csv", index=False)
        columns = ["method", "block_size", "denoising_steps", "tokens_per_s", "speedup_vs_ar",
                   "mean_acceptance_length", "draft_share", "verify_share", "other_share"]
        lines += [f"Speed on {int(bench.summary['prompts'].iloc[0])} held-out code prompts, 256 new tokens each, "
                  "methods interleaved per prompt in one run "
                  f"(greedy outputs identical: {bench.identical}):", "",
                  markdown_table(bench.summary[columns], digits=3), ""]
    cold = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, check=True)
    seconds, tokens = cold.stdout.split()
    lines += [f"Cold start: load_pocket() + a first {tokens}-token generation: {float(seconds):.2f} s "
              "(imports excluded).", ""]
    from specdiff.evals.bench import load_ar_drafter
    from specdiff.evals.suites import load_suite

    from specdiff.loaders import load_pocket, pocket_folder

    decoder = load_pocket()
    prompts = [decoder.verifier.tokenizer(p.prompt, return_tensors="pt").input_ids
               for p in load_suite("code").prompts[: args.prompts or 8]]
    ar_drafter = load_ar_drafter(str(pocket_folder("ar_drafter")), decoder.verifier.model)
    accuracy = draft_accuracy(decoder, ar_drafter, prompts)
    lines += ["Draft accuracy by position (share equal to the verifier's greedy token; 1 denoising step from "
              "fresh noise, or from the context lookup's guess where the context has one; held-out code prompts):",
              "", markdown_table(accuracy.reset_index()), ""]
    text = "\n".join(lines)
    (args.out / "pocket_card.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
