"""The verifier's batch cache, in place (``RowBuffers``) against right-aligned (``RaggedCache``), timed side by side.

    OMP_NUM_THREADS=1 python benchmarks/cache_ab.py --threads 1            # about 6 minutes

The code suite's first ``--batch-size`` prompts decoded greedily as one batch, each policy once on
each cache: ``BatchAdaptive`` (one instance per cache, warm after the untimed first pass, as a
decoder's own policy is), ``BatchFixed(ngram, K=3)`` and plain batched decoding; beside them
transformers' batched greedy ``generate()`` with left padding. ``--passes`` passes, the order rotating
each pass; every specdiff row is checked against the verifier's own ``generate()`` of its prompt alone.
The right-aligned cache is the one the verifier used before ``RowBuffers`` (the diffusion drafter's
encoder cache still is one); it runs here through a session subclass that keeps transformers' own
masks.
"""

from __future__ import annotations

import argparse

from specdiff.threads import use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="code")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from batch_bench import hf_batched, rate_table, reference, timed_passes
    from specdiff.evals.suites import load_suite
    from specdiff.verifiers.batched import BatchedVerifierSession

    from specdiff.args import GenerateArgs
    from specdiff.batch import generate_batch
    from specdiff.controllers import PLAIN
    from specdiff.controllers.batch import BatchAdaptive, BatchFixed
    from specdiff.loaders import load_pocket
    from specdiff.protocols import Choice
    from specdiff.ragged_cache import RaggedCache

    class RightAligned(BatchedVerifierSession):
        def new_rows(self, batch: int = 0) -> RaggedCache:
            return RaggedCache(self.config, self.device, batch=batch)

        def _forward(self, rows, tokens, valid=None, **kwargs):
            inputs = rows.block_inputs(tokens.shape[1])  # a 2D mask: transformers builds the 4D ones
            return self.model(input_ids=tokens, cache=rows.cache, use_cache=True, **inputs, **kwargs).logits

    decoder = load_pocket()
    verifier = decoder.verifier
    texts = [p.decoder_input for p in load_suite(args.suite).prompts[: args.batch_size]]
    prompts = [decoder.encode_prompt(t)[0].tolist() for t in texts]
    expected = [reference(verifier, p, args.max_new_tokens) for p in prompts]
    call = GenerateArgs(max_new_tokens=args.max_new_tokens)

    def specdiff_with(policy, right_aligned: bool):
        def run():
            if right_aligned:
                verifier.batch_session = lambda: RightAligned(verifier)  # this instance only
            try:
                return [r.token_ids for r in generate_batch(decoder, prompts, call, policy)]
            finally:
                vars(verifier).pop("batch_session", None)
        return run

    methods = {"transformers": lambda: hf_batched(verifier, prompts, args.max_new_tokens)[0]}
    for cache, right in (("in place", False), ("right-aligned", True)):
        methods[f"BatchAdaptive, {cache}"] = specdiff_with(BatchAdaptive(), right)
        methods[f"BatchFixed(ngram, K=3), {cache}"] = specdiff_with(BatchFixed(Choice.ngram(3)), right)
        methods[f"plain, {cache}"] = specdiff_with(BatchFixed(PLAIN), right)
    seconds, tokens = timed_passes(methods, expected, args.passes, unchecked=("transformers",))
    print(f"{args.suite} suite, B = {args.batch_size}, {args.max_new_tokens} new tokens, greedy, "
          f"{args.passes} interleaved passes, {args.threads} thread(s)\n")
    print(rate_table(seconds, tokens, "transformers"))


if __name__ == "__main__":
    main()
