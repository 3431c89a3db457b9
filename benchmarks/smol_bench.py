"""The bench on the smol pair: SmolLM2 verifier, its trained DiffusionGemma drafter and the n-gram lookup,
beside plain decoding, transformers' prompt lookup and assisted generation with the smol AR drafter.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/smol_bench.py chat code [--dtype bfloat16] [--limit 8]
        [--temperature 0.7 [--seed 0]]

One interleaved run per suite, 128 new tokens, one thread. Besides the bench's summary it prints, for
``adaptive`` (and ``adaptive_candidate``), its rounds by proposer: how many, and their mean acceptance
length (tokens committed a round, the verifier's own token included), so the drafter's share is read
apart from the lookup's;
``--methods ... adaptive_lookup_only`` adds ``adaptive`` with the lookup as its only proposer, and
``adaptive_wall_clock`` (sampling only) ``adaptive`` sampled without seeds, one policy across prompts;
``--candidate FOLDER`` adds ``adaptive_candidate``: ``adaptive`` with that drafter (a recipe run's
``export/drafter``) in place of the shipped one, interleaved with the rest, so a new drafter is judged
against the shipped one in one run.
``--temperature`` above 0 samples every method (prompt i seeded with seed + i; ``specdiff.evals.bench``).
Writes ``benchmarks/results/bench_smol_<suite>_<tokens>[_bf16][_t07][SUFFIX].csv`` (+ ``.runs.csv``, ``.rounds.csv``;
``_t07`` for temperature 0.7).
"""
import argparse
from pathlib import Path

import pandas as pd
import torch
from specdiff.evals import bench
from specdiff.evals.bench import BenchConfig, BenchMethod, run_bench
from specdiff.evals.methods import MethodRun, load_ar_drafter

from specdiff.pairs import Models, load_pair, pair_ar_drafter_folder

ROUNDS: list[dict] = []


def run_adaptive(ctx, prompt_ids, name, proposers=None, seeded=True, base=None):
    """``adaptive`` (the policy ``ctx.extra[name]``, over ``proposers`` of ``base``, default all of the
    bench's decoder) on one prompt; ``seeded=False`` samples without the prompt's seed."""
    from specdiff.controllers import Adaptive
    from specdiff.decoding import SpeculativeDecoder

    base = ctx.decoder if base is None else base
    controller = ctx.extra.setdefault(name, Adaptive())
    drafting = list(base.proposers.values()) if proposers is None else [base.proposers[p] for p in proposers]
    decoder = SpeculativeDecoder(drafting, base.verifier, controller=controller, tokenizer=base.tokenizer,
                                 nominal_clock=base.nominal_clock)
    sampling = {k: v for k, v in ctx.sampling().items() if seeded or k != "seed"}
    return decoder.generate(prompt_ids, max_new_tokens=ctx.max_new_tokens, **sampling)


def method_run(result):
    return MethodRun(result.token_ids, result.elapsed_s, result.num_rounds, result.proposed, result.accepted,
                     **result.time_split())


def record_rounds(ctx, method: str, result) -> None:
    """Keep ``result``'s rounds under ``method`` (warm-up runs, shorter, are not kept)."""
    if ctx.max_new_tokens == ARGS.max_new_tokens:
        ROUNDS.extend(dict(method=method, proposer=s.proposer.value, block_size=s.block_size,
                           steps=s.denoising_steps, accepted=s.accepted, committed=s.committed)
                      for s in result.stats)


def recording_adaptive(ctx, prompt_ids):
    """``adaptive`` as the bench runs it, its rounds kept."""
    result = run_adaptive(ctx, prompt_ids, "adaptive")
    record_rounds(ctx, "adaptive", result)
    return method_run(result)


def candidate_adaptive(ctx, prompt_ids):
    """``adaptive`` with the ``--candidate`` drafter (and the lookup) over the same verifier, its rounds kept."""
    from specdiff.pairs import smol_decoder

    if "candidate" not in ctx.extra:
        ctx.extra["candidate"] = smol_decoder(ctx.decoder.verifier, drafter=Path(ARGS.candidate))
    candidate = ctx.extra["candidate"]
    result = run_adaptive(ctx, prompt_ids, "adaptive_candidate", base=candidate)
    record_rounds(ctx, "adaptive_candidate", result)
    return method_run(result)


def adaptive_lookup_only(ctx, prompt_ids):
    """``adaptive`` over the same verifier with the n-gram lookup as its only proposer: what the drafter adds."""
    from specdiff.protocols import Proposer

    return method_run(run_adaptive(ctx, prompt_ids, "adaptive_lookup_only", proposers=[Proposer.NGRAM]))


def adaptive_wall_clock(ctx, prompt_ids):
    """Sampled ``adaptive`` without the prompt's seed: one policy over all prompts learning on the wall
    clock, as at greedy, where the seeded one starts afresh each prompt on the nominal clock; not
    repeatable, a diagnostic of what seeding costs the policy."""
    return method_run(run_adaptive(ctx, prompt_ids, "adaptive_wall_clock", seeded=False))


def rounds_by_proposer(rounds: pd.DataFrame) -> pd.DataFrame:
    table = rounds.groupby(["method", "proposer"]).agg(
        rounds=("committed", "size"), mean_acceptance_length=("committed", "mean"),
        mean_block=("block_size", "mean"), mean_accepted=("accepted", "mean"))
    table["round_share"] = table["rounds"] / table.groupby("method")["rounds"].transform("sum")
    return table.reset_index()


def main() -> None:
    torch.set_num_threads(1)
    bench.BENCH_METHODS["adaptive"] = BenchMethod(recording_adaptive)
    bench.BENCH_METHODS["adaptive_lookup_only"] = BenchMethod(adaptive_lookup_only)
    bench.BENCH_METHODS["adaptive_wall_clock"] = BenchMethod(adaptive_wall_clock)
    bench.BENCH_METHODS["adaptive_candidate"] = BenchMethod(candidate_adaptive)
    methods = list(ARGS.methods) + (["adaptive_candidate"] if ARGS.candidate else [])
    decoder = load_pair("smol", dtype=ARGS.dtype)
    ar_drafter = load_ar_drafter(str(pair_ar_drafter_folder(Models(pair="smol"))), decoder.verifier.model)
    suffix = "" if ARGS.dtype == "float32" else "_bf16"
    if ARGS.temperature > 0:
        suffix += "_t" + f"{ARGS.temperature:g}".replace(".", "")  # 0.7: _t07
    suffix += ARGS.suffix
    for suite in ARGS.suites:
        ROUNDS.clear()
        out = Path(f"benchmarks/results/bench_smol_{suite}_{ARGS.max_new_tokens}{suffix}.csv")
        config = BenchConfig(out=out, suite=suite, max_new_tokens=ARGS.max_new_tokens, limit=ARGS.limit, threads=1,
                             grid_prompts=ARGS.grid_prompts, methods=tuple(methods), grid_block_sizes=(4, 8, 16),
                             overwrite=True, temperature=ARGS.temperature, seed=ARGS.seed)
        result = run_bench(config, decoder, ar_drafter=ar_drafter, progress=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        result.summary.to_csv(out, index=False)
        result.runs.to_csv(out.with_name(out.stem + ".runs.csv"), index=False)
        cols = ["method", "proposer", "block_size", "denoising_steps", "tokens_per_s", "speedup_vs_ar",
                "mean_acceptance_length", "draft_share", "loop_share"]
        check = "sampled, not compared" if result.identical is None else f"greedy identical: {result.identical}"
        print(f"\n{suite} ({ARGS.dtype}, {ARGS.max_new_tokens} tokens, temperature {ARGS.temperature:g}) {check}")
        print(result.summary[cols].round(3).to_string(index=False))
        summary = result.summary.set_index("method")
        others = ("ar", "hf_prompt_lookup", "assisted_ar_drafter", "adaptive_lookup_only", "adaptive_wall_clock",
                  "adaptive")
        for mine in ("adaptive", "adaptive_candidate"):
            for other in others:
                if mine != other and mine in summary.index and other in summary.index:
                    ratio = summary.loc[mine, "tokens_per_s"] / summary.loc[other, "tokens_per_s"]
                    print(f"{mine} / {other}: {ratio:.3f}x")
        if ROUNDS:
            rounds = pd.DataFrame(ROUNDS)
            rounds.to_csv(out.with_name(out.stem + ".rounds.csv"), index=False)
            print("adaptive's rounds by proposer:")
            print(rounds_by_proposer(rounds).round(3).to_string(index=False), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("suites", nargs="+")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--grid-prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=BenchConfig.temperature)
    parser.add_argument("--seed", type=int, default=BenchConfig.seed)
    parser.add_argument("--suffix", default="", help="appended to the output files' names (e.g. _seed1)")
    parser.add_argument("--candidate", default=None, help="a drafter folder to bench as adaptive_candidate")
    parser.add_argument("--methods", nargs="+",
                        default=["ar", "hf_prompt_lookup", "assisted_ar_drafter", "adaptive"])
    ARGS = parser.parse_args()
    main()
