"""The DiffusionGemma draft engine: the model's own denoising loop, run as a drafter.

Per round the session (1) appends the tokens committed since the last round to the encoder's KV
cache and (2) denoises a fresh canvas of ``canvas_length`` tokens against that cache. Both happen
in the first forward call of the round: the committed tokens go in as ``input_ids`` and the canvas
as ``decoder_input_ids``, so a round with one denoising step is one model call. The cache only
ever holds committed tokens, so it needs no rollback.

The canvas's first position takes the encoder's logits at the last committed token in place of the
decoder's (``encoder_first_token``, on by default). DiffusionGemma's encoder is trained with a
causal next-token loss beside the denoising loss, and that same forward call computes it: the
encoder sees the committed tokens through every layer, while the decoder's first position reaches
them only through the cache, a layer later. On the pocket pair it raises first-token accuracy
from 0.53 to 0.86 on held-out code (``benchmarks/pocket_card.py``) and tokens a round from 1.90 to
2.54 (block 8, 1 step; ``benchmarks/draft_options.py``). From the second step on, the canvas
holds the encoder's token there like any other position.

A drafter trained by specdiff's recipe may instead use a **next-token canvas** (``next_token_canvas``,
recorded in its config; ``specdiff.drafts.next_token``).

With ``context_seed`` set, a round's canvas starts from the context lookup's guess at the
continuation (``specdiff.drafts.ngram``: what followed the most recent earlier occurrence of the
last few committed tokens) wherever the context has one, instead of pure noise. The guess is only
the starting canvas; the proposal is still the denoised output and the distribution it was drawn
from, so losslessness does not depend on it. The pocket drafter is trained for it (its
``drafter_seeded`` stage).

While it drafts, the session reports the lookup's guess it seeded the canvas with
(``Draft.side``), so a controller learns how far the n-gram proposer (``specdiff.drafts.ngram``)
would have gone in rounds it did not run.

Each denoising step follows transformers' reference sampler
(``transformers.models.diffusion_gemma.generation_diffusion_gemma``): logits divided by the linear
temperature schedule, a token drawn per position, the entropy-bound sampler keeping the
lowest-entropy positions and renoising the rest with uniform random tokens, self-conditioning on
the previous step's logits, and the stable-and-confident early stop. All randomness comes from the
generator the decode loop passes in, so seeded runs repeat exactly.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Any

import torch
from specdiff.drafts.ngram import ContextSeed, context_continuations
from transformers import DiffusionGemmaForBlockDiffusion, DynamicCache
from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
    EntropyBoundSampler,
    EntropyBoundSamplerConfig,
    LinearTemperatureScheduleLogitsProcessor,
    StableAndConfidentStoppingCriteria,
)

from specdiff.errors import SpecdiffError
from specdiff.loading import load_model, load_tokenizer
from specdiff.protocols import Choice, Draft, Proposer, SideReport
from specdiff.sampling import sample_categorical

# DiffusionGemma's published checkpoint caps a canvas at 48 denoising steps; a checkpoint that
# records no cap gets the same.
DEFAULT_MAX_STEPS = 48

# A drafter trained with a next-token canvas (see the module docstring) records this key (True) in its
# config, and the engine drafts with one.
NEXT_TOKEN_KEY = "specdiff_next_token_canvas"

# transformers' defaults for a checkpoint whose generation config leaves a value unset.
_REFERENCE_DEFAULTS = {
    "entropy_bound": 0.1,
    "t_min": 0.4,
    "t_max": 0.8,
    "stability_threshold": 1,
    "confidence_threshold": 0.005,
}


class ProposalMode(enum.Enum):
    """Which tokens of the denoised canvas a drafter proposes, and with what distribution.

    ARGMAX: the final argmax canvas. Given the drafter's own random noise (drawn independently of
        the verifier's randomness), the proposal is a deterministic function of the context, so the
        distribution each token was drawn from is one-hot. Speculative sampling is exact for any
        draft distribution, one-hot included, and greedy verification ignores it.
    RESAMPLE: each token re-drawn independently from the last denoising step's distribution (the
        temperature-scheduled logits). The tokens are conditionally independent given those
        logits, so the distribution of token i given the context and the earlier draft tokens is
        exactly that step's row i: the acceptance test sees the true draft distribution.
    AUTO: ARGMAX for greedy decoding, RESAMPLE when sampling. Under sampling a one-hot draft is
        accepted with the verifier's probability of that one token, while a resampled draft is
        accepted with the overlap of the two distributions: on the pocket pair at temperature
        0.7-1.0, 1.57-1.73 tokens a round against 1.13-1.31 (``benchmarks/draft_options.py``).
    """

    ARGMAX = "argmax"
    RESAMPLE = "resample"
    AUTO = "auto"

    def resolved(self, greedy: bool) -> ProposalMode:
        """The concrete mode for a greedy or a sampled decode (AUTO picks; the others stay)."""
        if self is ProposalMode.AUTO:
            return ProposalMode.ARGMAX if greedy else ProposalMode.RESAMPLE
        return self


@dataclass(frozen=True)
class DenoisingConfig:
    """The denoising sampler's settings (the cap on steps comes from each round's choice)."""

    entropy_bound: float = _REFERENCE_DEFAULTS["entropy_bound"]
    t_min: float = _REFERENCE_DEFAULTS["t_min"]
    t_max: float = _REFERENCE_DEFAULTS["t_max"]
    stability_threshold: int = _REFERENCE_DEFAULTS["stability_threshold"]
    confidence_threshold: float = _REFERENCE_DEFAULTS["confidence_threshold"]

    @classmethod
    def from_generation_config(cls, generation_config: Any) -> DenoisingConfig:
        """The checkpoint's own defaults, falling back to transformers' reference values."""

        def read(name: str) -> Any:
            value = getattr(generation_config, name, None)
            return _REFERENCE_DEFAULTS[name] if value is None else value

        sampler = getattr(generation_config, "sampler_config", None)
        bound = getattr(sampler, "entropy_bound", None)
        return cls(
            entropy_bound=_REFERENCE_DEFAULTS["entropy_bound"] if bound is None else float(bound),
            t_min=float(read("t_min")),
            t_max=float(read("t_max")),
            stability_threshold=int(read("stability_threshold")),
            confidence_threshold=float(read("confidence_threshold")),
        )


class DiffusionGemmaDrafter:
    """Wraps a ``DiffusionGemmaForBlockDiffusion`` as a draft engine (``specdiff.protocols.DraftEngine``).

    Args:
        model: the diffusion model (any device and dtype).
        tokenizer: optional; used by the decoder for string prompts.
        proposal_mode: which canvas tokens to propose (see ``ProposalMode``; AUTO by default:
            the argmax canvas for greedy decoding, resampled tokens when sampling).
        denoising: sampler settings; the checkpoint's generation config when omitted.
        encoder_first_token: draft the first token from the encoder's next-token logits (see the
            module docstring); False runs the plain denoising loop.
        context_seed: start each canvas from the context lookup's guess where there is one (see
            the module docstring): a ``ContextSeed``, True for the default lookup, False for pure
            noise, None (default) for what the checkpoint's config records: drafters
            trained for seeded canvases record their lookup there, others start from noise.
    """

    kind = Proposer.DIFFUSION

    def __init__(
        self,
        model: DiffusionGemmaForBlockDiffusion,
        tokenizer: Any | None = None,
        proposal_mode: ProposalMode = ProposalMode.AUTO,
        denoising: DenoisingConfig | None = None,
        encoder_first_token: bool = True,
        context_seed: ContextSeed | bool | None = None,
        next_token_canvas: bool | None = None,
    ) -> None:
        if not isinstance(model, DiffusionGemmaForBlockDiffusion):
            raise SpecdiffError(
                f"DiffusionGemmaDrafter needs a DiffusionGemmaForBlockDiffusion, got {type(model).__name__}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.proposal_mode = ProposalMode(proposal_mode)
        self.denoising = denoising or DenoisingConfig.from_generation_config(model.generation_config)
        self.encoder_first_token = encoder_first_token
        self.context_seed = ContextSeed.resolve(context_seed, model.config)
        if next_token_canvas is None:
            next_token_canvas = bool(getattr(model.config, NEXT_TOKEN_KEY, False))
        if next_token_canvas and not encoder_first_token:
            raise SpecdiffError("a next-token canvas starts from the encoder's first token: "
                                "keep encoder_first_token=True")
        self.next_token_canvas = next_token_canvas
        self.canvas_length: int = int(model.config.canvas_length)
        self.max_block_size = self.canvas_length
        # The checkpoint's own cap (48 on DiffusionGemma): more steps than it was tuned for only cost.
        self.max_denoising_steps: int = int(getattr(model.generation_config, "max_denoising_steps", None)
                                            or DEFAULT_MAX_STEPS)
        self.vocab_size: int = int(model.config.text_config.vocab_size)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike[str],
        proposal_mode: ProposalMode = ProposalMode.AUTO,
        denoising: DenoisingConfig | None = None,
        encoder_first_token: bool = True,
        context_seed: ContextSeed | bool | None = None,
        next_token_canvas: bool | None = None,
        **kwargs: Any,
    ) -> DiffusionGemmaDrafter:
        """Load from a saved folder or hub id; ``dtype``, ``device_map`` and other kwargs pass through."""
        model = load_model(DiffusionGemmaForBlockDiffusion, path_or_id, **kwargs)
        return cls(model, load_tokenizer(path_or_id), proposal_mode=proposal_mode, denoising=denoising,
                   encoder_first_token=encoder_first_token, context_seed=context_seed,
                   next_token_canvas=next_token_canvas)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's head on some canvas positions: ``[B, N, H]`` -> ``[B, N, V]`` float32.

        The same computation as ``DiffusionGemmaForBlockDiffusion.forward`` (LM head, then the
        tanh soft-cap), applied to a slice so unread positions cost nothing.
        """
        logits = self.model.lm_head(hidden).float()
        cap = self.model.final_logit_softcapping
        return torch.tanh(logits / cap) * cap

    def session(self, prompt_ids: torch.Tensor, greedy: bool = True) -> DiffusionDraftSession:
        return DiffusionDraftSession(self, prompt_ids, self.proposal_mode.resolved(greedy))

    def batch_session(self, greedy: bool = True) -> Any:
        """A session for a batch of rows that join and leave (``specdiff.drafts.batched_diffusion``)."""
        from specdiff.drafts.batched_diffusion import BatchedDiffusionSession

        return BatchedDiffusionSession(self, self.proposal_mode.resolved(greedy))


def entropy_sampler(drafter: DiffusionGemmaDrafter) -> EntropyBoundSampler:
    """transformers' entropy-bound sampler for this drafter's canvas (a session's; it is batch-agnostic)."""
    return EntropyBoundSampler(
        EntropyBoundSamplerConfig(entropy_bound=drafter.denoising.entropy_bound),
        canvas_length=drafter.canvas_length,
        vocab_size=drafter.vocab_size,
        max_denoising_steps=1,
    )


class DiffusionDraftSession:
    """One generation's drafting state: the encoder cache over committed tokens."""

    def __init__(self, drafter: DiffusionGemmaDrafter, prompt_ids: torch.Tensor,
                 mode: ProposalMode = ProposalMode.ARGMAX) -> None:
        assert prompt_ids.dim() == 2 and prompt_ids.shape[1] >= 1, "prompt_ids must be [B, T] with T >= 1"
        assert mode is not ProposalMode.AUTO, "a session proposes in a concrete mode"
        self.drafter = drafter
        self.mode = mode
        model = drafter.model
        self.cache = DynamicCache(config=model.config.get_text_config(decoder=True))
        self.device = drafter.device
        self.unencoded = prompt_ids.to(self.device)  # committed tokens not yet in the cache
        self.history = self.unencoded  # [B, T]: every committed token, for the context lookup
        self.encoded_length = 0
        self.last_canvas: torch.Tensor | None = None  # [B, C], for canvas recycling
        self.next_logits: torch.Tensor | None = None  # [B, 1, V]: the encoder's, at the last committed token
        self.sampler = entropy_sampler(drafter)

    def _noise(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(
            0, self.drafter.vocab_size, (batch, length), generator=generator, device=self.device
        )

    def _starting_canvas(self, batch: int, shift: int, recycle: bool, generator: torch.Generator) -> tuple[
        torch.Tensor, SideReport | None
    ]:
        """Fresh noise, the context lookup's guess over it, or (recycling) the last canvas's
        unconsumed tail shifted into place with noise behind it: the canvas ``[B, C]``, and the
        lookup's guesses when it consulted the lookup."""
        length = self.drafter.canvas_length
        if recycle and self.last_canvas is not None:
            tail = self.last_canvas[:, shift:]
            return torch.cat([tail, self._noise(batch, length - tail.shape[1], generator)], dim=1), None
        noise = self._noise(batch, length, generator)
        seed = self.drafter.context_seed
        if seed is None:
            return noise, None
        tokens, found = context_continuations([self.history[row] for row in range(batch)], length, seed)
        noise = torch.where(found[:, None], tokens, noise)  # a row without a guess keeps its noise
        return noise, SideReport(Proposer.NGRAM, tuple(row if hit else row[:0] for row, hit in
                                                       zip(tokens, found.tolist(), strict=True)))

    @torch.no_grad()
    def propose(self, new_tokens: torch.Tensor, choice: Choice, generator: torch.Generator) -> Draft:
        """Encode ``new_tokens`` ``[B, n]``, denoise a canvas for at most ``choice.denoising_steps``
        steps, and propose its first ``choice.block_size`` tokens.

        Returns:
            ``Draft`` with tokens ``[B, block_size]`` and probs ``[B, block_size, V]`` (None in
            ARGMAX mode: one-hot at the tokens).
        """
        drafter = self.drafter
        canvas_length = drafter.canvas_length
        assert 1 <= choice.block_size <= canvas_length, f"block_size {choice.block_size} outside 1..{canvas_length}"
        assert choice.denoising_steps >= 1, "a diffusion draft runs at least one denoising step"
        pending = torch.cat([self.unencoded, new_tokens.to(self.device)], dim=1)  # [B, n]
        if new_tokens.shape[1]:
            self.history = torch.cat([self.history, new_tokens.to(self.device)], dim=1)
        batch, n_pending = pending.shape
        start = self.encoded_length
        position_ids = torch.arange(start, start + n_pending, device=self.device)[None]
        canvas_positions = torch.arange(
            start + n_pending, start + n_pending + canvas_length, device=self.device
        )[None]

        # The pending tokens go into the first decoder call, except for a next-token canvas, whose first
        # position needs the encoder's token before that call.
        fold = n_pending > 0 and not drafter.next_token_canvas
        if n_pending > 0 and not fold:
            encoded = drafter.model.model.encoder(input_ids=pending, position_ids=position_ids, cache=self.cache,
                                                  use_cache=True)
            self.next_logits = drafter.logits(encoded.last_hidden_state[:, -1:])  # [B, 1, V]

        def step(canvas: torch.Tensor, self_conditioning: torch.Tensor | None, first: bool) -> torch.Tensor:
            encode_now = first and fold
            out = drafter.model.model(
                input_ids=pending if encode_now else None,
                position_ids=position_ids if encode_now else None,
                cache=self.cache,
                decoder_input_ids=canvas,
                decoder_position_ids=canvas_positions,
                self_conditioning_logits=self_conditioning,
                use_cache=True,
            )
            if encode_now and drafter.encoder_first_token:
                self.next_logits = drafter.logits(out.encoder_last_hidden_state[:, -1:])  # [B, 1, V]
            return out.last_hidden_state

        draft = self.draft(step, batch, n_pending, choice, generator)
        self.encoded_length += n_pending
        self.unencoded = pending[:, :0]
        return draft

    def draft(self, step: Any, batch: int, shift: int, choice: Choice, generator: torch.Generator) -> Draft:
        """A round's proposal: the next-token canvas's loop when the drafter was trained for one, else
        the denoising loop (both take the same ``step``; see ``_denoise``)."""
        if self.drafter.next_token_canvas:
            from specdiff.drafts.next_token import next_token_draft

            return next_token_draft(self, step, batch, choice, generator)
        return self._denoise(step, batch, shift, choice, generator)

    def _denoise(self, step: Any, batch: int, shift: int, choice: Choice, generator: torch.Generator) -> Draft:
        """The denoising loop over a starting canvas ``[B, C]`` (``shift``: tokens committed since the
        last canvas, for recycling); ``step(canvas, self_conditioning, first)`` runs one model call (the
        first of a round also encodes what is pending, and sets ``next_logits``) and returns the
        decoder's hidden states ``[B, C, H]``. Shared by the single-row and the batched session."""
        drafter = self.drafter
        canvas_length = drafter.canvas_length
        block_size, denoising_steps, recycle_canvas = choice.block_size, choice.denoising_steps, choice.recycle_canvas
        cfg = drafter.denoising
        schedule = LinearTemperatureScheduleLogitsProcessor(cfg.t_min, cfg.t_max, denoising_steps)
        stopper = StableAndConfidentStoppingCriteria(cfg.stability_threshold, cfg.confidence_threshold)
        canvas, side = self._starting_canvas(batch, shift, recycle_canvas, generator)
        self_conditioning = None
        steps_used = 0
        for cur_step in range(denoising_steps, 0, -1):  # steps remaining, as in transformers
            hidden = step(canvas, self_conditioning, steps_used == 0)
            steps_used += 1
            # On the last step only the block is read (the whole canvas when it will be recycled),
            # so the LM head, softcap and argmax skip the other positions.
            last = cur_step == 1
            width = canvas_length if recycle_canvas or not last else block_size
            raw = drafter.logits(hidden[:, :width])  # [B, width, V], a fresh tensor
            if drafter.encoder_first_token and self.next_logits is not None:
                raw[:, :1] = self.next_logits  # in place: a concatenation would copy the whole canvas's logits
            logits = schedule(None, raw, cur_step=cur_step)  # [B, width, V]
            argmax_canvas = logits.argmax(dim=-1)
            # The last step's renoised canvas would be thrown away, so skip the sampler there.
            if last or bool(stopper(argmax_canvas, logits).all()):
                break
            denoised = sample_categorical(torch.softmax(logits, dim=-1), generator)  # [B, C]
            kept = self.sampler.accept_canvas(canvas, denoised, logits, cur_step)
            canvas = torch.where(self.sampler.accepted_token_mask, kept, self._noise(batch, canvas_length, generator))
            self_conditioning = logits.to(drafter.model.get_input_embeddings().weight.dtype)
        self.last_canvas = argmax_canvas  # [B, width]: the block only, unless recycling asked for all
        head = logits[:, :block_size]  # [B, K, V]
        if self.mode is ProposalMode.ARGMAX:
            tokens, probs = argmax_canvas[:, :block_size], None  # one-hot, built only if needed
        else:
            probs = torch.softmax(head, dim=-1)
            tokens = sample_categorical(probs, generator)
        # ``head`` is the distribution's logits: the draft's confidence comes from it, on demand.
        return Draft(tokens=tokens, probs=probs, denoising_steps_used=steps_used, scores=head, side=side)
