"""The verifier over a batch of rows: one forward scores every row's block, each row keeps its own prefix.

Rows are independent sequences of different lengths in one ``RowBuffers`` cache (``specdiff.row_buffers``:
each row's states stay where they were written, a rollback only shortens a row). As in the single-row session, each
row holds back its newest committed token (the *pending* token): a round scores
``[pending] + draft`` for every row, ``[B, 1 + K]``, where a row with a shorter draft fills the rest
of the block with any token (its unused slots come after its real ones, so no real query sees them),
and ``keep`` rolls each row back to its own accepted length.

Rows join between rounds (``add_rows``: their prompts are prefilled in a batch of their own, then
stacked after the running rows) and leave when they finish (``remove_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from specdiff.row_buffers import RowBuffers


class BatchedVerifierSession:
    """A ``CausalLMVerifier``'s state for a batch of rows, each with its own committed tokens."""

    def __init__(self, verifier: Any, prompts: Sequence[torch.Tensor] = ()) -> None:
        self.model = verifier.model
        self.device = verifier.device
        self.config = self.model.config.get_text_config(decoder=True)
        self.pad_id = 0  # fills unused block slots; never seen by a real token
        self.attention = self.model.config._attn_implementation
        self.rows = self.new_rows()
        if prompts:
            self.add_rows(prompts)

    @property
    def batch_size(self) -> int:
        return self.rows.batch_size

    def new_rows(self, batch: int = 0) -> RowBuffers:
        return RowBuffers(self.config, self.device, batch=batch, attention=self.attention)

    def _forward(self, rows: RowBuffers, tokens: torch.Tensor, valid: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        inputs = rows.block_inputs(tokens.shape[1], valid)
        out = self.model(input_ids=tokens, cache=rows, use_cache=True, **inputs, **kwargs)
        return out.logits

    @torch.no_grad()
    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        """Append rows after the current ones, each from a prompt ``[T]`` (T >= 1): all but its last
        token go into the cache, the last becomes the row's pending token (the caller keeps it)."""
        assert all(p.dim() == 1 and p.shape[0] >= 1 for p in prompts), "each prompt must be [T] with T >= 1"
        fresh = self.new_rows(len(prompts))
        widths = torch.tensor([p.shape[0] - 1 for p in prompts], dtype=torch.long)
        width = int(widths.max())
        if width > 0:
            block = torch.full((len(prompts), width), self.pad_id, dtype=torch.long, device=self.device)
            for row, prompt in enumerate(prompts):
                block[row, : prompt.shape[0] - 1] = prompt[:-1].to(self.device)
            # Only the cache is wanted: one position of logits, not the LM head over every prompt token.
            self._forward(fresh, block, widths, logits_to_keep=1)
            fresh.keep(widths)
        self.rows.extend(fresh)

    def remove_rows(self, keep: Sequence[int]) -> None:
        """Keep only the rows at indices ``keep``, in that order."""
        self.rows.select(list(keep))

    @torch.no_grad()
    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """Score ``tokens`` ``[B, 1 + K]`` (each row's pending token, its draft, then any filler).

        Returns:
            ``[B, 1 + K, V]`` float32 logits; ``[i, j]`` is row i's distribution after ``tokens[i, :j + 1]``.
        """
        assert tokens.shape[0] == self.batch_size, f"tokens must be [B={self.batch_size}, 1 + K]"
        return self._forward(self.rows, tokens.to(self.device)).float()

    def keep(self, num_scored_kept: torch.Tensor) -> None:
        """Row i keeps the first ``num_scored_kept[i]`` of the slots the last ``score`` appended ``[B]``."""
        self.rows.keep(num_scored_kept)
