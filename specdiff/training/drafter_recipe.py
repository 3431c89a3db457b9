"""A DiffusionGemma drafter (and an AR drafter) for any transformers causal-LM verifier.

`train_drafter_recipe(verifier, out_dir, cfg)` runs the stages below, each checkpointed under
``out_dir`` and skipped once its ``done.json`` exists (training stages also resume mid-stage from
their checkpoint, generation stages from the last saved batch):

1. corpus         offline prompts (`prompt_corpus`): stdlib chat instructions and code windows, a
                  deterministic held-out split that excludes the evals chat suite; raw code windows
2. heldout_data   the verifier's float32 greedy continuations of the held-out prompts (targets of
                  every held-out loss and of the accuracy table)
3. distill_data   its continuations of the training prompts, greedy and sampled, batched
                  ``generate()`` with left padding, under a time budget (`distill`)
4. ar_drafter     a ``Gemma4ForCausalLM`` of the drafter's shape, embedding projected from the
                  verifier's, distilled with the causal LM loss: assisted generation's baseline
5. drafter        ``DiffusionGemmaForBlockDiffusion`` started from the AR drafter, block-diffusion
                  objective with the encoder's next-token loss (`specdiff.training.diffusion`)
6. drafter_seeded further training with context-seeded canvases, as ``context_seed`` decodes
7. evaluate       accuracy by canvas position against held-out greedy continuations (`drafter_eval`)
8. export         float32 folders ``drafter`` and ``ar_drafter`` with a model card (`drafter_card`)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from specdiff.cpu import FASTEST, bfloat16_speedup, resolve_dtype
from specdiff.drafts.ngram import CONFIG_KEY
from specdiff.errors import SpecdiffError
from specdiff.metrics import loop_share
from specdiff.training import distill as dist
from specdiff.training.drafter_config import MAX_EXPORT_BYTES, DrafterRecipeConfig
from specdiff.training.lm import LMTrainConfig
from specdiff.training.stages import Progress, StepHook, plot_losses, run_stages

STAGES = ("corpus", "heldout_data", "distill_data", "ar_drafter", "drafter", "drafter_seeded", "evaluate", "export")


@dataclass
class RecipeRun:
    """What every stage reads: the settings, the folders and the run's hooks."""

    cfg: DrafterRecipeConfig
    out_dir: Path
    verifier: str  # the verifier's folder or hub id
    progress: Progress
    hook: StepHook | None
    resume: bool
    export_dir: Path

    def verifier_model(self, dtype: str = "float32"):
        from specdiff.training.drafter_models import load_recipe_verifier

        return load_recipe_verifier(self.verifier, dtype=getattr(torch, dtype))

    def tokenizer(self):
        from specdiff.loading import load_tokenizer

        return load_tokenizer(self.verifier)


# ---------------------------------------------------------------------------------------------
# Data stages


def _stage_corpus(run: RecipeRun) -> dict:
    from specdiff.training import corpus as stdlib
    from specdiff.training.prompt_corpus import build_corpus, encode_prompt, save_corpus

    cfg, tok = run.cfg, run.tokenizer()
    prompts = build_corpus(cfg.corpus)
    save_corpus(prompts, run.out_dir / "corpus" / "prompts.jsonl")
    encoded = {split: [encode_prompt(tok, p, cfg.max_prompt_tokens) for p in items] for split, items in prompts.items()}
    kinds = {split: [p.kind for p in items] for split, items in prompts.items()}
    raw = stdlib.encode_documents(tok, stdlib.train_files()[: cfg.raw_code_files])
    torch.save({"ids": encoded, "kinds": kinds, "raw": torch.tensor(raw, dtype=torch.int32)},
               run.out_dir / "corpus" / "prompts.pt")
    counts = {f"{split}_{kind}": sum(k == kind for k in kinds[split]) for split in kinds for kind in ("chat", "code")}
    lengths = [len(ids) for ids in encoded["train"]]
    return dict(counts, raw_code_tokens=len(raw), mean_prompt_tokens=sum(lengths) / max(len(lengths), 1),
                excludes_chat_suite=True, sizes=asdict(cfg.corpus))


def _load_prompts(run: RecipeRun) -> dict:
    return torch.load(run.out_dir / "corpus" / "prompts.pt", weights_only=False)


def _load_rows(run: RecipeRun, stage: str) -> list[dist.DistilledRow]:
    return torch.load(run.out_dir / stage / "data.pt", weights_only=False)["rows"]


def _rows_info(rows: list[dist.DistilledRow], elapsed: float) -> dict:
    info: dict[str, Any] = dict(rows=len(rows), sampled_rows=sum(r.sampled for r in rows), elapsed_s=elapsed,
                                verifier_tokens=sum(r.valid_len for r in rows))
    info["verifier_tokens_per_s"] = info["verifier_tokens"] / max(elapsed, 1e-9)
    for kind in ("chat", "code"):
        mine = [r for r in rows if r.kind == kind]
        info[f"{kind}_rows"] = len(mine)
        if mine:  # the verifier's own loop share, beside every acceptance figure
            shares = [loop_share(r.continuation[: r.valid_len].tolist()) for r in mine]
            info[f"{kind}_loop_share"] = sum(shares) / len(shares)
            info[f"{kind}_mean_valid_len"] = sum(r.valid_len for r in mine) / len(mine)
    return info


def _generation_stage(run: RecipeRun, stage: str, split: str, plan: dist.GenerationPlan, dtype: str,
                      greedy_only: bool) -> dict:
    prompts = _load_prompts(run)
    model, tok = run.verifier_model(dtype)
    task = run.progress.bar.add_task(stage, total=None, info="")

    def update(done: int, total: int) -> None:
        run.progress.bar.update(task, completed=done, total=total, info=f"{done * plan.batch_size} prompts")
        if run.hook:
            run.hook(stage, done)

    t0 = time.monotonic()
    rows = dist.generate_rows(model, tok, prompts["ids"][split], prompts["kinds"][split], plan,
                              run.out_dir / stage / "data.pt", resume=run.resume, greedy_only=greedy_only,
                              progress=update)
    if not rows:
        raise SpecdiffError(f"{stage}: the verifier produced no rows; raise the stage's budget")
    return dict(_rows_info(rows, time.monotonic() - t0), dtype=dtype, plan=asdict(plan))


def _stage_heldout_data(run: RecipeRun) -> dict:
    return _generation_stage(run, "heldout_data", "heldout", run.cfg.heldout, "float32", greedy_only=True)


def _stage_distill_data(run: RecipeRun) -> dict:
    plan = run.cfg.scaled_plan(run.cfg.distill)
    info = _generation_stage(run, "distill_data", "train", plan, resolve_dtype(run.cfg.distill_dtype),
                             greedy_only=False)
    if run.cfg.distill_dtype == FASTEST:  # what the choice rested on
        info["bfloat16_speedup"] = bfloat16_speedup()
    return info


# ---------------------------------------------------------------------------------------------
# Training stages


def _heldout_batches(run: RecipeRun, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rows = [r for r in _load_rows(run, "heldout_data") if r.valid_len >= run.cfg.canvas_length + 1]
    groups = dist.length_batches([int(r.prompt.numel()) for r in rows], batch_size)
    return [dist.crop_batch([rows[i] for i in group]) for group in groups[: run.cfg.heldout_eval_batches]]


def _training_source(run: RecipeRun, batch_size: int, seed: int, raw_source) -> Any:
    from specdiff.training.lm import mixed_source

    rows = dist.row_batches(_load_rows(run, "distill_data"), batch_size, seed=seed, min_valid=run.cfg.canvas_length)
    return mixed_source([(1 - run.cfg.raw_share, rows), (run.cfg.raw_share, raw_source)], seed=seed + 1)


@torch.no_grad()
def masked_lm_loss(model, batches) -> float:
    """Mean causal LM loss over the supervised (continuation) tokens of ``(ids, labels)`` batches."""
    was_training = model.training
    model.eval()
    losses = [model(input_ids=ids, labels=labels).loss.item() for ids, labels in batches]
    model.train(was_training)
    return float(sum(losses) / max(len(losses), 1))


def _finish_training(run: RecipeRun, stage: str, model, result, tcfg: LMTrainConfig, **extra) -> dict:
    stage_dir = run.out_dir / stage
    model.save_pretrained(stage_dir / "model")
    plot_losses(stage_dir / "loss.csv", stage_dir / "loss.png", f"{stage} for {Path(run.verifier).name}")
    return dict(result.as_dict(), params=sum(p.numel() for p in model.parameters()), train_config=asdict(tcfg),
                **extra)


def _stage_ar_drafter(run: RecipeRun) -> dict:
    from specdiff.training.drafter_models import build_recipe_models, init_embedding, verifier_vocab
    from specdiff.training.heads import causal_lm_loss
    from specdiff.training.lm import random_windows, train_causal_lm

    cfg = run.cfg
    verifier, tok = run.verifier_model()
    ar, _ = build_recipe_models(cfg.drafter_shape, verifier_vocab(verifier), tok, cfg.canvas_length, cfg.seed)
    init_embedding(ar, verifier, cfg.embed_std)
    del verifier
    tcfg = cfg.scaled(cfg.ar_train)
    raw = random_windows(_load_prompts(run)["raw"].long(), tcfg.batch_size, cfg.raw_seq_len, seed=cfg.seed + 3)
    source = _training_source(run, tcfg.batch_size, cfg.seed + 4, raw)
    result = train_causal_lm(ar, source, _heldout_batches(run, tcfg.batch_size), tcfg, run.out_dir / "ar_drafter",
                             resume=run.resume, eval_fn=masked_lm_loss,
                             loss_fn=lambda m, ids, labels: causal_lm_loss(m, ids, labels, cfg.sampled_negatives),
                             progress=run.progress.stage("ar_drafter", run.hook))
    return _finish_training(run, "ar_drafter", ar, result, tcfg,
                            heldout_metric="causal LM loss on held-out verifier continuations (nats/token)")


def _train_diffusion(run: RecipeRun, stage: str, drafter, tcfg: LMTrainConfig, obj, seed: int) -> dict:
    from specdiff.training.diffusion import diffusion_loss, first_step_loss, freeze_routers, raw_examples
    from specdiff.training.lm import train_causal_lm

    cfg = run.cfg
    freeze_routers(drafter)
    raw = raw_examples(_load_prompts(run)["raw"].long(), tcfg.batch_size, cfg.raw_seq_len // 4, cfg.raw_seq_len,
                       seed=seed + 2)
    result = train_causal_lm(
        drafter, _training_source(run, tcfg.batch_size, seed, raw), _heldout_batches(run, tcfg.batch_size), tcfg,
        run.out_dir / stage, resume=run.resume,
        loss_fn=lambda m, ids, labels: diffusion_loss(m, ids, labels, obj),
        eval_fn=lambda m, batches: first_step_loss(m, batches, obj),
        progress=run.progress.stage(stage, run.hook),
    )
    canvas_tokens = result.steps * tcfg.batch_size * obj.canvases_per_sequence * obj.canvas_length
    return _finish_training(run, stage, drafter, result, tcfg, objective=asdict(obj), canvas_tokens=canvas_tokens,
                            heldout_metric="first-denoising-step canvas CE from pure noise on held-out verifier "
                                           "continuations (position-weighted, nats/token)")


def _objective(cfg: DrafterRecipeConfig, seeded: bool):
    from specdiff.training.diffusion import DiffusionObjective

    obj = DiffusionObjective(canvas_length=cfg.canvas_length, canvases_per_sequence=cfg.canvases_per_sequence,
                             sampled_negatives=cfg.sampled_negatives, self_conditioning_prob=cfg.self_conditioning_prob,
                             next_token_canvas=cfg.next_token_canvas)
    return replace(obj, context_seed_prob=cfg.context_seed_prob, context_seed=cfg.context_seed) if seeded else obj


def _load_diffusion(folder: Path):
    from transformers import DiffusionGemmaForBlockDiffusion

    return DiffusionGemmaForBlockDiffusion.from_pretrained(folder, dtype=torch.float32,
                                                           experts_implementation="grouped_mm")


def _load_ar(folder: Path):
    from transformers import Gemma4ForCausalLM

    model = Gemma4ForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.config._experts_implementation = "grouped_mm"
    return model


def _stage_drafter(run: RecipeRun) -> dict:
    from specdiff.drafts.diffusion_gemma import NEXT_TOKEN_KEY
    from specdiff.training.diffusion import load_ar_weights
    from specdiff.training.drafter_models import build_recipe_models

    cfg = run.cfg
    tok = run.tokenizer()
    ar = _load_ar(run.out_dir / "ar_drafter" / "model")
    _, drafter = build_recipe_models(cfg.drafter_shape, ar.config.vocab_size, tok, cfg.canvas_length, cfg.seed)
    load_ar_weights(drafter, ar)
    if cfg.next_token_canvas:  # saved with every checkpoint, so the engine drafts the way it was trained
        setattr(drafter.config, NEXT_TOKEN_KEY, True)
    return _train_diffusion(run, "drafter", drafter, cfg.scaled(cfg.drafter_train), _objective(cfg, False),
                            seed=cfg.seed + 10)


def _stage_drafter_seeded(run: RecipeRun) -> dict:
    cfg = run.cfg
    drafter = _load_diffusion(run.out_dir / "drafter" / "model")
    return _train_diffusion(run, "drafter_seeded", drafter, cfg.scaled(cfg.seeded_train), _objective(cfg, True),
                            seed=cfg.seed + 20)


# ---------------------------------------------------------------------------------------------
# Evaluation and export


def final_drafter_folder(run: RecipeRun) -> Path:
    return run.out_dir / "drafter_seeded" / "model"


def _stage_evaluate(run: RecipeRun) -> dict:
    from specdiff.drafts import DiffusionGemmaDrafter
    from specdiff.training import drafter_eval as ev

    cfg = run.cfg
    cases = ev.eval_cases(_load_rows(run, "heldout_data"), cfg.eval_cuts, cfg.canvas_length)
    seed = cfg.context_seed if cfg.context_seed_prob > 0 else False
    final = DiffusionGemmaDrafter(_load_diffusion(final_drafter_folder(run)), context_seed=seed)
    proposers = {
        "drafter_1step": ev.diffusion_proposer(final, steps=1),
        "drafter_2steps": ev.diffusion_proposer(final, steps=2),
        "drafter_unseeded_1step": ev.diffusion_proposer(
            DiffusionGemmaDrafter(_load_diffusion(run.out_dir / "drafter" / "model"), context_seed=False), steps=1),
        "ar_drafter": ev.ar_proposer(_load_ar(run.out_dir / "ar_drafter" / "model").eval()),
        "context_lookup": ev.lookup_proposer(cfg.context_seed),
    }
    t0 = time.monotonic()
    tables = {}
    for name, propose in proposers.items():
        tables[name] = ev.position_table(propose, cases, cfg.canvas_length)
        tables[name].assign(proposer=name).to_csv(run.out_dir / "evaluate" / f"{name}.csv", index=False)
    return dict(cases=len(cases), cuts=list(cfg.eval_cuts), summary=ev.summarize(tables),
                elapsed_s=time.monotonic() - t0)


def _stage_export(run: RecipeRun) -> dict:
    import shutil

    from specdiff.training.drafter_card import model_card
    from specdiff.training.drafter_models import set_generation_ids

    cfg, tok, export = run.cfg, run.tokenizer(), run.export_dir
    sources = {"drafter": (_load_diffusion, final_drafter_folder(run), ("drafter", "drafter_seeded")),
               "ar_drafter": (_load_ar, run.out_dir / "ar_drafter" / "model", ("ar_drafter",))}
    sizes = {}
    for name, (load, folder, stages) in sources.items():
        target = export / name
        if target.exists():
            shutil.rmtree(target)
        model = load(folder)
        set_generation_ids(model, tok)
        if name == "drafter" and cfg.context_seed_prob > 0:  # trained for seeded canvases: seed by default
            setattr(model.config, CONFIG_KEY, asdict(cfg.context_seed))
        model.save_pretrained(target, safe_serialization=True)
        if cfg.include_tokenizer:
            tok.save_pretrained(target)
        for stage in stages:
            for ext in ("png", "csv"):
                if (run.out_dir / stage / f"loss.{ext}").exists():
                    shutil.copy(run.out_dir / stage / f"loss.{ext}", target / f"loss_{stage}.{ext}")
        sizes[name] = sum(f.stat().st_size for f in target.iterdir())
    total = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    if total > MAX_EXPORT_BYTES:
        raise SpecdiffError(f"the export is {total / 2**20:.1f} MiB, over the {MAX_EXPORT_BYTES // 2**20} MiB budget")
    (export / "README.md").write_text(model_card(cfg, run.out_dir, run.verifier, sizes))
    return dict(export_dir=str(export), bytes=sizes, total_bytes=total)


_STAGE_FNS = {
    "corpus": _stage_corpus,
    "heldout_data": _stage_heldout_data,
    "distill_data": _stage_distill_data,
    "ar_drafter": _stage_ar_drafter,
    "drafter": _stage_drafter,
    "drafter_seeded": _stage_drafter_seeded,
    "evaluate": _stage_evaluate,
    "export": _stage_export,
}


def train_drafter_recipe(verifier: str | Path, out_dir: str | Path, cfg: DrafterRecipeConfig = DrafterRecipeConfig(),
                         resume: bool = True, step_hook: StepHook | None = None,
                         export_dir: str | Path | None = None) -> dict[str, dict]:
    """Run (or continue) the recipe for ``verifier`` (a folder or hub id); returns each stage's record.

    The models land in ``export_dir`` (``out_dir/export`` by default). With ``resume=False`` every
    stage starts over. ``step_hook(stage, step)`` runs after each training step and generated batch;
    raising there interrupts the run as a crash would.
    """
    from specdiff.training.drafter_models import load_recipe_verifier

    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    load_recipe_verifier(verifier)  # refuse a verifier the recipe cannot use before any work
    for stage in STAGES:
        (out_dir / stage).mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    export = Path(export_dir) if export_dir is not None else out_dir / "export"
    with Progress() as progress:
        run = RecipeRun(cfg, out_dir, str(verifier), progress, step_hook, resume, export)
        return run_stages(out_dir, STAGES, lambda stage: _STAGE_FNS[stage](run), progress, resume=resume)
