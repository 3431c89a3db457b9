"""The pocket pair's model card, written by the recipe's export stage from each stage's ``done.json``."""

from __future__ import annotations

from pathlib import Path

from specdiff.training.lm import TextShape
from specdiff.training.pocket_config import PocketConfig
from specdiff.training.stages import read_done


def _fmt(x, digits=3):
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def model_card(cfg: PocketConfig, out_dir: Path, sizes: dict[str, int]) -> str:
    from specdiff.training.diffusion import DiffusionObjective

    tok = read_done(out_dir, "tokenizer")
    obj = DiffusionObjective(canvas_length=cfg.canvas_length)
    stages = {s: read_done(out_dir, s) for s in ("verifier", "ar_drafter_lm", "ar_drafter", "drafter",
                                                  "drafter_seeded")}
    lookup = cfg.context_seed
    distill = read_done(out_dir, "distill_data")

    def shape(s: TextShape) -> str:
        moe = ""
        if s.num_experts:
            moe = f", {s.num_experts} experts top-{s.top_k_experts} (moe {s.moe_intermediate_size})"
        return (f"{s.num_layers} layers, hidden {s.hidden_size}, MLP {s.intermediate_size}, {s.num_heads} heads "
                f"/ {s.num_kv_heads} KV, head_dim {s.head_dim}, sliding window {s.sliding_window}, "
                f"full attention every {s.full_attention_every}th layer and last{moe}")

    rows = []
    for name, info in stages.items():
        if info is None:
            continue
        tc = info["train_config"]
        rows.append(
            f"| {name} | {info['params'] / 1e6:.2f}M | {info['steps']} | {tc['batch_size']} | "
            f"{info.get('canvas_tokens', info['tokens']):,} | "
            f"{info['elapsed_s'] / 60:.1f} | {_fmt(info['final_train_loss'])} | {_fmt(info['final_heldout_loss'])} |"
        )
    mib = {name: f"{n / 2**20:.1f} MiB" for name, n in sizes.items()}
    heldout_list = ", ".join(f"`{f}`" for f in tok["heldout_file_list"])
    return f"""# specdiff pocket pair

Tiny models of the real architectures, trained on one CPU machine (2 cores) on the Python
standard library's own sources, shipped so `specdiff` runs offline with no download.
They are for measuring speculative decoding (acceptance, round costs), not for writing code.

| folder | class | size on disk (bfloat16) |
|---|---|---|
| `verifier/` | `Gemma4ForCausalLM` | {mib.get('verifier')} |
| `drafter/` | `DiffusionGemmaForBlockDiffusion` (canvas {cfg.canvas_length}) | {mib.get('drafter')} |
| `ar_drafter/` | `Gemma4ForCausalLM` (drafter's shape; assistant baseline) | {mib.get('ar_drafter')} |

Weights are stored in bfloat16; load with `dtype=torch.float32` to compute in float32.
Each folder carries the same tokenizer (`AutoTokenizer.from_pretrained(folder)`).

## Corpus and split
- Source: the stdlib of CPython at `{tok['stdlib_root']}` (`sysconfig.get_paths()["stdlib"]`),
  `.py` files only, skipping `site-packages`, test directories (`test`, `tests`, `idle_test`),
  `test_*.py`, `turtledemo`, `ensurepip`, `pydoc_data/topics.py`. Decoded as UTF-8 with
  `errors="replace"`; documents are whole files separated by `<eos>`.
- Split (`specdiff.training.corpus`): a file is held out when the first 8 bytes of SHA-256 of its
  stdlib-relative path, mod 1000, are below 50 (about 5%). Held out: {tok['heldout_files']} files,
  {tok['heldout_tokens']:,} tokens; training: {tok['train_files']} files, {tok['train_tokens']:,} tokens.
  Held-out files never reach any training stage (tokenizer included).
- Held-out files: {heldout_list}.
- Tokenizer: byte-level BPE, vocabulary {tok['vocab_size']}, special tokens `<pad>`=0, `<bos>`=1,
  `<eos>`=2, `<unk>`=3.

## Models
- Verifier: {shape(cfg.verifier_shape)}.
- Drafters: {shape(cfg.drafter_shape)}. The diffusion drafter's encoder and decoder share these
  weights (plus the decoder's self-conditioning MLP); it starts from the distilled AR drafter.

## Training (seed {cfg.seed}; time-budgeted stages, the steps they took below)
| stage | params | steps | batch (sequences) | tokens (drafter: canvas tokens) | minutes | final train loss (EMA) \
| final held-out loss |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

- verifier / ar_drafter_lm: causal LM loss on random 256-token windows of the training stream,
  AdamW (betas 0.9/0.95, weight decay 0.1), warmup then cosine to 10% of peak, gradient clip 1.
- distillation data: {distill['examples'] if distill else '?'} greedy verifier continuations of
  {cfg.distill_continuation_len} tokens after random training prompts of {', '.join(map(str, cfg.prompt_lens))} tokens
  (4-gram loop share of the continuations: {_fmt(distill['loop_share']) if distill else '?'}).
- ar_drafter: ar_drafter_lm fine-tuned with {cfg.distilled_share:.0%} of batches on those continuations
  (loss on the continuation only), the rest raw windows.
- drafter (DiffusionGemma objective): prompt through the causal encoder into the KV cache, canvas =
  the next {cfg.canvas_length} tokens ({obj.canvases_per_sequence} canvases at random cut points
  of each sequence share one encoder pass, each masked to its own prefix); per canvas noise
  t = 1 with probability {obj.pure_noise_prob}, else U({obj.min_noise}, 1);
  each canvas position replaced by a uniform random token with probability t, except that
  {obj.anchor_prob:.0%} of canvases keep their first position clean (the draft engine puts the encoder's
  next-token prediction there); loss = CE over all canvas positions, position i weighted
  exp(-i / {obj.position_decay}) (a draft token counts only when every earlier one is accepted),
  + {obj.encoder_loss_weight} x encoder causal LM loss (the engine drafts the first token from it);
  self-conditioning on {obj.self_conditioning_prob:.0%} of steps; routers
  frozen; {cfg.distilled_share:.0%} of examples are distilled verifier continuations. Its held-out
  loss is the position-weighted canvas CE of one denoising step from pure noise (no
  self-conditioning) after a {max(cfg.prompt_lens)}-token held-out prompt. Raw examples are
  {cfg.drafter_raw_seq_len}-token windows with canvases cut after at least {min(cfg.prompt_lens)} tokens;
  distilled canvases start inside the verifier's continuation (its greedy continuation of any
  longer prefix is the rest of it).
- drafter_seeded: the drafter, trained further on the same mix and objective except that
  {cfg.context_seed_prob:.0%} of the canvases whose prefix has a recurring n-gram start from the context
  lookup's guess instead of a corrupted target (`specdiff.drafts.ngram`: what followed the most
  recent earlier occurrence of the prefix's last {lookup.max_ngram} down to {lookup.min_ngram} tokens, copied on
  past the end), as the draft engine's canvas does with `context_seed` on; the target is still
  the true continuation, so the decoder learns to keep a right guess and overwrite a wrong one.
  The exported drafter's `config.json` records the lookup (`specdiff_context_seed`), so
  `DiffusionGemmaDrafter.from_pretrained` seeds its canvases by default.

Loss curves: `loss.png` / `loss.csv` in each folder (the drafter's seeded stage:
`loss_seeded.png` / `loss_seeded.csv`).

## Reproduce
```
specdiff pocket train --out .pocket_run{f" --minutes-scale {cfg.minutes_scale:g}" if cfg.minutes_scale != 1 else ""}
```
About {cfg.budget_minutes:.0f} minutes of stage budgets on 2 CPU cores; interrupted runs resume.
Stages are time-budgeted (the cosine schedule follows the share of the budget spent), so step
counts depend on the machine's speed; the counts above are what this export used.
"""
