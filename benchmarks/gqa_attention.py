"""Grouped-query attention without the KV copy (``GQA_SDPA``) against transformers' ``sdpa``, side by side.

    OMP_NUM_THREADS=1 python benchmarks/gqa_attention.py            # about 4 minutes; --smol adds SmolLM2

Two tables, every pair of figures measured interleaved in one process:

1. one verifier forward (median of ``--trials``): the pocket verifier over B = 8 rows of 220 cached
   slots, blocks of 1, 5 and 9 tokens; with ``--smol``, SmolLM2 (float32, one row, 300 slots)
   at 1, 9 and 17 tokens. Outputs are checked bit-identical.
2. the code suite's first 8 prompts as one batch, 128 new tokens, greedy: ``BatchFixed(ngram, 4)``
   and ``BatchAdaptive`` under each attention, and transformers' batched ``generate()`` (stock
   ``sdpa``, left padding), over ``--passes`` rotating passes; every row checked against its
   prompt's own ``generate()``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from specdiff.threads import use_threads


def forward_table(verifier, prompts: list[torch.Tensor], widths: tuple[int, ...], trials: int) -> list[str]:
    """Rows ``| model | B | block | sdpa ms | GQA_SDPA ms | ratio |``: median forward time per attention."""
    from specdiff.verifiers.attention import GQA_SDPA
    from specdiff.verifiers.batched import BatchedVerifierSession

    model = verifier.model
    session = BatchedVerifierSession(verifier, prompts)
    gen = torch.Generator().manual_seed(0)
    lines = []
    for width in widths:
        block = torch.randint(3, verifier.vocab_size, (len(prompts), width), generator=gen)
        times: dict[str, list[float]] = {"sdpa": [], GQA_SDPA: []}
        outputs = {}
        for _ in range(trials):
            for impl, seen in times.items():
                model.set_attn_implementation(impl)
                start = time.perf_counter()
                outputs[impl] = session.score(block)
                seen.append(time.perf_counter() - start)
                session.keep(torch.zeros(len(prompts), dtype=torch.long))  # back to the same cache
        if not torch.equal(outputs["sdpa"], outputs[GQA_SDPA]):
            raise SystemExit(f"block {width}: the two attentions disagree")
        old, new = (statistics.median(times[k]) * 1000 for k in ("sdpa", GQA_SDPA))
        lines.append(f"| {type(model).__name__} | {len(prompts)} | {width} | {old:.2f} | {new:.2f} | {old / new:.3f} |")
    model.set_attn_implementation(GQA_SDPA)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--smol", action="store_true", help="add SmolLM2-135M's forward (needs the smol wheel)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from batch_bench import hf_batched, rate_table, reference, timed_passes
    from specdiff.evals.suites import load_suite
    from specdiff.verifiers.attention import GQA_SDPA

    from specdiff.args import GenerateArgs
    from specdiff.batch import generate_batch
    from specdiff.controllers.batch import BatchAdaptive, BatchFixed
    from specdiff.loaders import load_pocket
    from specdiff.protocols import Choice

    decoder = load_pocket()
    model = decoder.verifier.model
    texts = [p.decoder_input for p in load_suite("code").prompts[:8]]
    prompts = [decoder.encode_prompt(t)[0] for t in texts]
    print(f"one forward, median of {args.trials} interleaved, {args.threads} thread(s)\n")
    print("| model | B | block | sdpa ms | GQA_SDPA ms | sdpa / GQA_SDPA |")
    print("|---|---|---|---|---|---|")
    lines = forward_table(decoder.verifier, [torch.cat([p] * 10)[:221] for p in prompts], (1, 5, 9), args.trials)
    if args.smol:
        from specdiff.verifiers.smol import load_smol_verifier

        smol = load_smol_verifier("float32")
        row = torch.randint(3, smol.vocab_size, (301,), generator=torch.Generator().manual_seed(1))
        lines += forward_table(smol, [row], (1, 9, 17), max(args.trials // 4, 5))
    print("\n".join(lines), flush=True)

    ids = [p.tolist() for p in prompts]
    model.set_attn_implementation("sdpa")
    expected = [reference(decoder.verifier, p, 128) for p in ids]
    call = GenerateArgs(max_new_tokens=128)

    def under(impl, run):
        def timed():
            model.set_attn_implementation(impl)
            return run()
        return timed

    def batch(policy):
        return lambda: [r.token_ids for r in generate_batch(decoder, ids, call, policy)]

    methods = {"transformers (sdpa)": under("sdpa", lambda: hf_batched(decoder.verifier, ids, 128)[0])}
    for impl in ("sdpa", GQA_SDPA):
        methods[f"BatchFixed(ngram, 4), {impl}"] = under(impl, batch(BatchFixed(Choice.ngram(4))))
        methods[f"BatchAdaptive, {impl}"] = under(impl, batch(BatchAdaptive()))
    seconds, tokens = timed_passes(methods, expected, args.passes)
    print(f"\ncode suite, B = 8, 128 new tokens, greedy, {args.passes} interleaved passes\n")
    print(rate_table(seconds, tokens, "transformers (sdpa)"))
    model.set_attn_implementation(GQA_SDPA)


if __name__ == "__main__":
    main()
