"""Loading from saved folders, and refusing pairs that cannot work together."""

from __future__ import annotations

import pytest
import torch
from helpers import SHAPE
from specdiff.drafts import DiffusionGemmaDrafter
from specdiff.verifiers import CausalLMVerifier

from specdiff import SpecdiffError, SpeculativeDecoder
from specdiff.loading import looks_like_hub_id, resolve_model_location
from specdiff.training.tiny import TinyShape, tiny_drafter


def test_from_pretrained_round_trip(tiny_dirs, verifier, drafter):
    assert verifier.tokenizer is not None and drafter.tokenizer is not None
    assert drafter.canvas_length == 16 and drafter.vocab_size == verifier.vocab_size == SHAPE.vocab_size
    fresh = CausalLMVerifier.from_pretrained(tiny_dirs[0], dtype=torch.bfloat16)
    assert fresh.model.dtype == torch.bfloat16
    assert verifier.eos_token_ids == (2,)


def test_folder_without_tokenizer_gives_none(tmp_path):
    tiny_drafter(TinyShape(), canvas_length=8).save_pretrained(tmp_path / "d")
    assert DiffusionGemmaDrafter.from_pretrained(tmp_path / "d").tokenizer is None


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SpecdiffError, match="model folder not found"):
        CausalLMVerifier.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecdiffError, match="no config.json"):
        DiffusionGemmaDrafter.from_pretrained(tmp_path / "empty")


def test_remote_code_and_pickle_weights_are_refused(tiny_dirs):
    with pytest.raises(SpecdiffError, match="trust_remote_code"):
        CausalLMVerifier.from_pretrained(tiny_dirs[0], trust_remote_code=True)
    with pytest.raises(SpecdiffError, match="safetensors"):
        CausalLMVerifier.from_pretrained(tiny_dirs[0], use_safetensors=False)


def test_hub_ids_and_paths_are_told_apart(tmp_path, monkeypatch):
    assert looks_like_hub_id("google/gemma-4-31B-it")
    assert not looks_like_hub_id("./verifier") and not looks_like_hub_id("/abs/path")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert not looks_like_hub_id("models/verifier")  # a local folder's child, not a hub repo
    with pytest.raises(SpecdiffError, match="not found"):
        resolve_model_location("models/verifier")


def test_vocabulary_mismatch_is_refused(verifier):
    other = DiffusionGemmaDrafter(tiny_drafter(TinyShape(vocab_size=600), canvas_length=8))
    with pytest.raises(SpecdiffError, match="vocabulary"):
        SpeculativeDecoder(other, verifier)


def test_wrong_model_class_is_refused(verifier):
    with pytest.raises(SpecdiffError, match="DiffusionGemmaForBlockDiffusion"):
        DiffusionGemmaDrafter(verifier.model)
