"""Training the pocket DiffusionGemma drafter.

Recipe (after DiffusionGemma's published fine-tuning; see /work/shared/NOTES.md):

* Start from a trained autoregressive `Gemma4ForCausalLM` of the drafter's shape (MoE block,
  `attention_k_eq_v`): its weights load unchanged into the encoder, which shares them with the
  decoder; only the decoder's self-conditioning MLP starts fresh.
* An example is a clean prompt and a canvas of the next `canvas_length` tokens. The prompt
  runs through the causal encoder into a KV cache, as committed tokens do at inference; the
  decoder reads that cache read-only, canvas positions continuing right after the prompt.
  For throughput, several canvases of one sequence (cut at different points) share one
  encoder pass, each masked to see only its own prefix (`multi_canvas_masks`).
* Corruption is uniform: per example a noise level t (pure noise with probability
  `pure_noise_prob`, since inference mostly runs 1-2 denoising steps from random tokens,
  otherwise t ~ U(eps, 1)); each canvas position becomes a uniform random token with
  probability t. The loss is cross-entropy over ALL canvas positions (weighted toward the
  first ones, which decide acceptance: `position_weights`) plus
  `encoder_loss_weight` times the causal next-token loss of the encoder logits.
* Self-conditioning on about half the steps: a first decoder pass without gradients, its
  logits fed to the second pass as `self_conditioning_logits`.
* Distillation: most canvases are the pocket verifier's own greedy continuations
  (`generate_distillation_data`), so the drafter learns what the verifier will accept.
* The MoE routers stay frozen, as in the published fine-tuning.
* Context-seeded canvases (a second, shorter stage): a share of canvases start from the context
  lookup's guess at the continuation (`seed_canvases`), as the engine's do with `context_seed`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from specdiff.drafts.ngram import ContextSeed
from specdiff.training.canvases import corrupt, corrupt_next_token, seed_canvases
from specdiff.training.heads import sampled_head_loss
from specdiff.training.lm import IGNORE_INDEX, BatchSource, TextShape, text_config_kwargs

TINY_VISION_CONFIG = dict(
    model_type="gemma4_vision",
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=1,
    num_key_value_heads=1,
    head_dim=16,
    patch_size=2,  # the default 16x16 patches and 10,240-row position table would be
    position_embedding_size=8,  # most of a tiny drafter's bytes, for a tower never run
)


@dataclass(frozen=True)
class DiffusionObjective:
    canvas_length: int = 64
    pure_noise_prob: float = 0.6
    min_noise: float = 0.05
    self_conditioning_prob: float = 0.5
    # The draft engine takes a canvas's first token from the encoder's next-token logits
    # (`DiffusionGemmaDrafter`, `encoder_first_token`), so the encoder's causal LM loss is weighted
    # as fully as the canvas loss, and `anchor_prob` of the canvases keep their first position
    # clean, as the engine's canvas holds that token from the second denoising step on.
    encoder_loss_weight: float = 1.0
    anchor_prob: float = 0.5
    canvases_per_sequence: int = 4  # canvases at distinct cut points sharing one encoder pass
    encoder_loss_stride: int = 4  # encoder loss on every n-th position (random offset)
    # Canvas position i is weighted exp(-i / position_decay) (None: uniform). A draft token is
    # only accepted when every token before it is, so late positions from pure noise matter
    # little to acceptance while their near-unpredictable targets dominate a uniform loss.
    position_decay: float | None = 8.0
    # Share of canvases (among those whose context has a recurring n-gram) that start from the
    # context lookup's guess (`specdiff.drafts.ngram`) instead of a corrupted target, as the
    # engine's canvas does with `context_seed` on: the decoder learns to keep a right guess and
    # overwrite a wrong one.
    context_seed_prob: float = 0.0
    context_seed: ContextSeed = ContextSeed()
    # A next-token canvas (the engine's `next_token_canvas`): canvas input i is a guess at token i
    # (position 0 always clean, as the engine's holds the encoder's token), output i predicts token
    # i + 1, the convention the causal encoder it shares weights with already follows. With
    # probability `clean_prefix_prob` a canvas keeps a longer clean prefix (length uniform in
    # 2..C), as the Jacobi steps after the first see; no self-conditioning (the engine passes none).
    next_token_canvas: bool = False
    clean_prefix_prob: float = 0.5
    # None: the full softmax over the vocabulary. A number: the batch's targets plus that many
    # uniformly drawn other ids (`sampled_head_loss`); at a 49,152-id vocabulary the output layer
    # is most of a small drafter's training time, and memory-bound on a CPU.
    sampled_negatives: int | None = None


def position_weights(canvas_length: int, decay: float | None) -> torch.Tensor:
    """Per-position canvas loss weights ``[C]``, summing to 1 (uniform when ``decay`` is None)."""
    positions = torch.arange(canvas_length, dtype=torch.float32)
    raw = torch.ones(canvas_length) if decay is None else torch.exp(-positions / decay)
    return raw / raw.sum()


def build_drafter(shape: TextShape, vocab_size: int, special_ids: dict[str, int], canvas_length: int, seed: int):
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    assert shape.num_experts > 0, "every DiffusionGemma layer has a mixture-of-experts block"
    text = text_config_kwargs(shape, vocab_size, special_ids)
    for key in ("hidden_size_per_layer_input", "vocab_size_per_layer_input", "num_kv_shared_layers",
                "enable_moe_block", "attention_k_eq_v"):
        text.pop(key)
    config = DiffusionGemmaConfig(
        text_config=text, vision_config=TINY_VISION_CONFIG, canvas_length=canvas_length, **special_ids
    )
    config.text_config._experts_implementation = "grouped_mm"
    torch.manual_seed(seed)
    return DiffusionGemmaForBlockDiffusion(config)


def load_ar_weights(drafter, ar_model) -> None:
    """Copy a trained AR model (same shape, MoE layout) into the drafter's encoder and decoder.

    Parameters are tied between encoder and decoder, buffers are not, so both get the state.
    """
    state = ar_model.model.state_dict()
    missing, unexpected = drafter.model.encoder.language_model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    missing, unexpected = drafter.model.decoder.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("self_conditioning") for k in missing), missing


def freeze_routers(drafter) -> None:
    for name, param in drafter.named_parameters():
        if ".router." in name:
            param.requires_grad_(False)


def _softcap(model, logits: torch.Tensor) -> torch.Tensor:
    cap = model.final_logit_softcapping
    return torch.tanh(logits.float() / cap) * cap


def supervised_start(labels: torch.Tensor) -> int:
    """First position whose label is supervised: canvases may start there or later."""
    supervised = (labels[0] != IGNORE_INDEX).nonzero()
    assert supervised.numel() > 0, "an example needs canvas targets"
    return int(supervised[0])


def multi_canvas_masks(seq_len: int, cuts: Sequence[int], canvas_length: int, sliding_window: int,
                       batch: int) -> dict[str, torch.Tensor]:
    """Decoder masks [B, 1, K*C, seq_len + K*C] for K canvases against one encoder pass.

    Canvas k starts at position cuts[k] and sees what it would see at inference after
    committing cuts[k] tokens: every earlier key in full-attention layers, the last
    `sliding_window - 1` of them in sliding layers (what a sliding cache layer keeps), and
    its own canvas bidirectionally -- never another canvas. Checked against separate
    encoder passes per cut (max logit difference ~1e-6).
    """
    queries = len(cuts) * canvas_length
    key_pos = torch.arange(seq_len)
    full = torch.zeros(queries, seq_len + queries, dtype=torch.bool)
    sliding = torch.zeros_like(full)
    for k, cut in enumerate(cuts):
        rows = slice(k * canvas_length, (k + 1) * canvas_length)
        own = slice(seq_len + k * canvas_length, seq_len + (k + 1) * canvas_length)
        full[rows, :seq_len] = key_pos < cut
        sliding[rows, :seq_len] = (key_pos < cut) & (key_pos >= cut - (sliding_window - 1))
        full[rows, own] = True
        sliding[rows, own] = True
    return {
        "full_attention": full[None, None].expand(batch, 1, -1, -1),
        "sliding_attention": sliding[None, None].expand(batch, 1, -1, -1),
    }


def diffusion_loss(model, ids: torch.Tensor, labels: torch.Tensor, obj: DiffusionObjective,
                   self_condition: bool | None = None) -> torch.Tensor:
    """Drafter loss for sequences ids [B, L]; canvases start at or after the first supervised label.

    The whole sequence runs through the causal encoder once (into a cache that keeps every
    key); up to `canvases_per_sequence` canvases at distinct random cut points are denoised
    in one decoder call against it (`multi_canvas_masks`).
    """
    from transformers import DynamicCache

    batch, seq_len = ids.shape
    canvas_len = obj.canvas_length
    first = supervised_start(labels)
    # Canvases start no later than the last supervised position of any row (distilled rows that
    # ended early leave nothing to learn past their end).
    last = int((labels != IGNORE_INDEX).any(0).nonzero()[-1])
    shift = int(obj.next_token_canvas)  # a next-token canvas's outputs are its inputs one position on
    n_starts = min(seq_len - canvas_len - shift, last) - first + 1
    assert n_starts > 0, "sequence too short for a canvas"
    picks = torch.randperm(n_starts)[: obj.canvases_per_sequence] + first
    cuts = sorted(picks.tolist())

    cache = DynamicCache()  # full layers everywhere: the masks apply the sliding window
    encoder_out = model.model.encoder(input_ids=ids, cache=cache, use_cache=True)
    # The LM head is most of a tiny drafter's compute: score a random quarter of the positions
    # (an unbiased estimate of the full encoder loss).
    offset = int(torch.randint(obj.encoder_loss_stride, (1,)))
    hidden = encoder_out.last_hidden_state[:, offset : seq_len - 1 : obj.encoder_loss_stride]
    # Past a distilled row's end of sequence nothing is the verifier's: those targets are ignored.
    after_end = (labels == IGNORE_INDEX) & (torch.arange(seq_len) >= first)
    targets = torch.where(after_end, IGNORE_INDEX, ids)
    next_tokens = targets[:, offset + 1 :: obj.encoder_loss_stride][:, : hidden.shape[1]]
    if obj.sampled_negatives is None:
        encoder_logits = _softcap(model, model.lm_head(hidden))  # [B, ~L/stride, V]
        encoder_loss = F.cross_entropy(encoder_logits.flatten(0, 1), next_tokens.flatten(),
                                       ignore_index=IGNORE_INDEX)
    else:
        keep = next_tokens != IGNORE_INDEX
        encoder_loss = sampled_head_loss(hidden[keep], next_tokens[keep], model.lm_head.weight,
                                         model.final_logit_softcapping, obj.sampled_negatives).mean()

    clean = torch.cat([ids[:, c : c + canvas_len] for c in cuts], dim=1)  # [B, K*C]: the canvas's tokens
    target = torch.cat([ids[:, c + shift : c + shift + canvas_len] for c in cuts], dim=1)  # what outputs predict
    vocab_size = model.config.text_config.vocab_size
    noisy = corrupt_next_token(clean, vocab_size, obj) if shift else corrupt(clean, vocab_size, obj)
    canvas = seed_canvases(noisy, ids, cuts, obj)
    if shift:  # a seeded canvas still holds the (encoder's) first token at position 0
        canvas.view(batch, len(cuts), canvas_len)[:, :, 0] = clean.view(batch, len(cuts), canvas_len)[:, :, 0]
    positions = torch.cat([torch.arange(c, c + canvas_len) for c in cuts]).expand(batch, -1)
    masks = multi_canvas_masks(seq_len, cuts, canvas_len, model.config.text_config.sliding_window, batch)
    if self_condition is None:
        self_condition = not shift and random.random() < obj.self_conditioning_prob
    sc_logits = None
    if self_condition:
        with torch.no_grad():
            sc_logits = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=positions,
                              decoder_attention_mask=masks).logits
    decoder_inputs = dict(cache=cache, decoder_input_ids=canvas, decoder_position_ids=positions,
                          decoder_attention_mask=masks, self_conditioning_logits=sc_logits)
    if obj.sampled_negatives is None:
        logits = model(**decoder_inputs).logits  # [B, K*C, V]
        per_token = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    else:
        hidden = model.model(**decoder_inputs).last_hidden_state  # [B, K*C, H]
        per_token = sampled_head_loss(hidden.flatten(0, 1), target.flatten(), model.lm_head.weight,
                                      model.final_logit_softcapping, obj.sampled_negatives)
    supervised = torch.cat([labels[:, c + shift : c + shift + canvas_len] for c in cuts], dim=1) != IGNORE_INDEX
    per_token = (per_token * supervised.flatten()).view(batch, len(cuts), canvas_len)  # [B, K, C]
    weights = position_weights(canvas_len, obj.position_decay).to(per_token.device)
    canvas_loss = (per_token * weights).sum(-1).mean()
    return canvas_loss + obj.encoder_loss_weight * encoder_loss


@torch.no_grad()
def first_step_loss(model, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], obj: DiffusionObjective) -> float:
    """Held-out canvas CE from pure noise (position-weighted as in training), no self-conditioning."""
    was_training = model.training
    model.eval()
    pure = replace(obj, pure_noise_prob=1.0, anchor_prob=0.0, clean_prefix_prob=0.0, encoder_loss_weight=0.0,
                   canvases_per_sequence=1, context_seed_prob=0.0)
    rng_state = torch.get_rng_state()
    torch.manual_seed(1234)  # the same noise every evaluation
    losses = [diffusion_loss(model, ids, labels, pure, self_condition=False).item() for ids, labels in batches]
    torch.set_rng_state(rng_state)
    model.train(was_training)
    return float(sum(losses) / max(len(losses), 1))


# ---------------------------------------------------------------------------------------------
# Examples: raw windows of the corpus and distilled verifier continuations


def raw_examples(stream: torch.Tensor, batch_size: int, min_prompt: int, seq_len: int, seed: int) -> BatchSource:
    """Random corpus windows of `seq_len`; canvases may start anywhere after `min_prompt` tokens."""

    def source(step: int):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, stream.numel() - seq_len, (batch_size,), generator=gen).tolist()
        ids = torch.stack([stream[s : s + seq_len] for s in starts])
        labels = ids.clone()
        labels[:, :min_prompt] = IGNORE_INDEX
        return ids, labels

    return source


def distilled_examples(data: dict[int, torch.Tensor], batch_size: int, seed: int,
                       continuation_len: int | None = None) -> BatchSource:
    """Rows of `data[prompt_len]` ([N, prompt_len + continuation]); labels ignore the prompt."""
    groups = sorted(p for p, rows in data.items() if rows.shape[0] > 0)
    assert groups, "no distillation data"

    def source(step: int):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        prompt_len = groups[int(torch.randint(len(groups), (1,), generator=gen))]
        rows = data[prompt_len]
        ids = rows[torch.randint(rows.shape[0], (batch_size,), generator=gen)]
        if continuation_len is not None:
            ids = ids[:, : prompt_len + continuation_len]
        labels = ids.clone()
        labels[:, :prompt_len] = IGNORE_INDEX
        return ids, labels

    return source


@dataclass(frozen=True)
class DistillConfig:
    prompt_lens: tuple[int, ...] = (32, 64, 128, 192)
    continuation_len: int = 128  # > canvas: canvases can start at several cut points
    batch_size: int = 32
    max_examples: int = 20_000
    budget_minutes: float | None = 5.0
    seed: int = 0


@torch.no_grad()
def generate_distillation_data(verifier, stream: torch.Tensor, cfg: DistillConfig, out_path: Path,
                               resume: bool = True, progress: Callable[[int, int], None] | None = None
                               ) -> dict[int, torch.Tensor]:
    """Greedy verifier continuations of random corpus prompts, cached at `out_path`.

    Returns {prompt_len: LongTensor [N, prompt_len + continuation_len]}. Batches are
    generated round-robin over prompt lengths (one length per batch, so no padding) and
    saved after each batch; a resumed run continues where the file ends.
    """
    from transformers import DynamicCache

    out_path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[int, list[torch.Tensor]] = {p: [] for p in cfg.prompt_lens}
    done_batches = 0
    if resume and out_path.exists():
        saved = torch.load(out_path)
        done_batches = saved["batches"]
        for p, rows in saved["data"].items():
            data[p] = [rows]
    verifier.eval()
    t0 = time.monotonic()
    total_batches = cfg.max_examples // cfg.batch_size
    batch_idx = done_batches
    while batch_idx < total_batches:
        if cfg.budget_minutes is not None and time.monotonic() - t0 > cfg.budget_minutes * 60:
            break
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + batch_idx)
        prompt_len = cfg.prompt_lens[batch_idx % len(cfg.prompt_lens)]
        starts = torch.randint(0, stream.numel() - prompt_len, (cfg.batch_size,), generator=gen).tolist()
        prompts = torch.stack([stream[s : s + prompt_len] for s in starts])
        # Hand-rolled greedy loop: generate() would do the same with more per-call overhead.
        cache = DynamicCache(config=verifier.config)
        logits = verifier(input_ids=prompts, cache=cache, use_cache=True).logits[:, -1]
        out = [logits.argmax(-1)]
        for _ in range(cfg.continuation_len - 1):
            logits = verifier(input_ids=out[-1][:, None], cache=cache, use_cache=True).logits[:, -1]
            out.append(logits.argmax(-1))
        data[prompt_len].append(torch.cat([prompts, torch.stack(out, dim=1)], dim=1))
        batch_idx += 1
        merged = {p: torch.cat(rows) if rows else torch.empty(0, p + cfg.continuation_len, dtype=torch.long)
                  for p, rows in data.items()}
        data = {p: [rows] if rows.shape[0] else [] for p, rows in merged.items()}
        tmp = out_path.with_suffix(".tmp")
        torch.save({"batches": batch_idx, "data": merged}, tmp)
        tmp.replace(out_path)
        if progress:
            progress(batch_idx, total_batches)
    return {p: torch.cat(rows) if rows else torch.empty(0, p + cfg.continuation_len, dtype=torch.long)
            for p, rows in data.items()}
