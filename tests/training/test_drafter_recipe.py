"""The drafter recipe end to end on a tiny random verifier: stages, interruption and resume, export."""

from __future__ import annotations

import json

import pytest
import torch

from specdiff.errors import SpecdiffError
from specdiff.training.drafter_config import DrafterRecipeConfig
from specdiff.training.drafter_recipe import STAGES, train_drafter_recipe
from specdiff.training.prompt_corpus import CorpusSizes
from specdiff.training.tiny import tiny_tokenizer, tiny_verifier

CHAT_TEMPLATE = ("{% for m in messages %}<bos>{{ m['role'] }}\n{{ m['content'] }}<eos>\n{% endfor %}"
                 "{% if add_generation_prompt %}<bos>assistant\n{% endif %}")


class Interrupted(Exception):
    pass


def smoke_config(**overrides) -> DrafterRecipeConfig:
    # 30 stdlib files: enough for training instructions on both sides of the split.
    corpus = CorpusSizes(train_chat=8, train_code=8, heldout_chat=2, heldout_code=2, max_files=30)
    return DrafterRecipeConfig.smoke(corpus=corpus, **overrides)


def save_verifier(folder, tokenizer=None, with_tokenizer=True):
    tok = tokenizer or tiny_tokenizer()
    tok.chat_template = tok.chat_template or CHAT_TEMPLATE
    tiny_verifier().save_pretrained(folder)
    if with_tokenizer:
        tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """Crash the smoke recipe mid-distillation, then mid-drafter, then let it finish."""
    root = tmp_path_factory.mktemp("drafter_recipe")
    verifier = save_verifier(root / "verifier")
    out, cfg = root / "run", smoke_config()

    def crash_at(where):
        def hook(stage, step):
            if (stage, step) == where:
                raise Interrupted
        return hook

    with pytest.raises(Interrupted):
        train_drafter_recipe(verifier, out, cfg, step_hook=crash_at(("distill_data", 1)))
    batches_saved = torch.load(out / "distill_data" / "data.pt", weights_only=False)["batches"]
    with pytest.raises(Interrupted):
        train_drafter_recipe(verifier, out, cfg, step_hook=crash_at(("drafter", 3)))
    mtimes = {s: (out / s / "done.json").stat().st_mtime_ns for s in STAGES if (out / s / "done.json").exists()}
    checkpoint_step = torch.load(out / "drafter" / "checkpoint.pt", weights_only=False)["step"]
    resumed: list[tuple[str, int]] = []
    results = train_drafter_recipe(verifier, out, cfg, step_hook=lambda stage, step: resumed.append((stage, step)))
    return dict(out=out, cfg=cfg, verifier=verifier, results=results, resumed=resumed, mtimes=mtimes,
                batches_saved=batches_saved, checkpoint_step=checkpoint_step)


def test_every_stage_ran_once(recipe_run):
    out = recipe_run["out"]
    for stage in STAGES:
        assert json.loads((out / stage / "done.json").read_text())["stage_wall_s"] > 0, stage
    for stage in ("ar_drafter", "drafter", "drafter_seeded"):
        info = recipe_run["results"][stage]
        assert info["steps"] == recipe_run["cfg"].drafter_train.max_steps and info["params"] > 0
        assert (out / stage / "loss.png").stat().st_size > 0
    # Stages finished before the last run were skipped by it, not redone.
    assert set(recipe_run["mtimes"]) == {"corpus", "heldout_data", "distill_data", "ar_drafter"}
    for stage, mtime in recipe_run["mtimes"].items():
        assert (out / stage / "done.json").stat().st_mtime_ns == mtime, stage
    assert not any(stage in ("corpus", "ar_drafter") for stage, _ in recipe_run["resumed"])


def test_interrupted_stages_resume(recipe_run):
    # Distillation stopped after its first batch and kept it; the rerun generated only the rest.
    assert recipe_run["batches_saved"] == 1
    distilled = recipe_run["results"]["distill_data"]
    assert distilled["rows"] == recipe_run["cfg"].corpus.train_chat + recipe_run["cfg"].corpus.train_code
    # The drafter crashed at step 3 before checkpointing it: the last run restarted from step 2.
    assert recipe_run["checkpoint_step"] == 2
    assert recipe_run["results"]["drafter"]["resumed_from_step"] == 2
    drafter_steps = [step for stage, step in recipe_run["resumed"] if stage == "drafter"]
    assert drafter_steps[0] == 3


def test_rerun_skips_every_stage(recipe_run):
    out = recipe_run["out"]
    before = {s: (out / s / "done.json").stat().st_mtime_ns for s in STAGES}
    seen: list[tuple[str, int]] = []
    again = train_drafter_recipe(recipe_run["verifier"], out, recipe_run["cfg"],
                                 step_hook=lambda stage, step: seen.append((stage, step)))
    assert seen == [] and again == recipe_run["results"]
    assert {s: (out / s / "done.json").stat().st_mtime_ns for s in STAGES} == before


def test_export_and_model_card(recipe_run):
    export = recipe_run["out"] / "export"
    card = (export / "README.md").read_text()
    for needle in ("Accuracy by canvas position", "| drafter_1step |", "| ar_drafter |", "held-out loss",
                   "| distill_data |", "**chat**", "**code**"):
        assert needle in card, needle
    summary = recipe_run["results"]["evaluate"]["summary"]
    assert set(summary) >= {"drafter_1step", "ar_drafter", "context_lookup"}
    config = json.loads((export / "drafter" / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == tiny_verifier().config.vocab_size
    assert config["specdiff_next_token_canvas"] is True  # the engine drafts the way the recipe trained it


def test_exported_drafter_is_lossless_with_its_verifier(recipe_run):
    from specdiff.controllers import Fixed, Proposer
    from specdiff.loaders import load_decoder
    from tests.helpers import reference_greedy

    export = recipe_run["out"] / "export"
    decoder = load_decoder(str(export / "drafter"), str(recipe_run["verifier"]))
    decoder.controller = Fixed(block_size=4)  # the diffusion drafter proposes every round
    assert decoder.proposers[Proposer.DIFFUSION].next_token_canvas
    prompt = decoder.tokenizer("def add(a, b):\n    return")["input_ids"]
    result = decoder.generate(prompt, max_new_tokens=24)
    drafted = [s for s in result.stats if s.proposer.value == "diffusion"]
    assert len(drafted) >= len(result.stats) - 1  # all but a last round too short to draft
    assert result.token_ids == reference_greedy(decoder.verifier, prompt, 24, eos=[])[: len(result.token_ids)]
    assert len(result.token_ids) == 24


def test_verifier_without_tokenizer_is_refused(tmp_path):
    verifier = save_verifier(tmp_path / "verifier", with_tokenizer=False)
    with pytest.raises(SpecdiffError, match="no tokenizer files"):
        train_drafter_recipe(verifier, tmp_path / "run", smoke_config())


def test_vocabulary_the_drafter_cannot_share_is_refused(tmp_path):
    tok = tiny_tokenizer()
    tok.add_tokens([f"<extra{i}>" for i in range(600)])  # ids past the verifier's 512 output rows
    verifier = save_verifier(tmp_path / "verifier", tokenizer=tok)
    with pytest.raises(SpecdiffError, match="scores only 512"):
        train_drafter_recipe(verifier, tmp_path / "run", smoke_config())


def test_chat_prompts_need_a_chat_template(tmp_path):
    verifier = save_verifier(tmp_path / "verifier")
    config = json.loads((verifier / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (verifier / "tokenizer_config.json").write_text(json.dumps(config))
    (verifier / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(SpecdiffError, match="no chat template"):
        train_drafter_recipe(verifier, tmp_path / "run", smoke_config())
