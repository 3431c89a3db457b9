"""The next-token canvas: how a drafter trained by specdiff's recipe (``specdiff drafter train``) drafts
when its config records ``specdiff_next_token_canvas`` (``DiffusionGemmaDrafter.next_token_canvas``).

Canvas input i holds
a guess at draft token i, with position 0 fixed to the encoder's first token before the first pass,
and the decoder's output i predicts token i + 1, the convention of the causal encoder whose weights
the decoder shares. Each further denoising step is then a Jacobi step: the block's outputs go back
in one position on. Trained the DiffusionGemma way (output i denoises position i) on SmolLM2's
continuations, the 2-layer hidden-64 smol drafter got the second token right in 7% of the held-out
chat drafts whose first token was right; trained with a next-token canvas, in 68% (prefix accuracy
at position 1: 0.03 of 0.45 against 0.25 of 0.37; docs/drafter_recipe.md). DiffusionGemma's own
checkpoints record no such key and draft as published.
"""

from __future__ import annotations

from typing import Any

import torch
from specdiff.drafts.diffusion_gemma import ProposalMode

from specdiff.errors import SpecdiffError
from specdiff.protocols import Choice, Draft
from specdiff.sampling import sample_categorical


def first_token(session: Any, generator: torch.Generator) -> Draft:
    """The draft's first token from the encoder's logits ``next_logits`` ``[B, 1, V]``: their argmax
    in ARGMAX mode, a draw in RESAMPLE mode, returned with the distribution it was drawn from."""
    scores = session.next_logits
    if session.mode is ProposalMode.ARGMAX:
        return Draft(tokens=scores.argmax(dim=-1), probs=None, scores=scores)
    probs = torch.softmax(scores, dim=-1)
    return Draft(tokens=sample_categorical(probs, generator), probs=probs, scores=scores)


def next_token_draft(session: Any, step: Any, batch: int, choice: Choice, generator: torch.Generator) -> Draft:
    """Jacobi iteration on a next-token canvas ``[B, C]``: input position i holds a guess at draft token
    i (position 0 the encoder's first token, fixed), output position i predicts token i + 1.

    Each step feeds the block's argmax outputs back one position to the right, so every position is
    predicted from better guesses at the ones before it (the decoder is bidirectional, so a
    position also sees the guesses after it, and a canvas may cycle); a step that changes none of
    the block's inputs has reached the fixed point and ends the loop. The proposal is token 0 and the
    last step's outputs 0..K-2 (drawn from their softmax in RESAMPLE mode: given the canvas they were
    computed from they are independent, so row i is token i's exact distribution given the earlier
    draft tokens). ``step`` and the session's state are the draft session's (``DiffusionDraftSession``).
    """
    if choice.recycle_canvas:
        raise SpecdiffError("a next-token canvas is rebuilt every round: choose recycle_canvas=False")
    drafter = session.drafter
    block_size = choice.block_size
    first = first_token(session, generator)
    canvas, side = session._starting_canvas(batch, 0, False, generator)
    canvas[:, 0] = first.tokens[:, 0]
    steps_used = 0
    while True:
        hidden = step(canvas, None, steps_used == 0)  # [B, C, H]
        steps_used += 1
        logits = drafter.logits(hidden[:, : block_size - 1])  # [B, K-1, V]: predicts tokens 1..K-1
        guesses = logits.argmax(dim=-1)
        if steps_used == choice.denoising_steps or torch.equal(guesses, canvas[:, 1:block_size]):
            break
        canvas[:, 1:block_size] = guesses  # the pass that read the canvas is done: update it in place
    scores = torch.cat([first.scores, logits], dim=1)  # [B, K, V]
    if session.mode is ProposalMode.ARGMAX:
        tokens, probs = torch.cat([first.tokens, guesses], dim=1), None
    else:
        rest = torch.softmax(logits, dim=-1)
        tokens = torch.cat([first.tokens, sample_categorical(rest, generator)], dim=1)
        probs = torch.cat([first.probs, rest], dim=1)
    session.last_canvas = canvas
    return Draft(tokens=tokens, probs=probs, denoising_steps_used=steps_used, scores=scores, side=side)
