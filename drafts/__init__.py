"""Draft engines: proposers of a block of tokens, each with the exact distribution it was drawn from.

``DiffusionGemmaDrafter`` denoises a canvas; ``NgramLookup`` copies the context's continuation.
Both implement ``specdiff.protocols.DraftEngine``; add a proposer by implementing it too.
"""

from specdiff.drafts.diffusion_gemma import DenoisingConfig, DiffusionGemmaDrafter, ProposalMode
from specdiff.drafts.ngram import ContextSeed, NgramLookup

from specdiff.protocols import Draft, DraftEngine, DraftSession, Proposer

__all__ = [
    "ContextSeed",
    "DenoisingConfig",
    "DiffusionGemmaDrafter",
    "Draft",
    "DraftEngine",
    "DraftSession",
    "NgramLookup",
    "ProposalMode",
    "Proposer",
]
