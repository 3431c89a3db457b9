"""The batch policy against fixed lookup blocks and transformers' batched ``generate()``, timed side by side.

    OMP_NUM_THREADS=1 python benchmarks/batch_policies.py --threads 1            # about 3 minutes

``batch_replay.py`` ranks policies on a cost model; this times them: the code suite's first
``--batch-size`` prompts decoded greedily as one batch by ``BatchAdaptive`` (one instance, warm after
an untimed first pass, as a decoder's own policy is), by ``BatchFixed(ngram, K)`` for each
``--blocks`` K, and by transformers' batched greedy ``generate()`` with left padding; ``--passes``
passes, the order rotating each pass. Printed: total tokens/s and the ratio to transformers. Every
specdiff row is checked against the verifier's own ``generate()`` of its prompt alone.
"""

from __future__ import annotations

import argparse

from specdiff.threads import use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="code")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from batch_bench import hf_batched, rate_table, reference, timed_passes
    from specdiff.evals.suites import load_suite

    from specdiff.args import GenerateArgs
    from specdiff.batch import generate_batch
    from specdiff.controllers.batch import BatchAdaptive, BatchFixed
    from specdiff.loaders import load_pocket
    from specdiff.protocols import Choice

    decoder = load_pocket()
    texts = [p.decoder_input for p in load_suite(args.suite).prompts[: args.batch_size]]
    prompts = [decoder.encode_prompt(t)[0].tolist() for t in texts]
    expected = [reference(decoder.verifier, p, args.max_new_tokens) for p in prompts]
    call = GenerateArgs(max_new_tokens=args.max_new_tokens)

    def specdiff_with(policy):
        return lambda: [r.token_ids for r in generate_batch(decoder, prompts, call, policy)]

    methods = {"transformers": lambda: hf_batched(decoder.verifier, prompts, args.max_new_tokens)[0],
               "BatchAdaptive": specdiff_with(BatchAdaptive())}
    methods |= {f"BatchFixed(ngram, K={k})": specdiff_with(BatchFixed(Choice.ngram(k))) for k in args.blocks}
    seconds, tokens = timed_passes(methods, expected, args.passes, unchecked=("transformers",))
    print(f"{args.suite} suite, B = {args.batch_size}, {args.max_new_tokens} new tokens, greedy, "
          f"{args.passes} interleaved passes, {args.threads} thread(s)\n")
    print(rate_table(seconds, tokens, "transformers"))


if __name__ == "__main__":
    main()
