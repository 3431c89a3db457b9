"""The pocket recipe's settings: shapes, budgets and seeds of every stage (``PocketConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from specdiff.drafts.ngram import ContextSeed
from specdiff.loaders import POCKET_DIR
from specdiff.training.lm import LMTrainConfig, TextShape

MAX_EXPORT_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class PocketConfig:
    """The full recipe; `smoke()` derives the seconds-long variant the tests run."""

    # Deep and narrow: decoding cost on CPU is mostly per-layer call overhead (~1.1 ms a layer
    # measured), so 20 layers cost several drafter denoising steps per token, while training
    # costs only ~5.6M parameters' worth: the shared 2 cores see ~2x the tokens an 18-layer
    # h192 model (10.7M) would in the same time, and tokens decide quality here.
    verifier_shape: TextShape = TextShape(
        num_layers=20, hidden_size=128, intermediate_size=512, head_dim=32, full_attention_every=5
    )
    drafter_shape: TextShape = TextShape(
        num_layers=2, hidden_size=128, intermediate_size=256, head_dim=32,
        num_experts=4, top_k_experts=2, moe_intermediate_size=64,
    )
    canvas_length: int = 64
    vocab_size: int = 4096
    verifier_train: LMTrainConfig = LMTrainConfig(
        seq_len=256, batch_size=8, lr=2e-3, warmup_steps=60, budget_minutes=52.0, eval_every=200
    )
    ar_drafter_train: LMTrainConfig = LMTrainConfig(
        seq_len=256, batch_size=16, lr=3e-3, warmup_steps=50, budget_minutes=7.8, eval_every=200
    )
    ar_distill_train: LMTrainConfig = LMTrainConfig(
        seq_len=256, batch_size=16, lr=1e-3, warmup_steps=20, budget_minutes=2.6, eval_every=100
    )
    drafter_train: LMTrainConfig = LMTrainConfig(
        batch_size=8, lr=1e-3, warmup_steps=50, budget_minutes=29.9, eval_every=200
    )  # 8 sequences x 4 canvases x 64 = 2,048 canvas tokens a step
    seeded_train: LMTrainConfig = LMTrainConfig(
        batch_size=8, lr=5e-4, warmup_steps=20, budget_minutes=15.0, eval_every=200
    )
    context_seed_prob: float = 0.5  # of the seeded stage's canvases whose context has a recurring n-gram
    context_seed: ContextSeed = ContextSeed()  # the lookup it trains with, recorded in the export
    distill_minutes: float = 6.5
    distill_continuation_len: int = 128  # 2 canvases long: drafter canvases start at many cuts
    drafter_raw_seq_len: int = 320  # raw drafter examples: canvases cut after >= min(prompt_lens)
    distill_batch_size: int = 64  # per-call overhead dominates: wide batches are nearly free
    distill_max_examples: int = 20_000
    distilled_share: float = 0.85  # of drafter examples; the rest are raw corpus windows
    prompt_lens: tuple[int, ...] = (32, 64, 128, 192)
    heldout_eval_batches: int = 8
    minutes_scale: float = 1.0
    max_files: int | None = None  # a slice of the corpus (tests)
    seed: int = 0
    export_dir: Path = POCKET_DIR

    @property
    def budget_minutes(self) -> float:
        """The recipe's stage budgets summed, scaled (stages without a budget count 0)."""
        trains = (self.verifier_train, self.ar_drafter_train, self.ar_distill_train, self.drafter_train,
                  self.seeded_train)
        return (sum(c.budget_minutes or 0 for c in trains) + (self.distill_minutes or 0)) * self.minutes_scale

    def scaled(self, cfg: LMTrainConfig) -> LMTrainConfig:
        if cfg.budget_minutes is None:
            return cfg
        return replace(cfg, budget_minutes=cfg.budget_minutes * self.minutes_scale)

    @classmethod
    def smoke(cls, export_dir: Path, **overrides) -> PocketConfig:
        tiny_lm = LMTrainConfig(seq_len=32, batch_size=2, warmup_steps=2, max_steps=4, budget_minutes=None,
                                eval_every=2, eval_batches=1, checkpoint_every_s=0.0)
        base = dict(
            verifier_shape=TextShape(num_layers=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                     num_kv_heads=1, head_dim=16, sliding_window=16),
            drafter_shape=TextShape(num_layers=1, hidden_size=32, intermediate_size=64, num_heads=2,
                                    num_kv_heads=1, head_dim=16, sliding_window=16, num_experts=2,
                                    top_k_experts=1, moe_intermediate_size=16),
            canvas_length=8,
            vocab_size=300,
            verifier_train=replace(tiny_lm, max_steps=6),
            ar_drafter_train=tiny_lm,
            ar_distill_train=tiny_lm,
            drafter_train=tiny_lm,
            seeded_train=tiny_lm,
            distill_minutes=None,
            distill_continuation_len=16,
            drafter_raw_seq_len=32,
            distill_batch_size=2,
            distill_max_examples=4,
            prompt_lens=(8, 16),
            heldout_eval_batches=1,
            max_files=12,
            export_dir=export_dir,
        )
        return cls(**{**base, **overrides})
