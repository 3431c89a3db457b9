"""Where in an answer a drafter's proposals are right: offline accuracy by cut, beside the live rounds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/drafter_positions.py [--suites chat code] [--limit 8]
        [--drafter FOLDER] [--block 8] [--every 8]

The recipe's evaluation (``specdiff.training.drafter_eval``) cut each held-out continuation at a few
fixed points (0, 16, 48 tokens in, before this script moved it to every 16th); a decode proposes at
every round start. This asks whether the two
agree, on a bench suite's own prompts:

1. the verifier's float32 greedy continuation of each prompt (``--max-new-tokens``, 128);
2. offline: the drafter (1 denoising step, as the bench's rounds mostly run) and the context lookup
   propose a ``--block``-token draft at every ``--every``-th cut of each continuation; the expected
   accepted tokens (sum of prefix accuracies) by band of cuts: the answer's start (cut 0), the
   recipe's own cuts (0, 16, 48) and all cuts;
3. live: the same prompts decoded with the drafter proposing every round (``Fixed`` block ``--block``,
   1 step): draft tokens accepted a round, and a check that the live output is the continuation.

If (2)'s all-cuts figure matches (3), the live path drafts as the offline one does and the gap between
the recipe's card and the bench is where its cuts fall; if (3) is lower, the live path loses something.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def continuation(verifier, prompt_ids: list[int], max_new_tokens: int) -> torch.Tensor:
    """The verifier's own greedy ``generate()`` after ``prompt_ids``: ``[N]``."""
    model = verifier.model
    ids = torch.tensor([prompt_ids])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=model.generation_config.pad_token_id)
    return out[0, ids.shape[1]:]


def offline_rows(propose, name: str, suite: str, prompt: torch.Tensor, target: torch.Tensor, every: int,
                 block: int) -> list[dict]:
    """One row per cut: the draft tokens a greedy verification would accept from ``propose``'s block."""
    from specdiff.training.drafter_eval import match_flags

    rows = []
    for cut in range(0, target.numel() - 1, every):
        context = torch.cat([prompt, target[:cut]])
        _, prefix = match_flags(propose(context, block), target[cut:cut + block], block)
        rows.append(dict(suite=suite, proposer=name, cut=cut, accepted=sum(p for p in prefix if p == p)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suites", nargs="+", default=["chat", "code"])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--drafter", type=Path, default=None, help="a drafter folder (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/drafter_positions.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    import pandas as pd
    from specdiff.evals.suites import load_suite
    from specdiff.verifiers.smol import load_smol_verifier

    from specdiff.controllers import Fixed
    from specdiff.pairs import smol_decoder
    from specdiff.prompts import prompt_token_ids
    from specdiff.protocols import Proposer
    from specdiff.training import drafter_eval as ev

    verifier = load_smol_verifier("float32")
    decoder = smol_decoder(verifier, controller=Fixed(args.block, 1), drafter=args.drafter or True)
    drafter = decoder.proposers[Proposer.DIFFUSION]
    proposers = {"drafter_1step": ev.diffusion_proposer(drafter, steps=1),
                 "context_lookup": ev.lookup_proposer(drafter.context_seed)}
    rows, live = [], []
    for suite_name in args.suites:
        for prompt in load_suite(suite_name).prompts[: args.limit]:
            ids = prompt_token_ids(prompt.decoder_input, verifier.tokenizer)
            target = continuation(verifier, ids, args.max_new_tokens)
            for name, propose in proposers.items():
                rows += offline_rows(propose, name, suite_name, torch.tensor(ids), target, args.every, args.block)
            result = decoder.generate(ids, max_new_tokens=args.max_new_tokens)
            same = result.token_ids == target.tolist()
            live += [dict(suite=suite_name, prompt=prompt.id, start=sum(s.committed for s in result.stats[:i]),
                          accepted=s.accepted, identical=same) for i, s in enumerate(result.stats)]
            print(f"{suite_name} {prompt.id}: {len(result.stats)} live rounds, identical={same}", flush=True)
    table = pd.DataFrame(rows)
    rounds = pd.DataFrame(live)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    rounds.to_csv(args.out.with_suffix(".live.csv"), index=False)

    print(f"\ndraft tokens accepted from a {args.block}-token block (greedy), mean over cases")
    print("| suite | proposer | cut 0 | recipe cuts (0, 16, 48) | cuts 8+ | all cuts | live rounds (drafter) |")
    print("|---|---|---|---|---|---|---|")
    for (suite, name), part in table.groupby(["suite", "proposer"], sort=False):
        band = {"0": part[part.cut == 0], "recipe": part[part.cut.isin([0, 16, 48])],
                "8+": part[part.cut >= 8], "all": part}
        live_part = rounds[rounds.suite == suite]
        live_text = f"{live_part.accepted.mean():.2f} ({len(live_part)} rounds)" if name == "drafter_1step" else ""
        cells = " | ".join(f"{b.accepted.mean():.2f}" for b in band.values())
        print(f"| {suite} | {name} | {cells} | {live_text} |")
    late = rounds[rounds.start >= 8]
    print(f"\nlive rounds starting 8+ tokens in: {late.accepted.mean():.2f} accepted ({len(late)} rounds); "
          f"identical outputs: {int(rounds.groupby('prompt').identical.first().sum())}/{rounds.prompt.nunique()}")
    print(f"cuts every {args.every} tokens; rows in {args.out} and {args.out.with_suffix('.live.csv')}")


if __name__ == "__main__":
    main()
