"""Models that cannot load are refused in one line naming the problem and the fix, before the weights load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from specdiff.cli import app
from specdiff.errors import SpecdiffError

runner = CliRunner()


def _generate(drafter, verifier, *extra):
    result = runner.invoke(app, ["generate", "x", "--drafter", str(drafter), "--verifier", str(verifier),
                                 "--max-new-tokens", "3", *extra])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.strip().count("\n") == 0, result.output
    return result.output


@pytest.fixture
def no_weights_read(monkeypatch):
    """The checks must come before transformers reads any weights."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the checks")

    for name in ("DiffusionGemmaForBlockDiffusion", "AutoModelForCausalLM"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)


def test_a_gemma4_folder_given_as_the_drafter(tiny_dirs, no_weights_read):
    verifier_dir, _ = tiny_dirs
    out = _generate(verifier_dir, verifier_dir)
    assert "holds Gemma4ForCausalLM (model_type gemma4_text)" in out and "not a DiffusionGemma drafter" in out
    assert "pass it as the verifier (--verifier)" in out


def test_a_diffusiongemma_folder_given_as_the_verifier(tiny_dirs, no_weights_read):
    _, drafter_dir = tiny_dirs
    out = _generate(drafter_dir, drafter_dir)
    assert "holds DiffusionGemmaForBlockDiffusion" in out and "not a causal LM" in out
    assert "pass it as the drafter (--drafter)" in out and "Config," not in out


def test_the_library_refuses_the_wrong_kind_too(tiny_dirs):
    from specdiff.drafts import DiffusionGemmaDrafter
    from specdiff.verifiers import CausalLMVerifier

    with pytest.raises(SpecdiffError, match="not a DiffusionGemma drafter"):
        DiffusionGemmaDrafter.from_pretrained(tiny_dirs[0])
    with pytest.raises(SpecdiffError, match="not a causal LM"):
        CausalLMVerifier.from_pretrained(tiny_dirs[1])


@pytest.mark.parametrize("cut", [1000, "half", 100, 4])
def test_a_truncated_safetensors_file_is_named(tiny_dirs, tmp_path, no_weights_read, cut):
    pair = tmp_path / "pair"
    for folder in tiny_dirs:
        shutil.copytree(folder, pair / folder.name)
    weights = pair / tiny_dirs[0].name / "model.safetensors"
    size = weights.stat().st_size
    os.truncate(weights, size // 2 if cut == "half" else (size - cut if cut == 1000 else cut))
    out = _generate(pair / tiny_dirs[1].name, pair / tiny_dirs[0].name)
    assert str(weights) in out.replace("\n", "") and "truncated" in out and "download it again" in out


def test_a_folder_without_safetensors(tiny_dirs, tmp_path, no_weights_read):
    verifier = tmp_path / "v"
    shutil.copytree(tiny_dirs[0], verifier)
    (verifier / "model.safetensors").unlink()
    assert "has no .safetensors weights" in _generate(tiny_dirs[1], verifier)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_cuda_device_map_without_a_gpu(tiny_dirs, no_weights_read):
    out = _generate(tiny_dirs[1], tiny_dirs[0], "--device-map", "cuda")
    assert "device map 'cuda' needs a CUDA GPU" in out and "leave --device-map out" in out


def test_demo_refuses_a_negative_token_count():
    result = runner.invoke(app, ["demo", "--max-new-tokens", "-5"])
    assert result.exit_code == 2 and "max_new_tokens must be a whole number >= 0" in result.output
    assert result.output.strip().count("\n") == 0


def test_quiet_loading_restores_the_progress_bars():
    from transformers.utils import logging as hf_logging

    from specdiff.loading import quiet_loading

    hf_logging.enable_progress_bar()
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()


@pytest.mark.slow
def test_hub_ids_offline_library_loads_are_quiet(tiny_dirs, tmp_path):
    """With the hub out of reach: a cached id loads from the cache, an uncached one fails at once with
    one error (no retries), and library loads print no progress bars."""
    snapshot = tmp_path / "hub" / "models--someone--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_dirs[0], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    script = textwrap.dedent("""
        from specdiff.errors import SpecdiffError
        from specdiff.verifiers import CausalLMVerifier
        import specdiff
        verifier = CausalLMVerifier.from_pretrained("someone/tiny")
        print("cached", verifier.vocab_size)
        try:
            CausalLMVerifier.from_pretrained("someone/not-cached")
        except SpecdiffError as err:
            print("refused", err)
        specdiff.load_pocket()
    """)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": "http://127.0.0.1:9",
           "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cached ")
    assert "refused someone/not-cached is not a local folder, not in the hub cache" in done.stdout
    assert "127.0.0.1:9 cannot be reached" in done.stdout
    assert "Retrying" not in done.stderr and "Loading weights" not in done.stderr
