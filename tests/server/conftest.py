"""The pocket pair, loaded once per test session for every server test (real models, nothing mocked)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

@pytest.fixture(scope="session")
def pocket():
    from specdiff.loaders import load_pocket

    return load_pocket()


@pytest.fixture(scope="session")
def code_prompts() -> list[str]:
    from specdiff.evals.suites import load_suite

    return [p.prompt for p in load_suite("code").prompts]
