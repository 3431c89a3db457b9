"""A seeded call's policy on the default nominal clock against the pair's own, timed side by side.

    OMP_NUM_THREADS=1 python benchmarks/nominal_clock.py                 # smol pair, chat and code, ~8 minutes

A seeded ``generate`` feeds its policy nominal seconds (``NominalClock``) so that its choices, and
so its sampled output, repeat; a clock that prices blocks far cheaper than the hardware does makes
that policy draft blocks that do not pay. Per suite, the first ``--limit`` prompts sampled at
``--temperature`` (prompt i seeded with i) by the verifier's own ``generate()`` (``ar``), and by the
pair's decoder on the default clock and on the pair's own, interleaved in a rotating order: tokens/s
and the ratio to ``ar``.
"""

from __future__ import annotations

import argparse
import time

from specdiff.threads import use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", default=["chat", "code"])
    parser.add_argument("--pair", default="smol")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    use_threads(args.threads)
    from specdiff.evals.running import verifier_generate
    from specdiff.evals.suites import load_suite

    from specdiff.controllers.cost import nominal_seconds
    from specdiff.pairs import load_pair

    decoder = load_pair(args.pair)
    own = decoder.nominal_clock

    def ar(prompt, seed: int) -> int:
        ids = decoder.encode_prompt(prompt)
        return len(verifier_generate(decoder.verifier, ids, args.max_new_tokens, args.temperature, 0, 1.0, seed))

    def seeded(clock):
        def run(prompt, seed: int) -> int:
            decoder.nominal_clock = clock
            return len(decoder.generate(prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                        seed=seed).token_ids)
        return run

    methods = {"ar": ar, "seeded, default clock": seeded(nominal_seconds),
               f"seeded, the {args.pair} clock": seeded(own)}
    names = list(methods)
    print(f"{args.pair} pair, {args.limit} prompts a suite, {args.max_new_tokens} new tokens, temperature "
          f"{args.temperature:g}, {args.threads} thread(s); the {args.pair} clock: {own}\n")
    print("| suite | " + " | ".join(f"{n} tok/s" for n in names) + " | default / ar | own / ar |")
    print("|---|" + "---|" * (len(names) + 2))
    for suite in args.suites:
        prompts = [p.decoder_input for p in load_suite(suite).prompts[: args.limit]]
        seconds, tokens = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
        for i, prompt in enumerate(prompts):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                start = time.perf_counter()
                tokens[name] += methods[name](prompt, i)
                seconds[name] += time.perf_counter() - start
        rates = [tokens[n] / seconds[n] for n in names]
        print(f"| {suite} | " + " | ".join(f"{r:.2f}" for r in rates) + f" | {rates[1] / rates[0]:.3f} | "
              f"{rates[2] / rates[0]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
