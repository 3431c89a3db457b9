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
from dataclasses import asdict
from pathlib import Path

from specdiff.drafts.ngram import CONFIG_KEY
from specdiff.metrics import loop_share as share_of_loops
from specdiff.training.lm import LMTrainConfig
from specdiff.training.pocket_config import MAX_EXPORT_BYTES, PocketConfig
from specdiff.training.stages import Progress, StepHook, plot_losses, run_stages

STAGES = ("tokenizer", "verifier", "ar_drafter_lm", "distill_data", "ar_drafter", "drafter", "drafter_seeded",
          "export")






# ---------------------------------------------------------------------------------------------
# Stages


def _special_ids(tokenizer) -> dict[str, int]:
    return dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)


def _stage_tokenizer(cfg: PocketConfig, out_dir: Path) -> dict:
    import torch

    from specdiff.training import corpus

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
                    progress: Progress, hook: StepHook | None, resume: bool) -> dict:
    from specdiff.training.lm import eval_windows, train_causal_lm

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
    from specdiff.training.lm import build_causal_lm, random_windows

    tok = _load_tokenizer(out_dir)
    train, _ = _load_streams(out_dir)
    tcfg = cfg.scaled(cfg.verifier_train)
    model = build_causal_lm(cfg.verifier_shape, len(tok), _special_ids(tok), seed=cfg.seed)
    source = random_windows(train, tcfg.batch_size, tcfg.seq_len, seed=cfg.seed + 1)
    return _train_lm_stage("verifier", cfg, out_dir, model, source, tcfg, progress, hook, resume)


def _stage_ar_drafter_lm(cfg, out_dir, progress, hook, resume) -> dict:
    from specdiff.training.lm import build_causal_lm, random_windows

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
    from specdiff.training.diffusion import DistillConfig, generate_distillation_data

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
    from specdiff.training.diffusion import distilled_examples
    from specdiff.training.lm import mixed_source, random_windows

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
    from specdiff.training.diffusion import diffusion_loss, distilled_examples, first_step_loss, raw_examples
    from specdiff.training.lm import mixed_source, train_causal_lm

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
    from specdiff.training.diffusion import DiffusionObjective, build_drafter, freeze_routers, load_ar_weights

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
    from specdiff.training.diffusion import DiffusionObjective, freeze_routers

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
    from specdiff.training.pocket_card import model_card

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
    from specdiff.threads import threads_for

    with threads_for(2):
        return _train_pocket(out_dir, cfg, resume, step_hook)


def _train_pocket(out_dir: Path, cfg: PocketConfig, resume: bool, step_hook: StepHook | None) -> dict[str, dict]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    with Progress() as progress:

        def run(stage: str) -> dict:
            if stage == "tokenizer":
                return _stage_tokenizer(cfg, out_dir)
            return _STAGE_FNS[stage](cfg, out_dir, progress, step_hook, resume)

        return run_stages(out_dir, STAGES, run, progress, resume=resume)


# ---------------------------------------------------------------------------------------------
# Model card
