"""The drafter recipe's model card, written by its export stage from each stage's ``done.json``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from specdiff.training.drafter_config import DrafterRecipeConfig
from specdiff.training.stages import read_done

TRAINING = ("ar_drafter", "drafter", "drafter_seeded")
TABLE_PROPOSERS = ("drafter_1step", "drafter_2steps", "drafter_unseeded_1step", "ar_drafter", "context_lookup")


def _fmt(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def stage_times(out_dir: Path) -> str:
    """A markdown table of every stage's wall time."""
    from specdiff.training.drafter_recipe import STAGES

    lines = ["| stage | minutes |", "|---|---|"]
    total = 0.0
    for stage in STAGES:
        info = read_done(out_dir, stage)
        if info is not None and "stage_wall_s" in info:
            total += info["stage_wall_s"]
            lines.append(f"| {stage} | {info['stage_wall_s'] / 60:.1f} |")
    lines.append(f"| **total** (export excluded) | {total / 60:.1f} |")
    return "\n".join(lines)


def training_table(out_dir: Path) -> str:
    lines = ["| stage | parameters | steps | batch | final train loss | held-out loss | held-out metric |",
             "|---|---|---|---|---|---|---|"]
    for stage in TRAINING:
        info = read_done(out_dir, stage)
        if info is not None:
            lines.append(f"| {stage} | {info['params'] / 1e6:.2f}M | {info['steps']} | "
                         f"{info['train_config']['batch_size']} | {_fmt(info['final_train_loss'])} | "
                         f"{_fmt(info['final_heldout_loss'])} | {info['heldout_metric']} |")
    return "\n".join(lines)


def position_accuracy(out_dir: Path, positions: int = 16) -> str:
    """Per kind, prefix accuracy (what greedy verification accepts) by canvas position, per proposer."""
    frames = [pd.read_csv(p) for name in TABLE_PROPOSERS if (p := out_dir / "evaluate" / f"{name}.csv").exists()]
    if not frames:
        return "(not evaluated)"
    df = pd.concat(frames)
    df = df[df.position < positions]
    blocks = []
    for kind in sorted(df.kind.unique()):
        mine = df[df.kind == kind]
        header = "| proposer | " + " | ".join(str(i) for i in range(positions)) + " | accepted@8 | accepted@16 |"
        lines = [f"**{kind}** (prefix accuracy by canvas position; token accuracy in parentheses)", "", header,
                 "|---" * (positions + 3) + "|"]
        for name in TABLE_PROPOSERS:
            rows = mine[mine.proposer == name].sort_values("position")
            if rows.empty:
                continue
            cells = [f"{p:.2f} ({t:.2f})" for p, t in zip(rows.prefix_acc, rows.token_acc, strict=True)]
            acc8 = rows[rows.position < 8].prefix_acc.sum()
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {acc8:.2f} | {rows.prefix_acc.sum():.2f} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def model_card(cfg: DrafterRecipeConfig, out_dir: Path, verifier: str, sizes: dict[str, int]) -> str:
    corpus = read_done(out_dir, "corpus") or {}
    held, distilled = read_done(out_dir, "heldout_data") or {}, read_done(out_dir, "distill_data") or {}
    evaluated = read_done(out_dir, "evaluate") or {}
    mib = {name: f"{n / 2**20:.1f} MiB" for name, n in sizes.items()}
    s = cfg.drafter_shape
    shape = (f"{s.num_layers} layers, hidden {s.hidden_size}, MLP {s.intermediate_size}, {s.num_heads} heads / "
             f"{s.num_kv_heads} KV (head_dim {s.head_dim}), {s.num_experts} experts top-{s.top_k_experts}")
    loops = ", ".join(f"{k} {_fmt(held.get(f'{k}_loop_share', float('nan')), 2)}" for k in ("chat", "code"))
    return f"""# A DiffusionGemma drafter for `{Path(verifier).name}`

Trained by specdiff's drafter recipe (`specdiff drafter train`; docs/drafter_recipe.md) on one machine's
CPU, from the verifier's own continuations of an offline prompt corpus. It shares the verifier's
tokenizer and its vocabulary (the tokenizer is the verifier's: pass the verifier's folder,
or use the copy saved here when present).

| folder | class | size (float32) |
|---|---|---|
| `drafter/` | `DiffusionGemmaForBlockDiffusion`, canvas {cfg.canvas_length}, {shape} | {mib.get('drafter')} |
| `ar_drafter/` | `Gemma4ForCausalLM` of the same shape (assisted generation's assistant) | {mib.get('ar_drafter')} |

Both embedding tables started from the verifier's, projected onto its top {s.hidden_size} principal
directions; the output layers are tied to them. The drafter started from the trained AR drafter's
weights, and decodes with the encoder's first token and context-seeded canvases
(`{'seeded' if cfg.context_seed_prob > 0 else 'not seeded'}` by default: recorded in `config.json`).

Command: `{cfg.command or 'train_drafter_recipe(...)'}`

## Data

- Prompts: {corpus.get('train_chat')} chat instructions and {corpus.get('train_code')} code windows
  for training, {corpus.get('heldout_chat')} + {corpus.get('heldout_code')} held out (stdlib instruction
  corpus and stdlib files, split deterministically; the evals `chat` suite is held out and was checked
  absent from training). Raw code windows: {corpus.get('raw_code_tokens')} tokens.
- Distillation: {distilled.get('rows')} verifier continuations of {cfg.distill.continuation_len} tokens
  ({distilled.get('sampled_rows')} sampled at temperature {cfg.distill.temperature}, the rest greedy;
  {distilled.get('dtype')}), {distilled.get('verifier_tokens')} verifier tokens at
  {_fmt(distilled.get('verifier_tokens_per_s', float('nan')), 1)} tokens/s.
- Held-out targets: {held.get('rows')} float32 greedy continuations (verifier loop share: {loops}).

## Training (time by stage)

{stage_times(out_dir)}

{training_table(out_dir)}

## Accuracy by canvas position against the verifier's greedy continuation (held-out prompts)

{evaluated.get('cases')} cases: cuts {evaluated.get('cuts')} into each held-out continuation. `accepted@k` is
the expected number of draft tokens greedy verification accepts from a k-token block (the sum of the
prefix accuracies); a round adds the verifier's own token. Verifier loop share: {loops}.

{position_accuracy(out_dir)}
"""
