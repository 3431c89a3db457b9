"""specdiff: lossless speculative decoding with a diffusion drafter.

Glossary (the words code, CLI and reports use):

proposer
    Who drafts a round: the diffusion drafter, the n-gram context lookup (copying what followed
    an earlier occurrence of the last tokens), or none (a plain verifier step).
canvas
    The block of ``canvas_length`` positions a diffusion drafter denoises in parallel (256 on
    DiffusionGemma). It starts as uniform random tokens.
denoising step
    One drafter forward over the whole canvas followed by the sampler (keep confident positions,
    renoise the rest). ``denoising_steps`` caps the steps per round; an early stop may use fewer.
block, block size
    The first ``block_size`` canvas tokens, proposed to the verifier as the draft (K tokens).
round
    One draft-verify cycle: the drafter proposes a block, the verifier scores it in one forward.
accepted token
    A draft token the verifier kept; a round keeps the longest acceptable prefix of the block.
bonus token
    The verifier's own token after a fully accepted block (the *recovered* token when a draft token
    was rejected). Every round commits ``accepted + 1`` tokens.
acceptance length
    Tokens committed per round, the verifier's token included (1..K+1); its mean over rounds is the
    *mean acceptance length*. The *acceptance rate* is accepted over proposed draft tokens.

The guarantee: greedy output equals the verifier's own greedy ``generate()`` token for token, and
sampled output follows the verifier's own sampling distribution (same temperature, top-k, top-p).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "SpeculativeDecoder": "specdiff.decoding",
    "Round": "specdiff.decoding",
    "GenerationResult": "specdiff.metrics",
    "RoundStats": "specdiff.metrics",
    "SamplingConfig": "specdiff.sampling",
    "SpecdiffError": "specdiff.errors",
    "Fixed": "specdiff.controllers",
    "Heuristic": "specdiff.controllers",
    "Adaptive": "specdiff.controllers",
    "Choice": "specdiff.protocols",
    "Proposer": "specdiff.protocols",
    "GenerateArgs": "specdiff.args",
    "load_pocket": "specdiff.loaders",
    "load_decoder": "specdiff.loaders",
    "load_pair": "specdiff.pairs",
    "PAIRS": "specdiff.pairs",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from specdiff.args import GenerateArgs
    from specdiff.controllers import Adaptive, Fixed, Heuristic
    from specdiff.decoding import Round, SpeculativeDecoder
    from specdiff.errors import SpecdiffError
    from specdiff.loaders import load_decoder, load_pocket
    from specdiff.metrics import GenerationResult, RoundStats
    from specdiff.pairs import PAIRS, load_pair
    from specdiff.protocols import Choice, Proposer
    from specdiff.sampling import SamplingConfig


def __getattr__(name: str) -> Any:
    # Lazy: `specdiff --help` and `import specdiff` stay fast; torch loads on first real use.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'specdiff' has no attribute {name!r}")
