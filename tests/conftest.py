"""Tiny real models, built once per test session (random weights; nothing is downloaded)."""

from __future__ import annotations

import pytest
import torch

from specdiff.tiny import TinyShape, build_tiny_pair

# Tiny models gain nothing from threads, and OpenMP spin-waits slow every process on a busy 2-core box.
torch.set_num_threads(1)

SHAPE = TinyShape()  # vocab 512, sliding window 16
CANVAS = 16


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


def reference_greedy(verifier, prompt: list[int], max_new_tokens: int, eos: list[int] | None = None) -> list[int]:
    """The verifier's own greedy ``generate()``: the output speculative decoding must equal."""
    out = verifier.model.generate(
        torch.tensor([prompt]),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=0,
    )
    return out[0, len(prompt):].tolist()
