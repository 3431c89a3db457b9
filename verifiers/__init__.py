"""Verifier adapters: score a block of draft tokens in one forward pass, and roll back."""

from specdiff.verifiers.causal_lm import CausalLMVerifier, VerifierSession

__all__ = ["CausalLMVerifier", "VerifierSession"]
