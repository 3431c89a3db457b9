"""The DiffusionGemma drafter over a batch of rows: one denoising loop for every row's canvas.

The single-row session's pieces are reused as they are (``DiffusionDraftSession``: the starting
canvas, the context lookup's seed and its side report, the denoising loop ``_denoise``); what
changes is the encoder cache. Rows commit different numbers of tokens each round, so the cache is a
``RowBuffers`` (``specdiff.row_buffers``, as the verifier's), and a round's committed tokens are
appended as a ragged block ``[B, max n_i]`` of which each row keeps its own ``n_i``.

That append is its own encoder call, ahead of the round's first denoising step, where the single-row
session folds both into one call: the decoder reads only committed states. It reads them as
``DiffusionGemma``'s decoder reads any cache, each layer's keys concatenated with the canvas's
(``committed_view``: views of the buffers, no copy), through masks that show each canvas position
its row's committed tokens (in a sliding layer its last ``W - 1``, what a single row's
``DynamicSlidingWindowLayer`` holds) and the whole canvas, at positions continuing after them.

Every round runs the model (at least one denoising step): rounds that draft without a model are the
n-gram lookup's (``specdiff.drafts.ngram``), a proposer of its own. Canvas recycling needs one shift
for the whole batch, which ragged commits do not give: it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from specdiff.drafts.diffusion_gemma import DiffusionDraftSession, DiffusionGemmaDrafter, ProposalMode, entropy_sampler
from transformers.cache_utils import Cache, DynamicLayer

from specdiff.batch_drafts import RaggedDraft
from specdiff.errors import SpecdiffError
from specdiff.protocols import Choice
from specdiff.row_buffers import RowBuffers, block_positions


def committed_view(rows: RowBuffers) -> Cache:
    """A cache whose layers hold views of ``rows``' buffers (a full layer's up to the longest row, a
    sliding layer's whole ring): what the decoder concatenates with its canvas states."""
    layers = []
    for layer in rows.layers:
        width = layer.layout.size if layer.is_sliding else rows.seq_length()
        view = DynamicLayer()
        view.keys, view.values = layer.keys[:, :, :width], layer.values[:, :, :width]
        view.dtype, view.device, view.is_initialized = layer.keys.dtype, layer.keys.device, True
        layers.append(view)
    return Cache(layers=layers)


def canvas_masks(rows: RowBuffers, canvas: int) -> dict[str, torch.Tensor]:
    """Per layer type, ``[B, 1, canvas, slots + canvas]``: every canvas position sees its row's committed
    states (a sliding layer's last ``W - 1``) and the whole canvas."""
    lengths = rows.lengths[:, None]  # [B, 1]
    masks = {}
    for kind in dict.fromkeys(rows.types):
        window = rows.windows[rows.types.index(kind)]
        if window is None:
            slots = torch.arange(rows.seq_length(), device=rows.device)[None]
            seen = slots < lengths
        else:
            positions = rows.layouts[window].positions
            seen = (positions < lengths) & (positions > lengths - window)  # an empty slot is below both
        both = torch.cat([seen, seen.new_ones(seen.shape[0], canvas)], dim=1)  # [B, slots + canvas]
        masks[kind] = rows.as_mask(both[:, None, None, :].expand(-1, 1, canvas, -1))
    return masks


class BatchedDiffusionSession(DiffusionDraftSession):
    """Drafting state for a batch of rows: a ragged encoder cache and each row's committed tokens."""

    def __init__(self, drafter: DiffusionGemmaDrafter, mode: ProposalMode = ProposalMode.ARGMAX) -> None:
        # The parent's constructor builds a single-row cache; the attributes its methods read are set here.
        assert mode is not ProposalMode.AUTO, "a session proposes in a concrete mode"
        self.drafter, self.mode, self.device = drafter, mode, drafter.device
        self.config = drafter.model.config.get_text_config(decoder=True)
        self.attention = drafter.model.config._attn_implementation
        self.rows = RowBuffers(self.config, self.device, attention=self.attention)
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
        self.rows.extend(RowBuffers(self.config, self.device, batch=len(prompts), attention=self.attention))
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
        batch = self.batch_size
        widths = torch.tensor([p.shape[0] for p in pending], dtype=torch.long, device=self.device)

        if int(widths.max()) > 0:
            self._encode(pending, widths)

        reads = self.decoder_inputs()

        def step(canvas: torch.Tensor, self_conditioning: torch.Tensor | None, first: bool) -> torch.Tensor:
            out = drafter.model.model.decoder(decoder_input_ids=canvas, self_conditioning_logits=self_conditioning,
                                              **reads)
            return out.last_hidden_state

        draft = self.draft(step, batch, 0, choice, generator)
        self.unencoded = [p[:0] for p in pending]
        return RaggedDraft(draft=draft, lengths=torch.full((batch,), choice.block_size, dtype=torch.long))

    def decoder_inputs(self) -> dict[str, Any]:
        """The decoder's reading of the committed states: the cache view, masks and canvas positions."""
        canvas = self.drafter.canvas_length
        return {"cache": committed_view(self.rows), "decoder_attention_mask": canvas_masks(self.rows, canvas),
                "decoder_position_ids": block_positions(self.rows.lengths, canvas)}

    def _encode(self, pending: list[torch.Tensor], widths: torch.Tensor) -> None:
        """Append each row's pending tokens to the encoder cache as one ragged block, keep ``widths``."""
        drafter = self.drafter
        block = torch.zeros(len(pending), int(widths.max()), dtype=torch.long, device=self.device)
        for row, tokens in enumerate(pending):
            block[row, : tokens.shape[0]] = tokens
        # Rows that all start empty are a prefill: only what later reads reach is stored.
        inputs = self.rows.block_inputs(block.shape[1], widths if self.rows.seq_length() == 0 else None)
        hidden = drafter.model.model.encoder(input_ids=block, cache=self.rows, **inputs).last_hidden_state
        if drafter.encoder_first_token:
            last = hidden[torch.arange(len(pending), device=self.device), (widths - 1).clamp(min=0)]  # [B, H]
            fresh = drafter.logits(last[:, None])  # [B, 1, V]
            if self.next_logits is not None:
                fresh = torch.where((widths > 0)[:, None, None], fresh, self.next_logits)
            self.next_logits = fresh
        self.rows.keep(widths)
