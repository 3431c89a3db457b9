"""The pocket pair: tiny real-architecture models trained here on the stdlib's own sources.

`train_pocket` runs the recipe as stages, each checkpointed under `out_dir` and skipped once
its `done.json` exists:

1. tokenizer     byte-level BPE on the training files; token streams for train and held-out
2. verifier      `Gemma4ForCausalLM`, causal LM loss (the longest stage)
3. ar_drafter_lm `Gemma4ForCausalLM` of the drafter's shape (MoE layout), causal LM loss
4. distill_data  greedy verifier continuations of random training prompts
5. ar_drafter    the AR drafter, briefly distilled on those continuations (shipped as the
                 baseline for transformers' assisted generation)
6. drafter       `DiffusionGemmaForBlockDiffusion` started from the AR drafter, uniform-noise
                 objective, mostly on distilled canvases
7. drafter_seeded the drafter, further trained with a share of canvases starting from the
                 context lookup's guess (`specdiff.drafts.ngram`), as with `context_seed` on
8. export        bfloat16 transformers folders + tokenizer + model card under `export_dir`

Time budgets become step counts once per stage (see `verifiers.training`); the step counts
land in each stage's `done.json` and in the model card, and all seeds are fixed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from specdiff.drafts.ngram import CONFIG_KEY, ContextSeed
from specdiff.metrics import loop_share as share_of_loops
from specdiff.verifiers.training import LMTrainConfig, TextShape

POCKET_DIR = Path(__file__).resolve().parent / "pocket_models"
MAX_EXPORT_BYTES = 40 * 1024 * 1024

STAGES = ("tokenizer", "verifier", "ar_drafter_lm", "distill_data", "ar_drafter", "drafter", "drafter_seeded",
          "export")


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


StepHook = Callable[[str, int], None]  # (stage, step); raising interrupts that stage


# ---------------------------------------------------------------------------------------------
# Stage bookkeeping


def _done_path(out_dir: Path, stage: str) -> Path:
    return out_dir / stage / "done.json"


def _read_done(out_dir: Path, stage: str) -> dict | None:
    path = _done_path(out_dir, stage)
    return json.loads(path.read_text()) if path.exists() else None


def _mark_done(out_dir: Path, stage: str, info: dict) -> dict:
    path = _done_path(out_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, default=str))
    return info


class _Progress:
    """Rich progress bars, one per stage, plus a plain log line at each held-out evaluation."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.bar = Progress(
            TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=self.console,
        )

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def log(self, msg: str) -> None:
        self.bar.console.log(msg)

    def stage(self, name: str, hook: StepHook | None):
        task = self.bar.add_task(name, total=None, info="")

        def update(step: int, done: int, total: int, metrics: dict) -> None:
            info = f"step {step}  loss {metrics['loss']:.3f}"
            if metrics.get("heldout") == metrics.get("heldout"):  # not NaN: an evaluation ran
                info += f"  held-out {metrics['heldout']:.3f}"
                self.log(f"{name} step {step} loss {metrics['loss']:.4f} held-out {metrics['heldout']:.4f}")
            self.bar.update(task, completed=done, total=total, info=info)
            if hook:
                hook(name, step)

        return update


def plot_losses(csv_path: Path, png_path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(df["step"], df["train_loss"], label="train (EMA)")
    ho = df.dropna(subset=["heldout_loss"])
    if len(ho):
        ax.plot(ho["step"], ho["heldout_loss"], "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Stages


def _special_ids(tokenizer) -> dict[str, int]:
    return dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


def _stage_tokenizer(cfg: PocketConfig, out_dir: Path) -> dict:
    import torch

    from specdiff import corpus

    train, heldout = corpus.train_files(), corpus.heldout_files()
    if cfg.max_files is not None:
        train, heldout = train[: cfg.max_files], heldout[: max(2, cfg.max_files // 4)]
    stage_dir = out_dir / "tokenizer"
    tok = corpus.train_tokenizer(train, stage_dir / "tokenizer", vocab_size=cfg.vocab_size)
    dtype = torch.int16 if len(tok) < 32768 else torch.int32
    train_ids = torch.tensor(corpus.encode_documents(tok, train), dtype=dtype)
    heldout_ids = torch.tensor(corpus.encode_documents(tok, heldout), dtype=train_ids.dtype)
    torch.save({"train": train_ids, "heldout": heldout_ids}, stage_dir / "streams.pt")
    return dict(
        stdlib_root=str(corpus.stdlib_root()),
        train_files=len(train),
        heldout_files=len(heldout),
        heldout_file_list=heldout,
        train_tokens=int(train_ids.numel()),
        heldout_tokens=int(heldout_ids.numel()),
        vocab_size=len(tok),
    )


def _load_streams(out_dir: Path):
    import torch

    streams = torch.load(out_dir / "tokenizer" / "streams.pt")
    return streams["train"].long(), streams["heldout"].long()


def _load_tokenizer(out_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out_dir / "tokenizer" / "tokenizer")


def _train_lm_stage(name: str, cfg: PocketConfig, out_dir: Path, model, source, train_cfg: LMTrainConfig,
                    progress: _Progress, hook: StepHook | None, resume: bool) -> dict:
    from specdiff.verifiers.training import eval_windows, train_causal_lm

    _, heldout = _load_streams(out_dir)
    evals = eval_windows(heldout, cfg.heldout_eval_batches, train_cfg.batch_size, train_cfg.seq_len)
    stage_dir = out_dir / name
    result = train_causal_lm(model, source, evals, train_cfg, stage_dir, resume=resume,
                             progress=progress.stage(name, hook))
    model.save_pretrained(stage_dir / "model")
    plot_losses(stage_dir / "loss.csv", stage_dir / "loss.png", f"pocket {name}")
    n_params = sum(p.numel() for p in model.parameters())
    return dict(result.as_dict(), params=n_params, train_config=asdict(train_cfg),
                tokens_per_s=result.tokens / max(result.elapsed_s, 1e-9))


def _stage_verifier(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.verifiers.training import build_causal_lm, random_windows

    tok = _load_tokenizer(out_dir)
    train, _ = _load_streams(out_dir)
    tcfg = cfg.scaled(cfg.verifier_train)
    model = build_causal_lm(cfg.verifier_shape, len(tok), _special_ids(tok), seed=cfg.seed)
    source = random_windows(train, tcfg.batch_size, tcfg.seq_len, seed=cfg.seed + 1)
    return _train_lm_stage("verifier", cfg, out_dir, model, source, tcfg, progress, hook, resume)


def _stage_ar_drafter_lm(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.verifiers.training import build_causal_lm, random_windows

    tok = _load_tokenizer(out_dir)
    train, _ = _load_streams(out_dir)
    tcfg = cfg.scaled(cfg.ar_drafter_train)
    model = build_causal_lm(cfg.drafter_shape, len(tok), _special_ids(tok), seed=cfg.seed + 2)
    source = random_windows(train, tcfg.batch_size, tcfg.seq_len, seed=cfg.seed + 3)
    return _train_lm_stage("ar_drafter_lm", cfg, out_dir, model, source, tcfg, progress, hook, resume)


def _load_causal_lm(folder: Path):
    import torch
    from transformers import Gemma4ForCausalLM

    model = Gemma4ForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if getattr(model.config, "enable_moe_block", False):
        model.config._experts_implementation = "grouped_mm"
    return model


def _stage_distill_data(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.drafts.training import DistillConfig, generate_distillation_data

    train, _ = _load_streams(out_dir)
    verifier = _load_causal_lm(out_dir / "verifier" / "model")
    minutes = None if cfg.distill_minutes is None else cfg.distill_minutes * cfg.minutes_scale
    dcfg = DistillConfig(prompt_lens=cfg.prompt_lens, continuation_len=cfg.distill_continuation_len,
                         batch_size=cfg.distill_batch_size, max_examples=cfg.distill_max_examples,
                         budget_minutes=minutes, seed=cfg.seed + 4)
    task = progress.bar.add_task("distill_data", total=None, info="")
    t0 = time.monotonic()

    def update(done: int, total: int) -> None:
        progress.bar.update(task, completed=done, total=total, info=f"{done * dcfg.batch_size} continuations")

    data = generate_distillation_data(verifier, train, dcfg, out_dir / "distill_data" / "data.pt",
                                      resume=resume, progress=update)
    n = sum(int(rows.shape[0]) for rows in data.values())
    continuations = [row.tolist() for rows in data.values() for row in rows[:, -dcfg.continuation_len:]]
    loop_share = sum(map(share_of_loops, continuations)) / max(len(continuations), 1)
    return dict(examples=n, per_prompt_len={p: int(r.shape[0]) for p, r in data.items()},
                continuation_len=dcfg.continuation_len, elapsed_s=time.monotonic() - t0,
                loop_share=loop_share, config=asdict(dcfg))


def _load_distill(out_dir: Path):
    import torch

    return torch.load(out_dir / "distill_data" / "data.pt")["data"]


def _stage_ar_drafter(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.drafts.training import distilled_examples
    from specdiff.verifiers.training import mixed_source, random_windows

    train, _ = _load_streams(out_dir)
    tcfg = cfg.scaled(cfg.ar_distill_train)
    model = _load_causal_lm(out_dir / "ar_drafter_lm" / "model")
    source = mixed_source(
        [
            (cfg.distilled_share, distilled_examples(_load_distill(out_dir), tcfg.batch_size, seed=cfg.seed + 5)),
            (1 - cfg.distilled_share, random_windows(train, tcfg.batch_size, tcfg.seq_len, seed=cfg.seed + 6)),
        ],
        seed=cfg.seed + 7,
    )
    return _train_lm_stage("ar_drafter", cfg, out_dir, model, source, tcfg, progress, hook, resume)


def _train_drafter(cfg: PocketConfig, out_dir: Path, progress, hook, resume: bool, stage: str, drafter,
                   tcfg: LMTrainConfig, obj, seed: int) -> dict:
    """Train `drafter` under `obj` on the drafter mix (distilled continuations + raw windows)."""
    from specdiff.drafts.training import diffusion_loss, distilled_examples, first_step_loss, raw_examples
    from specdiff.verifiers.training import mixed_source, train_causal_lm

    train, heldout = _load_streams(out_dir)
    source = mixed_source(
        [
            (cfg.distilled_share, distilled_examples(_load_distill(out_dir), tcfg.batch_size, seed=seed + 1)),
            (1 - cfg.distilled_share,
             raw_examples(train, tcfg.batch_size, min(cfg.prompt_lens), cfg.drafter_raw_seq_len, seed=seed + 2)),
        ],
        seed=seed + 3,
    )
    prompt = max(cfg.prompt_lens)
    heldout_source = raw_examples(heldout, tcfg.batch_size, prompt, prompt + cfg.canvas_length, seed=99)
    evals = [heldout_source(i) for i in range(cfg.heldout_eval_batches)]
    stage_dir = out_dir / stage
    result = train_causal_lm(
        drafter, source, evals, tcfg, stage_dir, resume=resume,
        loss_fn=lambda m, ids, labels: diffusion_loss(m, ids, labels, obj),
        eval_fn=lambda m, batches: first_step_loss(m, batches, obj),
        progress=progress.stage(stage, hook),
    )
    drafter.save_pretrained(stage_dir / "model")
    plot_losses(stage_dir / "loss.csv", stage_dir / "loss.png", f"pocket diffusion drafter ({stage})")
    canvas_tokens = result.steps * tcfg.batch_size * obj.canvases_per_sequence * obj.canvas_length
    return dict(result.as_dict(), params=sum(p.numel() for p in drafter.parameters()),
                train_config=asdict(tcfg), objective=asdict(obj), canvas_tokens=canvas_tokens,
                canvas_tokens_per_s=canvas_tokens / max(result.elapsed_s, 1e-9),
                heldout_metric=f"first-denoising-step canvas CE from pure noise, prompt {prompt} tokens")


def _stage_drafter(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.drafts.training import DiffusionObjective, build_drafter, freeze_routers, load_ar_weights

    tok = _load_tokenizer(out_dir)
    drafter = build_drafter(cfg.drafter_shape, len(tok), _special_ids(tok), cfg.canvas_length, seed=cfg.seed + 8)
    load_ar_weights(drafter, _load_causal_lm(out_dir / "ar_drafter" / "model"))
    freeze_routers(drafter)
    obj = DiffusionObjective(canvas_length=cfg.canvas_length)
    return _train_drafter(cfg, out_dir, progress, hook, resume, "drafter", drafter, cfg.scaled(cfg.drafter_train),
                          obj, seed=cfg.seed + 8)


def _load_drafter(folder: Path):
    import torch
    from transformers import DiffusionGemmaForBlockDiffusion

    # grouped_mm trains 10x faster than batched_mm on CPU
    return DiffusionGemmaForBlockDiffusion.from_pretrained(folder, dtype=torch.float32,
                                                           experts_implementation="grouped_mm")


def _stage_drafter_seeded(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.drafts.training import DiffusionObjective, freeze_routers

    drafter = _load_drafter(out_dir / "drafter" / "model")
    freeze_routers(drafter)
    obj = DiffusionObjective(canvas_length=cfg.canvas_length, context_seed_prob=cfg.context_seed_prob,
                             context_seed=cfg.context_seed)
    return _train_drafter(cfg, out_dir, progress, hook, resume, "drafter_seeded", drafter,
                          cfg.scaled(cfg.seeded_train), obj, seed=cfg.seed + 20)


def _stage_export(cfg, out_dir, progress, hook, resume) -> dict:
    import shutil

    import torch

    tok = _load_tokenizer(out_dir)
    export = cfg.export_dir
    sources = {
        "verifier": (_load_causal_lm, out_dir / "verifier" / "model"),
        "ar_drafter": (_load_causal_lm, out_dir / "ar_drafter" / "model"),
        "drafter": (_load_drafter, out_dir / "drafter_seeded" / "model"),
    }
    sizes = {}
    for name, (load, folder) in sources.items():
        target = export / name
        if target.exists():
            shutil.rmtree(target)
        model = load(folder).to(torch.bfloat16)
        gen = model.generation_config
        gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tok.eos_token_id, tok.pad_token_id, tok.bos_token_id
        if name == "drafter" and cfg.context_seed_prob > 0:  # trained for seeded canvases: seed by default
            setattr(model.config, CONFIG_KEY, asdict(cfg.context_seed))
        model.save_pretrained(target, safe_serialization=True)
        tok.save_pretrained(target)
        sizes[name] = sum(f.stat().st_size for f in target.iterdir())
        stages = {"verifier": ("verifier",), "ar_drafter": ("ar_drafter",), "drafter": ("drafter", "drafter_seeded")}
        for stage in stages[name]:
            suffix = "" if stage == name else f"_{stage.removeprefix(name + '_')}"  # drafter_seeded: loss_seeded.*
            for ext in ("png", "csv"):
                if (out_dir / stage / f"loss.{ext}").exists():
                    shutil.copy(out_dir / stage / f"loss.{ext}", target / f"loss{suffix}.{ext}")
    total = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    if total > MAX_EXPORT_BYTES:
        raise RuntimeError(f"pocket export is {total / 2**20:.1f} MiB, over the 40 MiB budget")
    (export / "README.md").write_text(model_card(cfg, out_dir, sizes))
    return dict(export_dir=str(export), bytes=sizes, total_bytes=total)


_STAGE_FNS = {
    "verifier": _stage_verifier,
    "ar_drafter_lm": _stage_ar_drafter_lm,
    "distill_data": _stage_distill_data,
    "ar_drafter": _stage_ar_drafter,
    "drafter": _stage_drafter,
    "drafter_seeded": _stage_drafter_seeded,
    "export": _stage_export,
}


def train_pocket(out_dir: Path, cfg: PocketConfig = PocketConfig(), resume: bool = True,
                 step_hook: StepHook | None = None) -> dict[str, dict]:
    """Run (or continue) the pocket recipe; returns each stage's `done.json` contents.

    With `resume=False` every stage starts from scratch (existing outputs are overwritten).
    `step_hook(stage, step)` runs after each training step; raising there interrupts the run.
    """
    import torch

    torch.set_num_threads(2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    results: dict[str, dict] = {}
    with _Progress() as progress:
        for stage in STAGES:
            done = _read_done(out_dir, stage) if resume else None
            if done is not None:
                progress.log(f"{stage}: done, skipped")
                results[stage] = done
                continue
            if not resume:
                for stale in (out_dir / stage).glob("*"):
                    if stale.is_file():
                        stale.unlink()
            t0 = time.monotonic()
            progress.log(f"{stage}: starting")
            if stage == "tokenizer":
                info = _stage_tokenizer(cfg, out_dir)
            else:
                info = _STAGE_FNS[stage](cfg, out_dir, progress, step_hook, resume)
            info["stage_wall_s"] = time.monotonic() - t0
            results[stage] = _mark_done(out_dir, stage, info)
            summary = {k: v for k, v in info.items() if isinstance(v, (int, float))}
            progress.log(f"{stage}: done {json.dumps(summary, default=str)}")
    return results


# ---------------------------------------------------------------------------------------------
# Model card


def _fmt(x, digits=3):
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def model_card(cfg: PocketConfig, out_dir: Path, sizes: dict[str, int]) -> str:
    from specdiff.drafts.training import DiffusionObjective

    tok = _read_done(out_dir, "tokenizer")
    obj = DiffusionObjective(canvas_length=cfg.canvas_length)
    stages = {s: _read_done(out_dir, s) for s in ("verifier", "ar_drafter_lm", "ar_drafter", "drafter",
                                                  "drafter_seeded")}
    lookup = cfg.context_seed
    distill = _read_done(out_dir, "distill_data")

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
- Split (`specdiff.corpus`): a file is held out when the first 8 bytes of SHA-256 of its
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
