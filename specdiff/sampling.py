"""How the verifier samples: temperature, top-k and top-p, exactly as transformers' ``generate()`` does.

The speculative output follows the verifier's own distribution only if the target distributions the
acceptance rule sees are processed the same way the verifier's sampling would process them, so this
module builds them from transformers' own logits warpers (same order, same tie handling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from specdiff.errors import SpecdiffError


@dataclass(frozen=True)
class SamplingConfig:
    """The verifier's sampling settings.

    ``temperature == 0`` means greedy decoding (``generate(do_sample=False)``); top-k and top-p then
    change nothing. ``top_k=None`` and ``top_p=None`` mean no truncation. Unlike ``generate()``, unset
    values never fall back to a checkpoint's generation config: what is written here is what runs.
    """

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise SpecdiffError(
                f"temperature must be >= 0 (got {self.temperature}); use 0 for greedy decoding"
            )
        if self.top_k is not None and self.top_k < 1:
            raise SpecdiffError(f"top_k must be >= 1 (got {self.top_k}); leave it unset for no top-k")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise SpecdiffError(f"top_p must be in (0, 1] (got {self.top_p}); leave it unset for no top-p")

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    def warpers(self) -> LogitsProcessorList:
        """transformers' warpers for this setting, in ``generate()``'s order (temperature, top-k, top-p)."""
        warpers = LogitsProcessorList()
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k is not None:
            warpers.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=self.top_p))
        return warpers


def target_probs(target_logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Turn the verifier's raw logits into the distributions its own sampling draws from.

    Args:
        target_logits: ``[B, N, V]`` raw verifier logits.
        sampling: a non-greedy setting.

    Returns:
        ``[B, N, V]`` float32 probabilities, each row summing to 1.
    """
    assert target_logits.dim() == 3, f"target_logits must be [B, N, V], got {tuple(target_logits.shape)}"
    assert not sampling.is_greedy, "greedy decoding compares argmaxes; it has no target distribution"
    batch, positions, vocab = target_logits.shape
    flat = target_logits.reshape(batch * positions, vocab).float()
    # The warpers ignore input_ids for these three processors; an empty tensor keeps their signature.
    no_ids = torch.empty((batch * positions, 0), dtype=torch.long, device=flat.device)
    warped = sampling.warpers()(no_ids, flat)
    return torch.softmax(warped, dim=-1).reshape(batch, positions, vocab)


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from unnormalised probabilities, by inverting the cumulative distribution.

    One uniform number per row, where ``torch.multinomial`` (or a Gumbel/exponential race) spends
    one per vocabulary entry: on the CPU the generator, not the arithmetic, is the cost, and a
    denoising step draws a whole canvas of thousands-wide rows. The CDF is accumulated in float64
    and searched from the right, so a zero-probability entry (a flat step of the CDF) is never drawn.

    Args:
        probs: ``[..., V]`` non-negative, each row with positive mass.

    Returns:
        ``[...]`` long.
    """
    cdf = probs.double().cumsum(dim=-1)  # [..., V]
    uniform = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=cdf.device, dtype=torch.float64)
    index = torch.searchsorted(cdf, uniform * cdf[..., -1:], right=True)  # [..., 1]
    return index.squeeze(-1).clamp(max=probs.shape[-1] - 1)
