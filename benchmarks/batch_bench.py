"""Batched speculative decoding against one-by-one decoding and transformers' batched ``generate()``.

    python benchmarks/batch_bench.py --threads 1                    # pocket pair, code suite, 8 prompts, 128 tokens
    python benchmarks/batch_bench.py --prompts 8 --max-new-tokens 64 --repeats 2 --sizes 1 3 8

Methods, greedy, run interleaved per repetition (the order rotates every repetition, so machine
noise hits all alike), on the suite's first ``--prompts`` prompts (different lengths):

``specdiff B=b``      ``SpeculativeDecoder.generate_batch`` over the prompts in batches of b (the decoder's
                      batch policy, ``BatchAdaptive`` over the n-gram lookup and the drafter by steps,
                      learning across batches);
``plain B=b``         the same loop held to plain batched decoding (``BatchFixed(PLAIN)``): the fall-back;
``one by one``        ``SpeculativeDecoder.generate`` per prompt (its ``Adaptive``);
``hf B=b``            the verifier's own batched greedy ``generate()``, left padding, in batches of b.

Printed: total tokens/s (every row's tokens over the method's seconds), mean per-row tokens/s (a
row's tokens over its own elapsed time; for transformers, its batch's), the ratios the issue's bars
name, whether every specdiff row equals that prompt's own ``generate()`` alone token for token, and
the peak resident memory of one B=8 and one B=1 ``generate_batch`` (VmHWM, reset through
``/proc/self/clear_refs`` before each).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

from specdiff.controllers import PLAIN
from specdiff.controllers.batch import BatchFixed
from specdiff.threads import use_threads


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def cut_at_eos(tokens: list[int], eos: tuple[int, ...]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def hf_batched(verifier, prompts: list[list[int]], max_new_tokens: int) -> tuple[list[list[int]], list[float]]:
    """transformers' batched greedy ``generate()`` with left padding: each row's tokens (to its EOS)."""
    width = max(len(p) for p in prompts)
    pad = verifier.eos_token_ids[0] if verifier.eos_token_ids else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.no_grad():
        out = verifier.model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                      eos_token_id=list(verifier.eos_token_ids) or None, pad_token_id=pad)
    elapsed = time.perf_counter() - start
    rows = [cut_at_eos(row[width:].tolist(), verifier.eos_token_ids) for row in out]
    return rows, [elapsed] * len(rows)


def reference(verifier, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The prompt's own greedy ``generate()``, alone: what every specdiff row must equal."""
    return hf_batched(verifier, [prompt], max_new_tokens)[0][0]


def timed_passes(methods: dict, expected: list[list[int]], passes: int,
                 unchecked: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, int]]:
    """Run each method (a callable returning its rows' tokens) once untimed, where a policy learns its
    costs and the rows must equal ``expected`` (``unchecked`` methods skip that run), then ``passes``
    passes in an order rotating by one each pass: seconds and tokens per method."""
    names = list(methods)
    for name in names:
        if name not in unchecked and methods[name]() != expected:
            raise SystemExit(f"{name}: a row differs from its prompt's own generate()")
    seconds, tokens = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    for turn in range(passes):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            start = time.perf_counter()
            rows = methods[name]()
            seconds[name] += time.perf_counter() - start
            tokens[name] += sum(len(r) for r in rows)
    return seconds, tokens


def rate_table(seconds: dict[str, float], tokens: dict[str, int], base: str) -> str:
    """``timed_passes``'s figures as a markdown table: total tokens/s and the ratio to method ``base``."""
    rates = {name: tokens[name] / seconds[name] for name in seconds}
    lines = ["| method | total tok/s | vs transformers' batched generate() |", "|---|---|---|"]
    lines += [f"| {name} | {rate:.1f} | {rate / rates[base]:.3f} |" for name, rate in rates.items()]
    return "\n".join(lines)


def peak_rss_mib(run) -> float:
    """Peak resident memory (MiB) while ``run()`` runs: VmHWM after resetting it (Linux)."""
    with contextlib.suppress(OSError):  # without a reset the figure is the process's peak so far
        Path("/proc/self/clear_refs").write_text("5")
    run()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="code")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 8])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from specdiff.evals.suites import load_suite

    from specdiff.loaders import load_pocket

    decoder = load_pocket()
    verifier = decoder.verifier
    texts = [p.decoder_input for p in load_suite(args.suite).prompts[: args.prompts]]
    prompts = [decoder.encode_prompt(t)[0].tolist() for t in texts]
    new = args.max_new_tokens
    refs = [reference(verifier, p, new) for p in prompts]
    print(f"{len(prompts)} prompts of {sorted(len(p) for p in prompts)} tokens, {new} new tokens, "
          f"{args.threads} thread(s), {args.repeats} repetitions")

    def specdiff_run(size: int, plain: bool = False):
        def run():
            rows, elapsed = [], []
            for batch in chunks(prompts, size):
                results = decoder.generate_batch(batch, max_new_tokens=new,
                                                 policy=BatchFixed(PLAIN) if plain else None)
                rows += [r.token_ids for r in results]
                elapsed += [r.elapsed_s for r in results]
            return rows, elapsed
        return run

    def one_by_one():
        results = [decoder.generate(p, max_new_tokens=new) for p in prompts]
        return [r.token_ids for r in results], [r.elapsed_s for r in results]

    def hf_run(size: int):
        def run():
            rows, elapsed = [], []
            for batch in chunks(prompts, size):
                r, e = hf_batched(verifier, batch, new)
                rows += r
                elapsed += e
            return rows, elapsed
        return run

    methods = {"one by one": one_by_one}
    for b in args.sizes:
        methods[f"specdiff B={b}"] = specdiff_run(b)
        methods[f"plain B={b}"] = specdiff_run(b, plain=True)
        methods[f"hf B={b}"] = hf_run(b)
    seconds = dict.fromkeys(methods, 0.0)
    tokens = dict.fromkeys(methods, 0)
    per_row = {name: [] for name in methods}
    identical = {name: True for name in methods}
    names = list(methods)
    decoder.generate_batch(prompts[:2], max_new_tokens=8)  # warm-up: first calls pay for lazy setup
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            rows, elapsed = methods[name]()
            seconds[name] += time.perf_counter() - start
            tokens[name] += sum(len(r) for r in rows)
            per_row[name] += [len(r) / e for r, e in zip(rows, elapsed, strict=True) if e > 0]
            identical[name] &= rows == refs
    rate = {name: tokens[name] / seconds[name] for name in names}
    print("\n| method | total tok/s | mean per-row tok/s | identical to generate() alone |")
    print("|---|---|---|---|")
    for name in names:
        print(f"| {name} | {rate[name]:.1f} | {sum(per_row[name]) / len(per_row[name]):.1f} | "
              f"{'yes' if identical[name] else 'no'} |")
    print("\n| ratio | value | bar |")
    print("|---|---|---|")
    if 8 in args.sizes:
        print(f"| specdiff B=8 / one by one | {rate['specdiff B=8'] / rate['one by one']:.2f} | >= 1.5 |")
    for b in args.sizes:
        print(f"| specdiff B={b} / hf B={b} | {rate[f'specdiff B={b}'] / rate[f'hf B={b}']:.2f} | "
              f"{'>= 1.2' if b == 8 else '>= 0.95'} |")
        print(f"| plain B={b} / hf B={b} | {rate[f'plain B={b}'] / rate[f'hf B={b}']:.2f} | (fall-back) |")
    big, small = max(args.sizes), min(args.sizes)
    rss_big = peak_rss_mib(lambda: decoder.generate_batch(prompts[:big], max_new_tokens=new))
    rss_small = peak_rss_mib(lambda: decoder.generate_batch(prompts[:small], max_new_tokens=new))
    print(f"\npeak RSS: B={big} {rss_big:.0f} MiB, B={small} {rss_small:.0f} MiB")


if __name__ == "__main__":
    main()
