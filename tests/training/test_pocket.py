"""The pocket recipe end to end on a tiny slice: stages, interruption and resume, export."""

from __future__ import annotations

import json

import pytest
import torch

from specdiff.training import corpus
from specdiff.training.pocket import train_pocket
from specdiff.training.pocket_config import PocketConfig


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def pocket_run(tmp_path_factory):
    """Run the smoke recipe, crash it mid-verifier, resume it; return (out_dir, cfg, results, log)."""
    out = tmp_path_factory.mktemp("pocket")
    cfg = PocketConfig.smoke(export_dir=out / "pocket_models")
    seen: list[tuple[str, int]] = []

    def crash_at_verifier_step_3(stage: str, step: int) -> None:
        seen.append((stage, step))
        if stage == "verifier" and step == 3:
            raise Interrupted

    threads = torch.get_num_threads()
    with pytest.raises(Interrupted):
        train_pocket(out, cfg, step_hook=crash_at_verifier_step_3)
    # The recipe trains on 2 threads and gives the caller's count back, even when interrupted
    # (left at 2, every later test in the process spun against the other core).
    assert torch.get_num_threads() == threads
    tokenizer_done = (out / "tokenizer" / "done.json").stat().st_mtime_ns
    checkpoint_step = torch.load(out / "verifier" / "checkpoint.pt", weights_only=False)["step"]

    resumed: list[tuple[str, int]] = []
    results = train_pocket(out, cfg, step_hook=lambda stage, step: resumed.append((stage, step)))
    return dict(out=out, cfg=cfg, results=results, resumed=resumed, checkpoint_step=checkpoint_step,
                tokenizer_mtime=tokenizer_done)


def test_resume_continues_from_checkpoint(pocket_run):
    # The crash hit step 3 before its checkpoint was written, so the last checkpoint is step 2.
    assert pocket_run["checkpoint_step"] == 2
    verifier = pocket_run["results"]["verifier"]
    assert verifier["resumed_from_step"] == 2
    assert verifier["steps"] == pocket_run["cfg"].verifier_train.max_steps
    verifier_steps = [step for stage, step in pocket_run["resumed"] if stage == "verifier"]
    assert verifier_steps[0] == 3  # not 1: the resumed run picks up after the checkpoint
    # A finished stage is skipped, not redone.
    assert (pocket_run["out"] / "tokenizer" / "done.json").stat().st_mtime_ns == pocket_run["tokenizer_mtime"]
    # The loss log has no duplicated steps after the resume.
    rows = (pocket_run["out"] / "verifier" / "loss.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == sorted(set(steps))


def test_every_stage_done(pocket_run):
    out = pocket_run["out"]
    from specdiff.training.pocket import STAGES

    for stage in STAGES:
        info = json.loads((out / stage / "done.json").read_text())
        assert info["stage_wall_s"] > 0, stage  # the marker is written once the stage has run
    for stage in ("verifier", "ar_drafter_lm", "ar_drafter", "drafter", "drafter_seeded"):
        info = json.loads((out / stage / "done.json").read_text())
        assert info["steps"] > 0 and info["params"] > 0, stage
    for stage in ("verifier", "ar_drafter_lm", "ar_drafter", "drafter", "drafter_seeded"):
        assert (out / stage / "loss.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["verifier", "ar_drafter"])
def test_exported_causal_lm_loads(pocket_run, name):
    from transformers import AutoTokenizer, Gemma4ForCausalLM

    folder = pocket_run["out"] / "pocket_models" / name
    tok = AutoTokenizer.from_pretrained(folder)
    model = Gemma4ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = torch.tensor([tok("def add(a, b):\n    return a + b\n")["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()
    weights = next(folder.glob("*.safetensors"))
    from safetensors import safe_open

    with safe_open(weights, "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())  # noqa: SIM118 - safe_open is no dict


def test_exported_drafter_denoises_against_encoder_cache(pocket_run):
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion, DynamicCache

    folder = pocket_run["out"] / "pocket_models" / "drafter"
    tok = AutoTokenizer.from_pretrained(folder)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(folder, dtype=torch.float32).eval()
    canvas_length = model.config.canvas_length
    ids = torch.tensor([tok("import os\nimport sys\n")["input_ids"]])
    cache = DynamicCache(config=model.config.text_config)
    canvas = torch.randint(len(tok), (1, canvas_length))
    positions = torch.arange(ids.shape[1], ids.shape[1] + canvas_length)[None]
    with torch.no_grad():
        logits = model(input_ids=ids, cache=cache, position_ids=torch.arange(ids.shape[1])[None],
                       decoder_input_ids=canvas, decoder_position_ids=positions).logits
        again = model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=positions,
                      self_conditioning_logits=logits).logits
    assert logits.shape == again.shape == (1, canvas_length, len(tok))
    assert torch.isfinite(logits).all() and torch.isfinite(again).all()
    assert cache.get_seq_length() == ids.shape[1]  # the decoder reads the cache, never writes it


def test_exported_drafter_seeds_its_canvases_and_carries_both_loss_curves(pocket_run):
    """The export takes the seeded stage's weights and records its lookup, which the engine follows."""
    from safetensors.torch import load_file
    from specdiff.drafts import DiffusionGemmaDrafter

    folder = pocket_run["out"] / "pocket_models" / "drafter"
    assert DiffusionGemmaDrafter.from_pretrained(folder).context_seed == pocket_run["cfg"].context_seed
    assert (folder / "loss.csv").stat().st_size > 0 and (folder / "loss_seeded.csv").stat().st_size > 0
    exported = load_file(folder / "model.safetensors")
    seeded = load_file(pocket_run["out"] / "drafter_seeded" / "model" / "model.safetensors")
    name = next(k for k in seeded if k.endswith("lm_head.weight") or "embed_tokens" in k)
    assert torch.equal(exported[name].float(), seeded[name].to(torch.bfloat16).float())


def test_model_card_and_size(pocket_run):
    export = pocket_run["out"] / "pocket_models"
    card = (export / "README.md").read_text()
    assert "Held-out files" in card and "| verifier |" in card and "| drafter_seeded |" in card
    assert f"About {pocket_run['cfg'].budget_minutes:.0f} minutes" in card
    total = sum(f.stat().st_size for f in export.rglob("*") if f.is_file())
    assert total < 40 * 2**20


def test_split_is_stable_and_disjoint():
    train, heldout = corpus.train_files(), corpus.heldout_files()
    assert train and heldout and not set(train) & set(heldout)
    assert all(corpus.is_heldout(f) for f in heldout)
    assert 0.02 < len(heldout) / (len(train) + len(heldout)) < 0.09
    assert not any("/test/" in f or f.startswith(("test/", "site-packages/")) for f in train + heldout)


def test_cli_builds_smoke_config(tmp_path):
    from typer.testing import CliRunner

    from specdiff.cli_pocket import PocketTrainOptions, pocket_app

    result = CliRunner().invoke(pocket_app, ["train", "--help"])
    assert result.exit_code == 0 and "--minutes-scale" in result.output
    cfg = PocketTrainOptions(out=tmp_path, smoke=True).config()
    assert cfg.export_dir == tmp_path / "pocket_models" and cfg.verifier_train.max_steps == 6


def test_multi_canvas_masks_match_separate_encoder_passes():
    """Canvases batched against one encoder pass see exactly what inference would show them."""
    from transformers import DynamicCache

    from specdiff.training.diffusion import build_drafter, multi_canvas_masks
    from specdiff.training.lm import TextShape

    shape = TextShape(num_layers=3, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                      head_dim=16, sliding_window=8, full_attention_every=2, num_experts=2,
                      moe_intermediate_size=16)
    drafter = build_drafter(shape, 200, dict(pad_token_id=0, bos_token_id=1, eos_token_id=2), 4, seed=0).eval()
    batch, seq_len, canvas_len, cuts = 2, 30, 4, [3, 12, 20, 26]  # later cuts pass the sliding window
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 200, (batch, seq_len), generator=gen)
    canvas = torch.randint(3, 200, (batch, len(cuts) * canvas_len), generator=gen)
    with torch.no_grad():
        separate = []
        for k, cut in enumerate(cuts):
            cache = DynamicCache(config=drafter.config.text_config)  # the inference cache
            drafter.model.encoder(input_ids=ids[:, :cut], cache=cache, use_cache=True)
            own = canvas[:, k * canvas_len : (k + 1) * canvas_len]
            positions = torch.arange(cut, cut + canvas_len).expand(batch, -1)
            logits = drafter(cache=cache, decoder_input_ids=own, decoder_position_ids=positions).logits
            separate.append(logits)
        cache = DynamicCache()
        drafter.model.encoder(input_ids=ids, cache=cache, use_cache=True)
        positions = torch.cat([torch.arange(c, c + canvas_len) for c in cuts]).expand(batch, -1)
        masks = multi_canvas_masks(seq_len, cuts, canvas_len, drafter.config.text_config.sliding_window, batch)
        batched = drafter(cache=cache, decoder_input_ids=canvas, decoder_position_ids=positions,
                          decoder_attention_mask=masks).logits
    torch.testing.assert_close(batched, torch.cat(separate, dim=1), atol=1e-4, rtol=1e-4)


def test_position_weights_favour_the_first_canvas_positions():
    from specdiff.training.diffusion import position_weights

    uniform = position_weights(8, None)
    assert torch.allclose(uniform, torch.full((8,), 1 / 8))
    decayed = position_weights(64, 8.0)
    assert decayed.sum().item() == pytest.approx(1.0)
    assert (decayed[1:] < decayed[:-1]).all()
    # exp(-i / 8): each position weighs e^(-1/8) of the one before, 8 positions on e^-1.
    assert (decayed[8] / decayed[0]).item() == pytest.approx(torch.exp(torch.tensor(-1.0)).item())


def tiny_diffusion_drafter():
    """A one-layer DiffusionGemma drafter over 100 ids with a 4-token canvas (random weights, eval mode)."""
    from specdiff.training.diffusion import build_drafter
    from specdiff.training.lm import TextShape

    shape = TextShape(num_layers=1, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1,
                      head_dim=16, sliding_window=16, num_experts=2, top_k_experts=1, moe_intermediate_size=16)
    return build_drafter(shape, 100, dict(pad_token_id=0, bos_token_id=1, eos_token_id=2), 4, seed=0).eval()


def canvas_logits_after(drafter, context: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """The decoder's logits ``[B, C, V]`` for ``canvas`` right after ``context`` ``[B, T]``, from a fresh
    encoder cache: the by-hand reference for ``diffusion_loss``."""
    from transformers import DynamicCache

    start = context.shape[1]
    cache = DynamicCache(config=drafter.config.text_config)
    with torch.no_grad():
        drafter.model.encoder(input_ids=context, cache=cache, use_cache=True)
        positions = torch.arange(start, start + canvas.shape[1]).expand(canvas.shape[0], -1)
        return drafter(cache=cache, decoder_input_ids=canvas, decoder_position_ids=positions).logits


def test_canvas_loss_weights_positions_as_the_objective_says():
    """The canvas term is the position-weighted mean of per-token cross-entropy, computed by hand."""
    import torch.nn.functional as F

    from specdiff.training.diffusion import DiffusionObjective, diffusion_loss, position_weights

    drafter = tiny_diffusion_drafter()
    obj = DiffusionObjective(canvas_length=4, pure_noise_prob=1.0, encoder_loss_weight=0.0,
                             canvases_per_sequence=1, position_decay=2.0)
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100  # the only possible cut is 6: canvas = ids[:, 6:10]
    torch.manual_seed(0)
    loss = diffusion_loss(drafter, ids, labels, obj, self_condition=False)

    torch.manual_seed(0)
    torch.randperm(1)  # the cut draw diffusion_loss makes
    torch.randint(1, (1,))  # the encoder-loss offset draw
    from specdiff.training.diffusion import corrupt

    logits = canvas_logits_after(drafter, ids[:, :6], corrupt(ids[:, 6:10], 100, obj))
    per_token = F.cross_entropy(logits.flatten(0, 1), ids[:, 6:10].flatten(), reduction="none").view(2, 4)
    expected = (per_token * position_weights(4, 2.0)).sum(-1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert loss.item() != pytest.approx(per_token.mean().item(), rel=1e-3)  # the weighting mattered


def test_next_token_canvas_loss_predicts_each_input_one_position_on():
    """The next-token objective by hand: canvas inputs are tokens 6..9 with the first kept clean, the
    outputs are scored against tokens 7..10, and no self-conditioning pass runs."""
    import torch.nn.functional as F

    from specdiff.training.diffusion import DiffusionObjective, corrupt_next_token, diffusion_loss, position_weights

    drafter = tiny_diffusion_drafter()
    obj = DiffusionObjective(canvas_length=4, pure_noise_prob=1.0, encoder_loss_weight=0.0, canvases_per_sequence=1,
                             position_decay=2.0, next_token_canvas=True, self_conditioning_prob=1.0)
    ids = torch.randint(3, 100, (2, 11), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100  # the only cut leaving a target after the canvas is 6
    torch.manual_seed(0)
    loss = diffusion_loss(drafter, ids, labels, obj)

    torch.manual_seed(0)
    torch.randperm(1)
    torch.randint(1, (1,))
    canvas = corrupt_next_token(ids[:, 6:10], 100, obj)
    assert torch.equal(canvas[:, 0], ids[:, 6])
    logits = canvas_logits_after(drafter, ids[:, :6], canvas)
    per_token = F.cross_entropy(logits.flatten(0, 1), ids[:, 7:11].flatten(), reduction="none").view(2, 4)
    assert loss.item() == pytest.approx((per_token * position_weights(4, 2.0)).sum(-1).mean().item(), rel=1e-4)


def test_next_token_corruption_keeps_a_clean_prefix():
    from specdiff.training.diffusion import DiffusionObjective, corrupt_next_token

    target = torch.arange(10, 10 + 8 * 4).repeat(500, 1)  # 500 rows of 4 canvases of 8
    torch.manual_seed(0)
    noisy = corrupt_next_token(target, 100_000, DiffusionObjective(canvas_length=8, clean_prefix_prob=0.5))
    clean = (noisy == target).view(500, 4, 8)
    assert clean[:, :, 0].all()  # the encoder's token is never noise
    # A clean prefix past the first position in about half the canvases (pure noise elsewhere
    # replaces position 1 with probability 1).
    assert 0.4 < clean[:, :, 1].float().mean() < 0.7
    pure = DiffusionObjective(canvas_length=8, clean_prefix_prob=0.0, pure_noise_prob=1.0)
    assert ((corrupt_next_token(target, 100_000, pure) == target).view(500, 4, 8)[:, :, 1:].float().mean() < 0.01)
