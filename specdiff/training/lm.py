"""Causal-LM training for `Gemma4ForCausalLM`: the pocket verifier and the pocket AR drafter.

One loop, `train_causal_lm`, serves both: it draws batches from a `BatchSource` (a pure
function of the step number, so a resumed run sees exactly the batches it would have seen),
runs AdamW under a warmup + cosine schedule, evaluates held-out loss periodically, appends
to a loss CSV and checkpoints model, optimizer, step and RNG state atomically.

With a time budget the schedule runs on the clock: the cosine decays with the share of the
budget spent (training time accumulates across resumes), and the run stops when it is spent.
On a shared CPU whose speed swings several-fold this uses the budget fully where a step count
planned from an early measurement would overrun or stop early; the steps actually taken are
returned and recorded. Without a budget the schedule runs on `max_steps`.
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TextShape:
    """The shape of a Gemma 4 text stack (the knobs the pocket models vary)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 64
    sliding_window: int = 128
    full_attention_every: int = 4  # every n-th layer, and the last, attends globally
    num_experts: int = 0  # > 0 builds the MoE layout DiffusionGemma uses
    top_k_experts: int = 2
    moe_intermediate_size: int = 0

    @property
    def layer_types(self) -> list[str]:
        types = [
            "full_attention" if (i + 1) % self.full_attention_every == 0 else "sliding_attention"
            for i in range(self.num_layers)
        ]
        types[-1] = "full_attention"  # transformers forces it anyway
        return types


def text_config_kwargs(shape: TextShape, vocab_size: int, special_ids: dict[str, int]) -> dict:
    """`Gemma4TextConfig` keyword arguments for a tiny model, avoiding the library's big defaults."""
    moe = shape.num_experts > 0
    return dict(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        head_dim=shape.head_dim,
        global_head_dim=shape.head_dim,  # default 512 would dwarf a tiny model
        sliding_window=shape.sliding_window,
        layer_types=shape.layer_types,
        hidden_size_per_layer_input=0,  # default builds a 262,144-row per-layer table
        vocab_size_per_layer_input=vocab_size,
        num_kv_shared_layers=0,
        enable_moe_block=moe,
        attention_k_eq_v=moe,  # DiffusionGemma's encoder has this layout
        num_experts=shape.num_experts if moe else None,
        top_k_experts=shape.top_k_experts if moe else None,
        moe_intermediate_size=shape.moe_intermediate_size if moe else None,
        final_logit_softcapping=30.0,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        **special_ids,
    )


def build_causal_lm(shape: TextShape, vocab_size: int, special_ids: dict[str, int], seed: int):
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    config = Gemma4TextConfig(**text_config_kwargs(shape, vocab_size, special_ids))
    if shape.num_experts > 0:
        config._experts_implementation = "grouped_mm"  # 10x faster than batched_mm on CPU
    torch.manual_seed(seed)
    return Gemma4ForCausalLM(config)


@dataclass(frozen=True)
class LMTrainConfig:
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    max_steps: int = 100_000
    budget_minutes: float | None = None  # None: run max_steps
    eval_every: int = 250
    eval_batches: int = 8
    checkpoint_every_s: float = 120.0
    seed: int = 0


# A batch source maps a step number to (input_ids [B, T], labels [B, T]); labels use
# IGNORE_INDEX where no loss is wanted, and are NOT shifted (the model shifts).
BatchSource = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def random_windows(stream: torch.Tensor, batch_size: int, seq_len: int, seed: int) -> BatchSource:
    """Random `seq_len` windows of a flat token stream, a pure function of (seed, step)."""
    high = stream.numel() - seq_len

    def source(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, high, (batch_size,), generator=gen)
        ids = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
        return ids, ids.clone()

    return source


def mixed_source(sources: Sequence[tuple[float, BatchSource]], seed: int) -> BatchSource:
    """Pick one source per step with the given probabilities (deterministic per step)."""
    weights = [w for w, _ in sources]

    def source(step: int):
        rng = random.Random(seed * 7_919 + step)
        return rng.choices(sources, weights=weights)[0][1](step)

    return source


def eval_windows(stream: torch.Tensor, n_batches: int, batch_size: int, seq_len: int) -> list[torch.Tensor]:
    """Fixed, evenly spaced held-out windows (the same every evaluation)."""
    n = n_batches * batch_size
    starts = torch.linspace(0, stream.numel() - seq_len - 1, n).long().tolist()
    windows = torch.stack([stream[s : s + seq_len] for s in starts])
    return list(windows.split(batch_size))


@torch.no_grad()
def heldout_loss(model, batches: Sequence[torch.Tensor]) -> float:
    was_training = model.training
    model.eval()
    losses = [model(input_ids=ids, labels=ids).loss.item() for ids in batches]
    model.train(was_training)
    return float(sum(losses) / max(len(losses), 1))


def cosine_lr(step: int, progress: float, cfg: LMTrainConfig) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to `min_lr_ratio` as progress goes 0 -> 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, max(0.0, progress))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg: LMTrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def save_checkpoint(path: Path, model, optimizer, state: dict) -> None:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        **state,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: an interruption leaves the previous checkpoint intact


def load_checkpoint(path: Path, model, optimizer) -> dict:
    payload = torch.load(path, weights_only=False)
    model.load_state_dict(payload.pop("model"))
    optimizer.load_state_dict(payload.pop("optimizer"))
    torch.set_rng_state(payload.pop("torch_rng"))
    random.setstate(payload.pop("python_rng"))
    return payload


class LossLog:
    """Append-only CSV of training progress (survives resumes)."""

    FIELDS = ("step", "tokens", "lr", "train_loss", "heldout_loss", "elapsed_s")

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            with path.open("w", newline="") as f:
                csv.writer(f).writerow(self.FIELDS)

    def write(self, **row) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.FIELDS])

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after the checkpoint a resumed run restarts from."""
        with self.path.open() as f:
            rows = list(csv.DictReader(f))
        with self.path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            for r in rows:
                if int(r["step"]) <= step:
                    w.writerow([r[k] for k in self.FIELDS])


@dataclass(frozen=True)
class TrainResult:
    steps: int
    tokens: int
    final_train_loss: float
    final_heldout_loss: float
    elapsed_s: float
    resumed_from_step: int

    def as_dict(self) -> dict:
        return asdict(self)


ProgressFn = Callable[[int, int, int, dict], None]  # (step, done, total, metrics)


def train_causal_lm(
    model,
    source: BatchSource,
    eval_batches: Sequence[torch.Tensor],
    cfg: LMTrainConfig,
    work_dir: Path,
    resume: bool = True,
    loss_fn: Callable | None = None,
    eval_fn: Callable | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train `model` in place; checkpoints and `loss.csv` go to `work_dir`.

    `loss_fn(model, input_ids, labels) -> loss` replaces the plain LM loss (the diffusion
    drafter reuses this loop with its own objective), `eval_fn(model, eval_batches) -> float`
    the held-out plain LM loss. `progress` is called after every step; an exception raised
    there interrupts training like a crash would (the last checkpoint survives).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "checkpoint.pt"
    log = LossLog(work_dir / "loss.csv")
    optimizer = make_optimizer(model, cfg)
    loss_fn = loss_fn or (lambda m, ids, labels: m(input_ids=ids, labels=labels).loss)
    eval_fn = eval_fn or heldout_loss

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    step, elapsed, tokens, train_loss_ema = 0, 0.0, 0, float("nan")
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, model, optimizer)
        step, elapsed, tokens = state["step"], state["elapsed_s"], state["tokens"]
        train_loss_ema = state.get("train_loss_ema", float("nan"))
        log.truncate_after(step)
    resumed_from = step
    budget_s = None if cfg.budget_minutes is None else cfg.budget_minutes * 60

    model.train()
    last_ckpt = time.monotonic()
    t_start = time.monotonic() - elapsed  # training time carried over from before a resume
    ho = float("nan")

    def spent() -> float:
        return time.monotonic() - t_start

    def progress_share() -> float:
        return spent() / budget_s if budget_s else step / cfg.max_steps

    def checkpoint():
        state = dict(step=step, elapsed_s=spent(), tokens=tokens, train_loss_ema=train_loss_ema)
        save_checkpoint(ckpt_path, model, optimizer, state)

    while step < cfg.max_steps and (budget_s is None or spent() < budget_s):
        lr = cosine_lr(step, progress_share(), cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        ids, labels = source(step)
        loss = loss_fn(model, ids, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        tokens += int((labels != IGNORE_INDEX).sum())
        val = loss.item()
        train_loss_ema = val if math.isnan(train_loss_ema) else 0.95 * train_loss_ema + 0.05 * val

        is_last = step >= cfg.max_steps or (budget_s is not None and spent() >= budget_s)
        ho = float("nan")
        if step % cfg.eval_every == 0 or is_last:
            ho = eval_fn(model, eval_batches) if eval_batches else float("nan")
        if step % 10 == 0 or is_last or not math.isnan(ho):
            log.write(
                step=step,
                tokens=tokens,
                lr=f"{lr:.3e}",
                train_loss=f"{train_loss_ema:.4f}",
                heldout_loss="" if math.isnan(ho) else f"{ho:.4f}",
                elapsed_s=f"{spent():.1f}",
            )
        if progress:
            # Bars count budget seconds when time-budgeted, steps otherwise.
            done, total = (int(spent()), int(budget_s)) if budget_s else (step, cfg.max_steps)
            progress(step, done, total, dict(loss=train_loss_ema, heldout=ho, lr=lr))
        if time.monotonic() - last_ckpt > cfg.checkpoint_every_s or is_last:
            checkpoint()
            last_ckpt = time.monotonic()

    if math.isnan(ho):
        ho = eval_fn(model, eval_batches) if eval_batches else float("nan")
    return TrainResult(
        steps=step,
        tokens=tokens,
        final_train_loss=train_loss_ema,
        final_heldout_loss=ho,
        elapsed_s=time.monotonic() - t_start,
        resumed_from_step=resumed_from,
    )
