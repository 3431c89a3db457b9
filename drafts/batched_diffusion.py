"""The DiffusionGemma drafter over a batch of rows: one denoising loop for every row's canvas.

The single-row session's pieces are reused as they are (``DiffusionDraftSession``: the starting
canvas, the context lookup's seed and its side report, the denoising loop ``_denoise``); what
changes is the encoder cache. Rows commit different numbers of tokens each round, so the cache is a
``RaggedCache`` (``specdiff.ragged_cache``: right-aligned rows, left padding, a 2D mask, per-row
positions), and a round's committed tokens are appended as a ragged block ``[B, max n_i]`` and each
row keeps its own ``n_i`` of it, which re-aligns the rows.

That append is its own encoder call, ahead of the round's first denoising step, where the single-row
session folds both into one call: between the encoder's append and the decoder's read the rows must
be re-aligned (the gather and ``crop(0)`` of ``RaggedCache.keep``), or the sliding layers would show
the canvas filler slots instead of a row's last real tokens. Every canvas then reads the cache through
the 2D mask with its own positions, which continue after its row's encoded tokens.

Every round runs the model (at least one denoising step): rounds that draft without a model are the
n-gram lookup's (``specdiff.drafts.ngram``), a proposer of its own. Canvas recycling needs one shift
for the whole batch, which ragged commits do not give: it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from specdiff.drafts.diffusion_gemma import DiffusionDraftSession, DiffusionGemmaDrafter, ProposalMode, entropy_sampler

from specdiff.batch_drafts import RaggedDraft
from specdiff.errors import SpecdiffError
from specdiff.protocols import Choice
from specdiff.ragged_cache import RaggedCache


class BatchedDiffusionSession(DiffusionDraftSession):
    """Drafting state for a batch of rows: a ragged encoder cache and each row's committed tokens."""

    def __init__(self, drafter: DiffusionGemmaDrafter, mode: ProposalMode = ProposalMode.ARGMAX) -> None:
        # The parent's constructor builds a single-row cache; the attributes its methods read are set here.
        assert mode is not ProposalMode.AUTO, "a session proposes in a concrete mode"
        self.drafter, self.mode, self.device = drafter, mode, drafter.device
        self.config = drafter.model.config.get_text_config(decoder=True)
        self.rows = RaggedCache(self.config, self.device)
        self.unencoded: list[torch.Tensor] = []  # per row [n_i]: committed, not yet in the cache
        self.history: list[torch.Tensor] = []  # per row [T_i]: every committed token, for the lookup
        self.last_canvas: torch.Tensor | None = None
        self.next_logits: torch.Tensor | None = None  # [B, 1, V]: the encoder's, at each row's last token
        self.sampler = entropy_sampler(drafter)

    @property
    def batch_size(self) -> int:
        return len(self.history)

    def add_rows(self, prompts: Sequence[torch.Tensor]) -> None:
        """Append rows with an empty cache; their prompts are encoded by the next round."""
        prompts = [p.to(self.device) for p in prompts]
        self.rows.extend(RaggedCache(self.config, self.device, batch=len(prompts)))
        self.unencoded += prompts
        self.history += prompts
        if self.next_logits is not None:
            self.next_logits = torch.cat([self.next_logits, self.next_logits.new_zeros(
                len(prompts), *self.next_logits.shape[1:])])

    def remove_rows(self, keep: Sequence[int]) -> None:
        keep = list(keep)
        self.rows.select(keep)
        self.unencoded = [self.unencoded[i] for i in keep]
        self.history = [self.history[i] for i in keep]
        if self.next_logits is not None:
            self.next_logits = self.next_logits[torch.tensor(keep, dtype=torch.long, device=self.device)]

    @torch.no_grad()
    def propose(self, new_tokens: Sequence[torch.Tensor], choice: Choice, generator: torch.Generator) -> RaggedDraft:
        """Append each row's newly committed tokens ``[n_i]``, denoise one canvas per row for at most
        ``choice.denoising_steps`` steps, and propose the first ``choice.block_size`` tokens of each
        (every row's length is the block; ``draft.side`` holds each row's lookup guess when the
        drafter seeds its canvases)."""
        drafter = self.drafter
        assert len(new_tokens) == self.batch_size, "one tensor of new tokens per row"
        assert 1 <= choice.block_size <= drafter.canvas_length, f"block_size {choice.block_size} outside the canvas"
        assert choice.denoising_steps >= 1, "a diffusion draft runs at least one denoising step"
        if choice.recycle_canvas:
            raise SpecdiffError("canvas recycling is not offered in a batch (rows commit different counts); "
                                "choose recycle_canvas=False")
        new_tokens = [t.to(self.device) for t in new_tokens]
        pending = [torch.cat([u, t]) for u, t in zip(self.unencoded, new_tokens, strict=True)]
        self.history = [torch.cat([h, t]) for h, t in zip(self.history, new_tokens, strict=True)]
        batch, canvas_length = self.batch_size, drafter.canvas_length
        widths = torch.tensor([p.shape[0] for p in pending], dtype=torch.long, device=self.device)

        if int(widths.max()) > 0:
            self._encode(pending, widths)

        def step(canvas: torch.Tensor, self_conditioning: torch.Tensor | None, first: bool) -> torch.Tensor:
            mask = torch.cat([self.rows.mask, torch.ones(batch, canvas_length, dtype=torch.bool,
                                                         device=self.device)], dim=1)  # [B, L + C]
            positions = self.rows.lengths[:, None] + torch.arange(canvas_length, device=self.device)[None]
            out = drafter.model.model.decoder(
                decoder_input_ids=canvas, cache=self.rows.cache, self_conditioning_logits=self_conditioning,
                decoder_attention_mask=mask, decoder_position_ids=positions)
            return out.last_hidden_state

        draft = self.draft(step, batch, 0, choice, generator)
        self.unencoded = [p[:0] for p in pending]
        return RaggedDraft(draft=draft, lengths=torch.full((batch,), choice.block_size, dtype=torch.long))

    def _encode(self, pending: list[torch.Tensor], widths: torch.Tensor) -> None:
        """Append each row's pending tokens to the encoder cache as one ragged block, keep ``widths``."""
        drafter = self.drafter
        block = torch.zeros(len(pending), int(widths.max()), dtype=torch.long, device=self.device)
        for row, tokens in enumerate(pending):
            block[row, : tokens.shape[0]] = tokens
        inputs = self.rows.block_inputs(block.shape[1])
        hidden = drafter.model.model.encoder(input_ids=block, cache=self.rows.cache, **inputs).last_hidden_state
        if drafter.encoder_first_token:
            last = hidden[torch.arange(len(pending), device=self.device), (widths - 1).clamp(min=0)]  # [B, H]
            fresh = drafter.logits(last[:, None])  # [B, 1, V]
            if self.next_logits is not None:
                fresh = torch.where((widths > 0)[:, None, None], fresh, self.next_logits)
            self.next_logits = fresh
        self.rows.keep(widths)
