"""Per-row KV caches that roll back without moving anything: each row's states stay where they were written.

A forward appends a block of ``Q`` new states to every row; row i then keeps the first ``m_i`` of them.
Here the rollback is ``lengths[i] += m_i`` and nothing else: a rejected state stays in its slot, past
the row's length, where no query can see it (every query sees only positions up to its own) and
where a later block overwrites it. Two layouts, one per kind of layer:

- **Full-attention layers** keep a linear buffer ``[B, H, capacity, D]``: row i's position p in slot p,
  so a slot index *is* the RoPE position. A forward attends through the view ``[:, :, :S]``,
  ``S = max(lengths) + Q``, and a query at p sees slots ``<= p``.
- **Sliding-window layers** (window W) keep a ring ``[B, H, R, D]`` with ``R >= W - 1 + Q``: position p
  in slot ``p mod R``, and ``positions[i, s]`` records which position slot s of row i holds. A query
  at p sees the slots whose position lies in ``(p - W, p]`` (transformers' ``sliding_window_overlay``).
  ``R >= W - 1 + Q`` is what makes a block's writes (positions ``L_i .. L_i + Q - 1``) land only on
  slots whose positions are ``<= L_i - W``, which no later query needs. So a sliding layer attends
  over ``R`` slots whatever the rows' lengths (rows of very different lengths in one linear buffer
  would make every sliding layer attend from the shortest row's window to the longest row's end).
  The ring is resized to ``W - 1 + Q`` when a block is wider than it takes, or less than half as
  wide: attention time grows with ``R``, and a one-token block then attends over ``W`` slots, as
  transformers' own sliding layer does.

A prompt's prefill (``block_inputs(width, valid=...)``, into an empty cache) attends over the block
itself, and a sliding layer stores only each row's last ``W - 1`` real states.

The masks are built here, 4D boolean (``sdpa``) or additive (``eager``) ``[B, 1, Q, slots]``, one per
layer type, and handed to the model, which then builds none (transformers' convention for masks
prepared ahead, as ``generate`` does).

The diffusion drafter's decoder reads the cache its own way (each layer's keys concatenated with the
canvas's): ``drafts/batched_diffusion.py`` hands it views and masks of its own. Against the cache
this replaced (rows right-aligned in a ``DynamicCache``, where a ragged rollback gathered every
layer's cache to re-align the rows): ``docs/batching.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from specdiff.errors import SpecdiffError

GROWTH = 256  # slots added when a block would pass the end of a linear buffer (a copy every GROWTH tokens)
NO_POSITION = -(2**40)  # a ring slot that holds no position: outside every window


def layer_windows(config: Any) -> list[int | None]:
    """Each decoder layer's sliding window (None: full attention), from the config's ``layer_types``, or
    for a config without them, its ``sliding_window`` applied to every layer (Mistral's convention)."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types is None:
        return [window] * config.num_hidden_layers
    return [window if kind == "sliding_attention" else None for kind in types]


def block_positions(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[B]`` -> ``[B, width]``: the positions of a block of ``width`` tokens after each row's ``lengths``."""
    return lengths[:, None] + torch.arange(width, device=lengths.device)


def visible(key_positions: torch.Tensor, query_positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """Which keys each query sees: causal, and within ``window`` when given.

    Args:
        key_positions: ``[B, S]`` the position each key slot holds (``NO_POSITION``: none).
        query_positions: ``[B, Q]``.

    Returns:
        ``[B, 1, Q, S]`` bool.
    """
    keys, queries = key_positions[:, None, None, :], query_positions[:, None, :, None]
    seen = keys <= queries
    if window is not None:
        seen &= keys > queries - window
    return seen


def ring_slots(positions: torch.Tensor, size: int) -> torch.Tensor:
    """The ring slot of each position (``p mod size``), same shape."""
    return torch.remainder(positions, size)


def flat_index(slots: torch.Tensor, heads: int, width: int) -> torch.Tensor:
    """``[B, Q]`` slots of a ``[B, H, width, D]`` buffer -> ``[B * H * Q]`` rows of its ``[B * H * width, D]`` view."""
    rows = torch.arange(slots.shape[0] * heads, device=slots.device).view(-1, heads, 1) * width  # [B, H, 1]
    return (rows + slots[:, None, :]).reshape(-1)


@dataclass(frozen=True)
class Plan:
    """What one forward does in one layout.

    Attributes:
        slots: ``[B, Q]`` the slot each block state goes to.
        stored: ``[B, Q]`` bool, which block states are stored (None: all).
        view: how many slots a layer attends over (its buffer's first ``view``), or None: the block's
            own states (a prefill into an empty cache).
    """

    slots: torch.Tensor
    stored: torch.Tensor | None
    view: int | None


class RowBufferLayer(CacheLayerMixin):
    """One decoder layer's buffers; its layout (``LinearLayout`` or ``RingLayout``) plans every write."""

    is_compileable = False

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.layout = layout
        self.is_sliding = isinstance(layout, RingLayout)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, _ = key_states.shape
        self.keys = key_states.new_zeros(batch, heads, self.layout.size, key_states.shape[3])
        self.values = value_states.new_zeros(batch, heads, self.layout.size, value_states.shape[3])
        self.dtype, self.device = key_states.dtype, key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the block's ``[B, H, Q, D]`` states; return the keys and values to attend over."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        plan = self.layout.plan
        assert plan is not None, "block_inputs() plans a forward before it runs"
        index, pick = self.write_index(plan, key_states.shape[1])
        for buffer, states in ((self.keys, key_states), (self.values, value_states)):
            batch, heads, size, dim = buffer.shape
            rows = states.reshape(-1, dim)
            buffer.view(batch * heads * size, dim).index_copy_(0, index, rows if pick is None else rows[pick])
        if plan.view is None:  # a prefill: the block attends over itself
            return key_states, value_states
        return self.keys[:, :, : plan.view], self.values[:, :, : plan.view]

    def write_index(self, plan: Plan, heads: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The flat buffer rows a plan writes and which of the block's flat states go there; the same for
        every layer of a layout, so kept from the last call."""
        cached = self.layout.indices.get(heads)
        if cached is None:
            index, pick = flat_index(plan.slots, heads, self.layout.size), None
            if plan.stored is not None:
                pick = plan.stored[:, None, :].expand(-1, heads, -1).reshape(-1)
                index = index[pick]
            cached = self.layout.indices[heads] = (index, pick)
        return cached

    def get_seq_length(self) -> int:
        return self.layout.owner.seq_length()

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1


class Layout:
    """What the layers of one kind share: their slots a row (``size``) and the pending forward's plan."""

    def __init__(self, owner: RowBuffers, size: int) -> None:
        self.owner, self.size = owner, size
        self.plan: Plan | None = None
        self.indices: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}  # per head count

    def resize(self, layers: list[RowBufferLayer], rows: torch.Tensor | None, size: int) -> None:
        raise NotImplementedError

    def select(self, layers: list[RowBufferLayer], rows: torch.Tensor) -> None:
        self.resize(layers, rows, self.size)

    def extend(self, layers: list[RowBufferLayer], other: Layout, theirs: list[RowBufferLayer]) -> None:
        """Stack ``other``'s rows after these, both at the larger size."""
        size = max(self.size, other.size)
        for layout, its in ((self, layers), (other, theirs)):
            if layout.size != size:
                layout.resize(its, None, size)
        concatenate(layers, theirs, self.owner.batch_size, other.owner.batch_size)


class LinearLayout(Layout):
    """Full-attention layers: row i's position p in slot p of ``[B, H, size, D]``."""

    def prepare(self, layers: list[RowBufferLayer], queries: torch.Tensor,
                valid: torch.Tensor | None) -> torch.Tensor:
        """Plan a block at positions ``queries`` ``[B, Q]``; grow the buffers if it would pass their end.
        Returns the mask."""
        end = self.owner.seq_length() + queries.shape[1]
        if end > self.size:
            self.resize(layers, None, end + GROWTH)
        self.plan, self.indices = Plan(slots=queries, stored=None, view=None if valid is not None else end), {}
        if valid is not None:
            return visible(queries, queries, None)
        keys = torch.arange(end, device=queries.device).expand(queries.shape[0], -1)
        return visible(keys, queries, None)

    def resize(self, layers: list[RowBufferLayer], rows: torch.Tensor | None, size: int) -> None:
        """Keep the buffer rows ``rows`` (all when None) and make room for ``size`` slots a row."""
        for layer in layers:
            if layer.is_initialized:
                layer.keys, layer.values = (fit(t, rows, size) for t in (layer.keys, layer.values))
        self.size = size


class RingLayout(Layout):
    """Sliding-window layers of window W: row i's position p in slot ``p mod size`` of ``[B, H, size, D]``.

    Attributes:
        positions: ``[B, size]`` long, the position each slot holds (``NO_POSITION``: none yet).
    """

    def __init__(self, owner: RowBuffers, window: int) -> None:
        super().__init__(owner, size=window)  # blocks of one token
        self.window = window
        self.positions = torch.full((owner.batch_size, self.size), NO_POSITION, dtype=torch.long,
                                    device=owner.device)

    def prepare(self, layers: list[RowBufferLayer], queries: torch.Tensor,
                valid: torch.Tensor | None) -> torch.Tensor:
        """Plan a block at positions ``queries`` ``[B, Q]`` (``valid``: a prefill's real tokens a row).
        Returns the mask."""
        window, width = self.window, queries.shape[1]
        self.indices = {}
        if valid is not None:
            # Only each row's last W - 1 real states: all that later queries can reach.
            offsets = torch.arange(width, device=queries.device)[None]
            stored = (offsets < valid[:, None]) & (offsets >= valid[:, None] - (window - 1))
            self.plan = Plan(slots=ring_slots(queries, self.size), stored=stored, view=None)
            self._record(queries, stored)
            return visible(queries, queries, window)
        if not width <= self.size - window + 1 <= 2 * width:
            self.resize(layers, None, window - 1 + width)
        self.plan = Plan(slots=ring_slots(queries, self.size), stored=None, view=self.size)
        self._record(queries, None)
        return visible(self.positions, queries, window)

    def _record(self, queries: torch.Tensor, stored: torch.Tensor | None) -> None:
        """Note which position each slot the plan writes now holds."""
        slots = self.plan.slots
        if stored is None:
            self.positions.scatter_(1, slots, queries)
        else:
            rows, cols = stored.nonzero(as_tuple=True)
            self.positions[rows, slots[rows, cols]] = queries[rows, cols]

    def resize(self, layers: list[RowBufferLayer], rows: torch.Tensor | None, size: int) -> None:
        """Keep rows ``rows`` (all when None) in a ring of ``size`` slots: every position a later query
        can still reach (the last W - 1 of each row) moves to its slot in the new ring."""
        lengths = self.owner.lengths if rows is None else self.owner.lengths[rows]
        positions = self.positions if rows is None else self.positions[rows]
        if size == self.size and rows is not None:
            for layer in layers:
                if layer.is_initialized:
                    layer.keys, layer.values = layer.keys[rows], layer.values[rows]
            self.positions = positions
            return
        needed = (positions < lengths[:, None]) & (positions > lengths[:, None] - self.window)  # [B, old]
        batch = positions.shape[0]
        moved = torch.full((batch, size), NO_POSITION, dtype=torch.long, device=positions.device)
        row, old_slot = needed.nonzero(as_tuple=True)
        new_slot = ring_slots(positions[row, old_slot], size)
        moved[row, new_slot] = positions[row, old_slot]
        for layer in layers:
            if layer.is_initialized:
                for name in ("keys", "values"):
                    old = getattr(layer, name) if rows is None else getattr(layer, name)[rows]
                    new = old.new_zeros(batch, old.shape[1], size, old.shape[3])
                    new[row, :, new_slot] = old[row, :, old_slot]
                    setattr(layer, name, new)
        self.positions, self.size = moved, size

    def extend(self, layers: list[RowBufferLayer], other: Layout, theirs: list[RowBufferLayer]) -> None:
        super().extend(layers, other, theirs)
        self.positions = torch.cat([self.positions, other.positions.to(self.positions.device)])


def fit(states: torch.Tensor, rows: torch.Tensor | None, size: int) -> torch.Tensor:
    """``[B, H, S, D]`` -> ``[len(rows), H, size, D]``: the rows kept, slots cut or zero-padded on the right."""
    if rows is not None:
        states = states[rows]
    if states.shape[2] >= size:
        return states[:, :, :size].contiguous()
    pad = states.new_zeros(states.shape[0], states.shape[1], size - states.shape[2], states.shape[3])
    return torch.cat([states, pad], dim=2)


def concatenate(layers: list[RowBufferLayer], theirs: list[RowBufferLayer], batch: int, their_batch: int) -> None:
    """Stack ``theirs``' rows after ``layers``' (same slot counts), layer by layer; an uninitialised side
    (no forward yet) contributes zeros."""
    for mine, other in zip(layers, theirs, strict=True):
        template = mine if mine.is_initialized else other if other.is_initialized else None
        if template is None:
            continue
        parts = []
        for name in ("keys", "values"):
            like = getattr(template, name)
            blocks = [getattr(layer, name) if layer.is_initialized else like.new_zeros(rows, *like.shape[1:])
                      for layer, rows in ((mine, batch), (other, their_batch))]
            parts.append(torch.cat(blocks, dim=0))
        if not mine.is_initialized:
            mine.dtype, mine.device, mine.is_initialized = template.dtype, template.device, True
        mine.keys, mine.values = parts


class RowBuffers(Cache):
    """A transformers ``Cache`` over rows of different lengths, with per-row append and rollback in place.

    Attributes:
        lengths: ``[B]`` long, committed tokens per row (= the next token's position).
        layouts: one layout per sliding window (None: full attention), shared by its layers.
    """

    def __init__(self, config: Any, device: torch.device, batch: int = 0, attention: str = "sdpa") -> None:
        if attention != "eager" and "sdpa" not in attention:
            raise SpecdiffError(f"batched verification builds its own attention masks, for sdpa or eager "
                                f"attention; this verifier uses {attention!r}: load it with "
                                f"attn_implementation='sdpa'")
        self.device = device
        self.additive = attention == "eager"
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.windows = layer_windows(config)
        self.types = list(getattr(config, "layer_types", None) or [])
        self.layouts: dict[int | None, Layout] = {}
        for window in self.windows:
            if window not in self.layouts:
                self.layouts[window] = LinearLayout(self, size=0) if window is None else RingLayout(self, window)
        super().__init__(layers=[RowBufferLayer(self.layouts[w]) for w in self.windows])
        self.block = 0  # slots the pending forward writes (0: none pending)
        self.prefill_valid: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.lengths.shape[0])

    def layers_of(self, layout: LinearLayout | RingLayout) -> list[RowBufferLayer]:
        return [layer for layer in self.layers if layer.layout is layout]

    def block_inputs(self, width: int, valid: torch.Tensor | None = None) -> dict[str, Any]:
        """The forward's masks (one per layer type, or one tensor for a single type) and positions
        ``[B, width]`` for a block of ``width`` new tokens. ``valid`` ``[B]`` marks a prefill into an empty
        cache: row i's first ``valid[i]`` tokens are real and ``keep`` must keep exactly those."""
        assert self.block == 0, "keep() the last block before appending another"
        assert width >= 1
        assert valid is None or self.seq_length() == 0, "a prefill goes into an empty cache"
        queries = block_positions(self.lengths, width)
        masks = {window: self.as_mask(layout.prepare(self.layers_of(layout), queries, valid))
                 for window, layout in self.layouts.items()}
        self.block, self.prefill_valid = width, valid
        kinds = list(dict.fromkeys(self.types))
        mask: Any = ({kind: masks[self.windows[self.types.index(kind)]] for kind in kinds}
                     if len(kinds) > 1 else masks[self.windows[0]])
        return {"attention_mask": mask, "position_ids": queries}

    def as_mask(self, seen: torch.Tensor) -> torch.Tensor:
        """A boolean mask (True: attend) in the form this cache's attention takes."""
        if not self.additive:
            return seen
        additive = torch.zeros(seen.shape, dtype=torch.float32, device=self.device)
        return additive.masked_fill_(~seen, torch.finfo(torch.float32).min)

    def keep(self, kept: torch.Tensor) -> None:
        """Row i keeps the first ``kept[i]`` slots of the last block ``[B]``: its length grows by that."""
        kept = kept.to(self.device)
        assert kept.shape == (self.batch_size,) and bool(((kept >= 0) & (kept <= self.block)).all())
        assert self.prefill_valid is None or torch.equal(kept, self.prefill_valid.to(self.device)), \
            "a prefill keeps exactly its valid tokens"
        self.lengths = self.lengths + kept
        self.block, self.prefill_valid = 0, None
        for layout in self.layouts.values():
            layout.plan = None

    def select(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices into the batch), in that order."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        for layout in self.layouts.values():
            layout.select(self.layers_of(layout), index)
        self.lengths = self.lengths[index]

    def extend(self, other: RowBuffers) -> None:
        """Append ``other``'s rows after this cache's."""
        assert self.block == 0 and other.block == 0, "extend between blocks only"
        for window, layout in self.layouts.items():
            theirs = other.layouts[window]
            layout.extend(self.layers_of(layout), theirs, other.layers_of(theirs))
        self.lengths = torch.cat([self.lengths, other.lengths.to(self.device)])

    def seq_length(self) -> int:
        """The longest row's committed length."""
        return int(self.lengths.max()) if self.lengths.numel() else 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length()
