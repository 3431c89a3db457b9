"""The embedded default: the pocket pair shipped inside the package.

``load_pocket()`` returns a ready ``SpeculativeDecoder`` over the pocket Gemma 4 verifier and
DiffusionGemma drafter (``specdiff/pocket_models``), with the tokenizer attached. Nothing is
downloaded: the folders are package data. ``specdiff pocket train`` rebuilds them from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specdiff.errors import SpecdiffError

POCKET_DIR = Path(__file__).parent / "pocket_models"
DEMO_PROMPT = '''def read_lines(path, encoding="utf-8"):
    """Return the lines of the file at *path*, without trailing newlines."""
    with open(path, encoding=encoding) as f:
'''


def pocket_folder(name: str) -> Path:
    """The shipped folder of one pocket model: ``verifier``, ``drafter`` or ``ar_drafter``."""
    folder = POCKET_DIR / name
    if not (folder / "config.json").is_file():
        raise SpecdiffError(
            f"the pocket model {name!r} is not in {POCKET_DIR}; reinstall specdiff, or rebuild the pocket "
            "pair with `specdiff pocket train --out DIR` (it exports there)"
        )
    return folder


def load_pocket(controller: Any | None = None, proposal_mode: Any | None = None, **kwargs: Any) -> Any:
    """The pocket pair as a ``SpeculativeDecoder`` (float32 on the CPU unless kwargs say otherwise).

    Args:
        controller: the decoder's policy (the default controller when omitted).
        proposal_mode: the drafter's ``ProposalMode`` (AUTO when omitted).
        kwargs: passed to both ``from_pretrained`` calls (``dtype``, ``device_map``, ...).
    """
    import torch

    from specdiff.decoding import SpeculativeDecoder
    from specdiff.drafts import DiffusionGemmaDrafter, ProposalMode
    from specdiff.verifiers import CausalLMVerifier

    # The weights are stored in bfloat16 to keep the package small; CPUs run float32 far faster.
    kwargs.setdefault("dtype", torch.float32)
    drafter = DiffusionGemmaDrafter.from_pretrained(
        pocket_folder("drafter"), proposal_mode=proposal_mode or ProposalMode.AUTO, **kwargs
    )
    verifier = CausalLMVerifier.from_pretrained(pocket_folder("verifier"), **kwargs)
    return SpeculativeDecoder(drafter, verifier, controller=controller)
