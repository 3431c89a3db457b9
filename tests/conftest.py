"""Tiny real models, built once per test session (random weights; nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch
from helpers import CANVAS, SHAPE

from specdiff.training.tiny import build_tiny_pair

# Tiny models gain nothing from threads, and OpenMP spin-waits slow every process on a busy 2-core box.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Saved folders ``(verifier_dir, drafter_dir)``, each with the tiny tokenizer."""
    return build_tiny_pair(tmp_path_factory.mktemp("tiny"), SHAPE, CANVAS)


@pytest.fixture(scope="session")
def verifier(tiny_dirs):
    from specdiff.verifiers import CausalLMVerifier

    return CausalLMVerifier.from_pretrained(tiny_dirs[0])


@pytest.fixture(scope="session")
def drafter(tiny_dirs):
    from specdiff.drafts import DiffusionGemmaDrafter

    return DiffusionGemmaDrafter.from_pretrained(tiny_dirs[1])


@pytest.fixture(scope="session")
def decoder(drafter, verifier):
    from specdiff import SpeculativeDecoder

    return SpeculativeDecoder(drafter, verifier)

