"""The drafter recipe's settings (``DrafterRecipeConfig``): shapes, data sizes, budgets and seeds.

The defaults are sized for SmolLM2-135M-Instruct on one CPU thread in about 75 minutes (68 budgeted)
(`/work/shared/NOTES.md`, "A real verifier"): the verifier generates about 100 tokens/s in
batches of 32 in bfloat16, a hidden-64 two-layer drafter proposes a 16-token block for about
0.2 verifier steps, and its 49,152-row tied output layer is most of its parameters and compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from specdiff.cpu import FASTEST
from specdiff.drafts.ngram import ContextSeed
from specdiff.training.distill import GenerationPlan
from specdiff.training.lm import LMTrainConfig, TextShape
from specdiff.training.prompt_corpus import CorpusSizes

MAX_EXPORT_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class DrafterRecipeConfig:
    """The full recipe; `smoke()` derives the seconds-long variant the tests run."""

    drafter_shape: TextShape = TextShape(
        num_layers=2, hidden_size=64, intermediate_size=256, num_heads=4, num_kv_heads=2, head_dim=16,
        sliding_window=256, full_attention_every=2, num_experts=4, top_k_experts=2, moe_intermediate_size=64,
    )
    # A 32-token canvas: blocks past ~16 tokens are rarely all accepted from a drafter this small,
    # and each canvas position costs a pass over the 49,152-row output layer in training.
    canvas_length: int = 32
    corpus: CorpusSizes = CorpusSizes()
    max_prompt_tokens: int = 256
    raw_code_files: int = 300  # stdlib training files tokenized as raw code windows
    raw_share: float = 0.2  # of training batches drawn from raw code instead of distilled rows
    heldout: GenerationPlan = GenerationPlan(batch_size=16, sampled_share=0.0)
    distill: GenerationPlan = GenerationPlan(batch_size=64, sampled_share=0.25, temperature=0.7,
                                             budget_minutes=26.0)
    # The verifier's dtype while it writes training data; FASTEST: bfloat16 where this CPU multiplies
    # it natively (~2x faster generation, continuations that differ from float32's only at
    # near-ties), else float32 (emulated bfloat16 wrote ~15 tokens/s against float32's 47.7;
    # specdiff.cpu). Held-out targets use float32.
    distill_dtype: str = FASTEST
    embed_std: float = 0.05  # the projected verifier embedding's per-entry scale
    ar_train: LMTrainConfig = LMTrainConfig(batch_size=16, lr=3e-3, warmup_steps=40, budget_minutes=12.0,
                                            eval_every=100, checkpoint_every_s=60.0)
    drafter_train: LMTrainConfig = LMTrainConfig(batch_size=8, lr=2e-3, warmup_steps=40, budget_minutes=22.0,
                                                 eval_every=250, checkpoint_every_s=60.0)
    seeded_train: LMTrainConfig = LMTrainConfig(batch_size=8, lr=7e-4, warmup_steps=20, budget_minutes=8.0,
                                                eval_every=250, checkpoint_every_s=60.0)
    canvases_per_sequence: int = 4
    # The output layer's softmax over the targets plus this many drawn ids (None: all 49,152;
    # see specdiff.training.heads): about ten times cheaper a step here.
    sampled_negatives: int | None = 4096
    # Self-conditioning needs a full-vocabulary pass without gradients; decoding mostly runs one
    # denoising step, where it never applies, so a quarter of the steps train it.
    self_conditioning_prob: float = 0.25
    # The drafter's canvas convention (specdiff.drafts.diffusion_gemma, `next_token_canvas`): output i
    # predicts token i + 1, as the causal encoder whose weights it shares does. The first smol run
    # (canvas output i predicting token i) got prefix accuracy 0.03 at position 1 on held-out chat,
    # against the same-size AR drafter's 0.39.
    next_token_canvas: bool = True
    context_seed_prob: float = 0.5
    context_seed: ContextSeed = ContextSeed()
    raw_seq_len: int = 192
    heldout_eval_batches: int = 6
    # Canvas starts in each held-out continuation (the accuracy table), spread over the whole answer as a
    # decode's round starts are: an answer's first tokens are the easiest (the shipped smol drafter
    # accepts 0.62 of an 8-block at cut 0, 0.42 further in), so the earlier cuts (0, 16, 48) read 0.50
    # where decoding saw 0.42 (benchmarks/drafter_positions.py).
    eval_cuts: tuple[int, ...] = tuple(range(0, 128, 16))
    minutes_scale: float = 1.0
    include_tokenizer: bool = True  # save the verifier's tokenizer beside each exported model
    threads: int = 1
    seed: int = 0
    command: str = ""  # how the run was started, for the model card
    notes: dict = field(default_factory=dict)

    @property
    def budget_minutes(self) -> float:
        """The stage budgets summed, scaled (generation of held-out targets and evaluation not counted)."""
        trains = (self.ar_train, self.drafter_train, self.seeded_train)
        total = sum(c.budget_minutes or 0 for c in trains) + (self.distill.budget_minutes or 0)
        return total * self.minutes_scale

    def with_budget(self, minutes: float) -> DrafterRecipeConfig:
        """The same recipe with every budget scaled so the budgeted stages sum to ``minutes``."""
        unscaled = self.budget_minutes / self.minutes_scale
        return replace(self, minutes_scale=minutes / unscaled)

    def scaled(self, cfg: LMTrainConfig) -> LMTrainConfig:
        if cfg.budget_minutes is None:
            return cfg
        return replace(cfg, budget_minutes=cfg.budget_minutes * self.minutes_scale)

    def scaled_plan(self, plan: GenerationPlan) -> GenerationPlan:
        if plan.budget_minutes is None:
            return plan
        return replace(plan, budget_minutes=plan.budget_minutes * self.minutes_scale)

    @classmethod
    def smoke(cls, **overrides) -> DrafterRecipeConfig:
        tiny = LMTrainConfig(batch_size=2, warmup_steps=2, max_steps=4, budget_minutes=None, eval_every=2,
                             eval_batches=1, checkpoint_every_s=0.0)
        base = dict(
            drafter_shape=TextShape(num_layers=1, hidden_size=16, intermediate_size=32, num_heads=2, num_kv_heads=1,
                                    head_dim=8, sliding_window=16, num_experts=2, top_k_experts=1,
                                    moe_intermediate_size=8),
            canvas_length=8,
            corpus=CorpusSizes(train_chat=8, train_code=8, heldout_chat=2, heldout_code=2, max_files=12),
            max_prompt_tokens=48,
            raw_code_files=4,
            raw_seq_len=40,
            heldout=GenerationPlan(continuation_len=24, batch_size=4, sampled_share=0.0),
            distill=GenerationPlan(continuation_len=24, batch_size=4, sampled_share=0.5),
            distill_dtype="float32",
            ar_train=tiny, drafter_train=tiny, seeded_train=tiny,
            canvases_per_sequence=2,
            sampled_negatives=64,
            heldout_eval_batches=1,
            eval_cuts=(0, 8),
        )
        return cls(**{**base, **overrides})
