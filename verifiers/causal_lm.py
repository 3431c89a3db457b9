"""A transformers causal LM (Gemma 4 or any other) as the verifier.

The session keeps one KV cache over the committed tokens. The decode loop always holds back the
newest committed token (the *pending* token): a round feeds ``[pending] + draft`` in one forward,
which yields K + 1 next-token distributions, then rolls the cache back to the accepted length.
Sliding-window layers can only be rolled back when they keep the states past their window, so the
cache records them and is trimmed back to the window after every round.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from specdiff.verifiers.attention import use_grouped_attention
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel

from specdiff.errors import SpecdiffError
from specdiff.loading import load_model, load_tokenizer


def eos_ids_of(generation_config: Any) -> tuple[int, ...]:
    """The generation config's EOS ids as a tuple (Gemma 4 chat checkpoints list several)."""
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        return ()
    return (int(eos),) if isinstance(eos, int) else tuple(int(e) for e in eos)


class CausalLMVerifier:
    """Wraps a ``*ForCausalLM`` model as the verifier (``specdiff.protocols.Verifier``).

    Args:
        model: the causal LM (any device and dtype).
        tokenizer: optional; used for string prompts and decoding.
        grouped_attention: on the CPU, switch a grouped-query model from transformers' ``sdpa`` to
            ``specdiff.verifiers.attention.GQA_SDPA``, which scores a multi-token block without
            copying the KV cache (bit-identical outputs; False keeps the model as it is).
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any | None = None, grouped_attention: bool = True) -> None:
        if not hasattr(model, "generation_config") or not callable(getattr(model, "forward", None)):
            raise SpecdiffError(f"CausalLMVerifier needs a transformers causal LM, got {type(model).__name__}")
        self.model = model.eval()
        if grouped_attention:
            use_grouped_attention(self.model)
        self.tokenizer = tokenizer
        text_config = model.config.get_text_config()
        self.vocab_size: int = int(text_config.vocab_size)
        self.max_positions: int | None = getattr(text_config, "max_position_embeddings", None)
        self.eos_token_ids: tuple[int, ...] = eos_ids_of(model.generation_config)

    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike[str], grouped_attention: bool = True,
                        **kwargs: Any) -> CausalLMVerifier:
        """Load from a saved folder or hub id; ``dtype``, ``device_map`` and other kwargs pass through."""
        model = load_model(AutoModelForCausalLM, path_or_id, **kwargs)
        return cls(model, load_tokenizer(path_or_id), grouped_attention=grouped_attention)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def session(self, prompt_ids: torch.Tensor) -> VerifierSession:
        return VerifierSession(self, prompt_ids)

    def batch_session(self) -> Any:
        """A session for a batch of rows that join and leave (``specdiff.verifiers.batched``)."""
        from specdiff.verifiers.batched import BatchedVerifierSession

        return BatchedVerifierSession(self)


class VerifierSession:
    """One generation's verifier state: a KV cache over all committed tokens but the pending one."""

    def __init__(self, verifier: CausalLMVerifier, prompt_ids: torch.Tensor) -> None:
        assert prompt_ids.dim() == 2 and prompt_ids.shape[1] >= 1, "prompt_ids must be [B, T] with T >= 1"
        self.model = verifier.model
        self.device = verifier.device
        self.cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        self.cache.activate_past_recording()
        self.length = 0  # tokens in the cache
        prefix = prompt_ids[:, :-1].to(self.device)
        if prefix.shape[1] > 0:
            self._forward(prefix)
            self.cache.crop(0)

    def _forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(self.length, self.length + tokens.shape[1], device=self.device)
        out = self.model(
            input_ids=tokens,
            cache=self.cache,
            position_ids=positions[None],
            cache_position=positions,
            use_cache=True,
        )
        self.length += tokens.shape[1]
        return out.logits

    @torch.no_grad()
    def score(self, tokens: torch.Tensor) -> torch.Tensor:
        """Score ``tokens`` ``[B, 1 + K]`` (the pending token, then the draft) in one forward.

        Returns:
            ``[B, 1 + K, V]`` float32 logits; row i is the distribution of the token after ``tokens[:, i]``.
        """
        return self._forward(tokens.to(self.device)).float()

    def keep(self, num_scored_kept: int, num_scored: int) -> None:
        """Roll the cache back so that only the first ``num_scored_kept`` of the last ``num_scored`` stay."""
        assert 0 <= num_scored_kept <= num_scored
        rejected = num_scored - num_scored_kept
        # crop(0) is not a no-op: it trims sliding-window layers back to their window.
        self.cache.crop(-rejected)
        self.length -= rejected
