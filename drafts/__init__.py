"""Draft engines: propose a block of tokens together with the exact distribution each was drawn from."""

from specdiff.drafts.base import Draft, DraftEngine, DraftSession, ProposalMode
from specdiff.drafts.context import ContextSeed
from specdiff.drafts.diffusion_gemma import DenoisingConfig, DiffusionGemmaDrafter

__all__ = [
    "ContextSeed",
    "DenoisingConfig",
    "DiffusionGemmaDrafter",
    "Draft",
    "DraftEngine",
    "DraftSession",
    "ProposalMode",
]
