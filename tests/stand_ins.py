"""Stand-in draft engines for tests: an oracle that is always right and one that is always wrong.

They implement the same ``DraftEngine`` interface as the real drafter and know the verifier's
greedy continuation, so they drive the decode loop down its extreme paths (every draft token
accepted: the bonus token; none accepted: the recovered token).
"""

from __future__ import annotations

import torch

from specdiff.protocols import Choice, Draft, Proposer


class OracleDrafter:
    """Proposes the verifier's own greedy continuation (``offset`` added to each id when wrong)."""

    kind = Proposer.DIFFUSION  # it plays the diffusion drafter: rounds choose block size and steps

    def __init__(self, continuation: list[int], vocab_size: int, canvas_length: int, offset: int = 0):
        self.continuation = continuation
        self.vocab_size = vocab_size
        self.canvas_length = self.max_block_size = canvas_length
        self.offset = offset
        self.tokenizer = None

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> _OracleSession:
        return _OracleSession(self)


class _OracleSession:
    def __init__(self, drafter: OracleDrafter):
        self.drafter = drafter
        self.seen = 0  # committed tokens after the prompt

    def propose(self, new_tokens: torch.Tensor, choice: Choice, generator: torch.Generator) -> Draft:
        d, block_size = self.drafter, choice.block_size
        self.seen += new_tokens.shape[1]
        ahead = d.continuation[self.seen: self.seen + block_size]
        ahead = ahead + [3] * (block_size - len(ahead))  # past the known continuation: anything
        tokens = torch.tensor([[(t + d.offset) % d.vocab_size for t in ahead]])
        probs = torch.nn.functional.one_hot(tokens, d.vocab_size).float()
        return Draft(tokens=tokens, probs=probs, denoising_steps_used=1)
