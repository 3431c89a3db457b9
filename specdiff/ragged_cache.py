"""Per-row KV caches held in one batched ``DynamicCache``: rows right-aligned, padding on the left.

The diffusion drafter's encoder cache (``drafts/batched_diffusion.py``), whose decoder reads each layer's
keys as one tensor; the verifier's rows live in ``specdiff.row_buffers``, which rolls back without
moving states.

A batch of sequences of different lengths shares one cache tensor per layer, ``[B, H, S, D]``. Every
row's states sit at the right end of the slot axis with padding before them, a 2D mask ``[B, L]``
(True: a real token) says which slots are real, and each row's RoPE positions are its own count of
real tokens. A forward appends a block of ``Q`` slots to every row; row i keeps the first ``m_i`` of
them (``keep``): its states move right by ``Q - m_i`` slots (one flat row gather per layer) and padding fills
in on the left, so every row again ends at the last slot. Leading slots that are padding in every
row are then dropped.

Why right-aligned, against transformers' own sliding-window handling (``cache_utils`` and
``masking_utils`` of transformers 5.24): the sliding-window mask is built on slot indices (a query
at slot q sees slots q - W + 1 .. q, intersected with the 2D mask), and a
``DynamicSlidingWindowLayer`` stores only the last ``W - 1`` slots of the cache. Because padding is
only ever on the left of a row, the last W slots of a row hold its last W real tokens (or all of
them, with padding before), so a window never loses a real token to padding. Holes inside a row
(masking rejected slots instead of moving the states) would push real tokens out of the window.
The cache records past states (``activate_past_recording``), so that the gather sees the states of
the whole block before ``crop(0)`` trims the sliding layers back to their window.

The alternative, one cache per row with a forward per row, costs a model call per row per round:
what batching is meant to save. Padding to a common length every round (without compaction) would
let the slot axis grow with the longest row's history of rejected slots.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache


def shift_right(states: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move each row's states right along the slot axis, zeros filling in on the left.

    Args:
        states: ``[B, H, S, D]`` (or ``[B, S]`` for a mask).
        shifts: ``[B]`` long, each in 0..S.

    Returns:
        Same shape: row i's slot j holds its old slot ``j - shifts[i]`` (zero where that is < 0).
    """
    if states.dim() == 2:
        return RowShift(shifts, states.shape[1], 1).apply(states[:, None, :, None])[:, 0, :, 0]
    return RowShift(shifts, states.shape[2], states.shape[1]).apply(states)


class RowShift:
    """One per-row right shift, as a flat row index: applied to ``[B, H, S, D]`` states it is one
    ``index_select`` over ``[B * H * S, D]`` and one in-place fill, which on a CPU costs a tenth of a
    ``gather`` along the slot axis with an expanded index (measured in ``docs/batching.md``). Built
    once per shape and reused for every layer's keys and values."""

    def __init__(self, shifts: torch.Tensor, slots: int, heads: int) -> None:
        device = shifts.device
        source = torch.arange(slots, device=device)[None] - shifts[:, None]  # [B, S]
        self.fill = (source < 0)[:, None, :, None]  # [B, 1, S, 1]: the new left padding
        rows = torch.arange(shifts.shape[0] * heads, device=device).view(-1, heads, 1) * slots  # [B, H, 1]
        self.index = (rows + source.clamp(min=0)[:, None, :]).reshape(-1)  # [B * H * S]

    def apply(self, states: torch.Tensor, zero_fill: bool = True) -> torch.Tensor:
        """``states`` ``[B, H, S, D]`` shifted; with ``zero_fill=False`` the new padding holds copies of
        the row's first slot instead of zeros (finite, and masked out, so attention reads exact zeros
        from it: the fill costs more than the gather)."""
        batch, heads, slots, dim = states.shape
        flat = states.reshape(batch * heads * slots, dim)  # a copy only when a crop left a view
        shifted = flat.index_select(0, self.index).view(batch, heads, slots, dim)
        return shifted.masked_fill_(self.fill, 0) if zero_fill else shifted


def fit_right(states: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, H, S, D]`` -> ``[B, H, width, D]``: the rightmost slots, zero-padded on the left if needed."""
    slots = states.shape[2]
    if slots >= width:
        return states[:, :, slots - width :]
    pad = states.new_zeros(states.shape[0], states.shape[1], width - slots, states.shape[3])
    return torch.cat([pad, states], dim=2)


def stored_width(layer: Any, slots: int) -> int:
    """How many of ``slots`` a layer stores between forwards: all, or a sliding layer's ``W - 1``."""
    return min(slots, layer.sliding_window - 1) if getattr(layer, "is_sliding", False) else slots


class RaggedCache:
    """A ``DynamicCache`` over rows of different lengths, with per-row append and rollback.

    Attributes:
        cache: the transformers cache passed to the model's forward (``cache=``).
        mask: ``[B, L]`` bool, True where a slot holds a real token; L slots in all.
        lengths: ``[B]`` long, real tokens per row (the next token's RoPE position).
    """

    def __init__(self, config: Any, device: torch.device, batch: int = 0) -> None:
        self.config = config
        self.device = device
        self.cache = DynamicCache(config=config)
        self.cache.activate_past_recording()
        self.mask = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.block = 0  # slots appended by the last forward, awaiting ``keep``

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def slots(self) -> int:
        return int(self.mask.shape[1])

    def block_inputs(self, width: int) -> dict[str, torch.Tensor]:
        """The forward's 2D mask ``[B, L + width]`` and positions ``[B, width]`` for a block of ``width``.

        Every block slot is marked real: a row's unused block slots lie after its real ones, so no real
        query sees them (causal), and each of their own queries sees at least itself (no fully masked
        row, whose softmax would be NaN and poison the states of later layers). ``keep`` drops them.
        """
        assert self.block == 0, "keep() the last block before appending another"
        self.block = width
        ones = torch.ones(self.batch_size, width, dtype=torch.bool, device=self.device)
        positions = self.lengths[:, None] + torch.arange(width, device=self.device)[None]
        return {"attention_mask": torch.cat([self.mask, ones], dim=1), "position_ids": positions}

    def keep(self, kept: torch.Tensor) -> None:
        """Keep the first ``kept[i]`` slots of row i's last block ``[B]``; re-align and compact."""
        width = self.block
        kept = kept.to(self.device)
        assert kept.shape == (self.batch_size,) and bool(((kept >= 0) & (kept <= width)).all())
        self.block = 0
        rejected = width - kept  # [B]
        block_mask = torch.arange(width, device=self.device)[None] < kept[:, None]
        self.mask = torch.cat([self.mask, block_mask], dim=1)
        layers = [layer for layer in self.cache.layers if layer.is_initialized]
        if self.batch_size and bool((rejected == rejected[0]).all()):
            # Every row rejects alike: transformers' own crop, no gather.
            for layer in layers:
                layer.crop(-int(rejected[0]))
            self.mask = self.mask[:, : self.mask.shape[1] - int(rejected[0])]
        else:
            shifts: dict[tuple[int, int], RowShift] = {}  # one index per shape (sliding layers hold fewer slots)
            for layer in layers:
                shape = (layer.keys.shape[2], layer.keys.shape[1])
                if shape not in shifts:
                    shifts[shape] = RowShift(rejected, *shape)
                shift = shifts[shape]
                layer.keys, layer.values = shift.apply(layer.keys, False), shift.apply(layer.values, False)
            self.mask = shift_right(self.mask, rejected)
            for layer in layers:
                layer.crop(0)  # back to the window, after the gather saw the whole block
        self.lengths = self.lengths + kept
        self._compact()

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices into the batch), in that order."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
        self.mask, self.lengths = self.mask[index], self.lengths[index]
        self._compact()

    def extend(self, other: RaggedCache) -> None:
        """Append ``other``'s rows after this cache's, both right-aligned to the longer slot count."""
        assert self.block == 0 and other.block == 0, "extend between blocks only"
        slots = max(self.slots, other.slots)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            template = mine if mine.is_initialized else theirs if theirs.is_initialized else None
            if template is None:
                continue
            width = stored_width(mine, slots)
            parts = {}
            for name in ("keys", "values"):
                like = getattr(template, name)
                tensors = []
                for layer, batch in ((mine, self.batch_size), (theirs, other.batch_size)):
                    states = getattr(layer, name) if layer.is_initialized else like.new_zeros(
                        batch, like.shape[1], 0, like.shape[3])
                    tensors.append(fit_right(states, width))
                parts[name] = torch.cat(tensors, dim=0)
            if not mine.is_initialized:
                mine.lazy_initialization(parts["keys"], parts["values"])
            mine.keys, mine.values = parts["keys"], parts["values"]
            if hasattr(mine, "cumulative_length"):
                mine.cumulative_length = slots
        pad = lambda m: torch.cat([m.new_zeros(m.shape[0], slots - m.shape[1]), m], dim=1)  # noqa: E731
        self.mask = torch.cat([pad(self.mask), pad(other.mask.to(self.device))], dim=0)
        self.lengths = torch.cat([self.lengths, other.lengths.to(self.device)])

    def _compact(self) -> None:
        """Drop leading slots that are padding in every row (all of them, once no row is left)."""
        real = self.mask.any(dim=0)  # [L]
        drop = int(real.long().argmax()) if bool(real.any()) else self.slots
        if drop == 0:
            return
        slots = self.slots - drop
        for layer in self.cache.layers:
            if layer.is_initialized:
                width = stored_width(layer, slots)
                layer.keys, layer.values = fit_right(layer.keys, width), fit_right(layer.values, width)
                if hasattr(layer, "cumulative_length"):
                    layer.cumulative_length = slots
        self.mask = self.mask[:, drop:]
