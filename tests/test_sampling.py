"""Sampled output follows the verifier's own distribution, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CANVAS, SHAPE, chi2_pvalue
from specdiff.drafts import DiffusionGemmaDrafter, Draft, ProposalMode
from specdiff.drafts.ngram import ContextSeed, NgramLookup

from specdiff import SpeculativeDecoder
from specdiff.controllers import Fixed, Proposer
from specdiff.sampling import SamplingConfig, target_probs

TOP_K = 3


class NoisyVerifierDrafter:
    """Drafts from a blend of the verifier's true next-token law and uniform noise, so that draft
    tokens are accepted often but not always (both branches of the rule run).

    ``deterministic``: propose the law's argmax instead, with ``probs=None`` (a one-hot draft
    distribution, as the diffusion drafter's ARGMAX mode returns).
    """

    kind = Proposer.DIFFUSION

    def __init__(self, verifier, sampling: SamplingConfig, deterministic: bool = False):
        self.verifier = verifier
        self.deterministic = deterministic
        self.vocab_size = verifier.vocab_size
        self.canvas_length = self.max_block_size = CANVAS
        self.tokenizer = None
        self.sampling = sampling

    def session(self, prompt_ids, greedy=True):
        return _NoisySession(self, prompt_ids)


class _NoisySession:
    def __init__(self, drafter, prompt_ids):
        self.drafter = drafter
        self.context = prompt_ids.clone()

    @torch.no_grad()
    def propose(self, new_tokens, choice, generator):
        block_size = choice.block_size
        self.context = torch.cat([self.context, new_tokens], dim=1)
        d = self.drafter
        logits = d.verifier.model(self.context).logits[:, -1:].float()
        law = 0.7 * target_probs(logits, d.sampling) + 0.3 / d.vocab_size  # [1, 1, V]
        probs = law.repeat(1, block_size, 1)
        if d.deterministic:
            return Draft(tokens=probs.argmax(-1), probs=None, denoising_steps_used=1)
        tokens = torch.multinomial(probs[0], 1, generator=generator).T
        return Draft(tokens=tokens, probs=probs, denoising_steps_used=1)


def exact_two_token_law(verifier, prompt, sampling) -> torch.Tensor:
    """``[V * V]`` law of the first two sampled tokens, from the verifier's processed distributions."""
    model = verifier.model
    with torch.no_grad():
        first = target_probs(model(torch.tensor([prompt])).logits[:, -1:], sampling)[0, 0]  # [V]
        support = torch.nonzero(first).flatten()
        batch = torch.tensor([prompt + [int(t)] for t in support])
        second = target_probs(model(batch).logits[:, -1:], sampling)[:, 0]  # [S, V]
    law = torch.zeros(verifier.vocab_size, verifier.vocab_size)
    law[support] = first[support, None] * second
    return law.reshape(-1)


def likely_guess(verifier, sampling: SamplingConfig) -> int:
    """The token g that the verifier finds likeliest after ``[5, 4, g, 99, 4]``: there the lookup
    guesses g (what followed the earlier 4)."""
    candidates = torch.arange(3, verifier.vocab_size)
    batch = torch.stack([torch.tensor([5, 4, 0, 99, 4])] * len(candidates))
    batch[:, 2] = candidates
    with torch.no_grad():
        probs = target_probs(verifier.model(batch).logits[:, -1:], sampling)[:, 0]  # [N, V]
    return int(candidates[probs[torch.arange(len(candidates)), candidates].argmax()])


class CutOnConfidenceBits(Fixed):
    """Blocks of 2, cut to 1 or not by the parity of the second position's confidence in millionths:
    an arbitrary function of the draft distributions that flips from draw to draw, as any cut may be."""

    def cut(self, confidence: np.ndarray, denoising_steps_used: int) -> int:
        return 2 if int(confidence[1] * 1e6) % 2 == 0 else 1


@pytest.mark.slow
@pytest.mark.parametrize("drafter_kind", ["diffusion-resample", "diffusion-context-seeded", "diffusion-cut",
                                          "diffusion-next-token",
                                          "ngram-lookup", "noisy-verifier", "one-hot-argmax"])
def test_first_two_sampled_tokens_follow_the_verifier(drafter, verifier, drafter_kind):
    sampling = SamplingConfig(temperature=1.0, top_k=TOP_K)
    prompt = [5, 17, 99, 4]
    cutting, lookup = drafter_kind == "diffusion-cut", drafter_kind == "ngram-lookup"
    if drafter_kind.startswith("diffusion") or lookup:
        seeded = drafter_kind in ("diffusion-context-seeded", "ngram-lookup")
        engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.RESAMPLE,
                                       context_seed=ContextSeed() if seeded else None,
                                       next_token_canvas=drafter_kind == "diffusion-next-token")
        if seeded:
            prompt = [5, 4, 17, 99, 4]  # "4" recurs: the canvas starts from the guess [17, 99, 4, ...]
        if lookup:  # a guess the verifier finds likely, so that lookup tokens are accepted too
            prompt = [5, 4, likely_guess(verifier, sampling), 99, 4]
    else:
        engine = NoisyVerifierDrafter(verifier, sampling, deterministic=drafter_kind == "one-hot-argmax")
    # The n-gram proposer: the guess proposed as it is (one-hot), no model.
    controller = CutOnConfidenceBits(block_size=2) if cutting else Fixed.ngram(2) if lookup else None
    engines = [engine, NgramLookup(verifier.vocab_size, max_block_size=CANVAS)] if lookup else engine
    decoder = SpeculativeDecoder(engines, verifier, controller=controller)
    law = exact_two_token_law(verifier, prompt, sampling)
    counts = torch.zeros_like(law)
    draws, accepted, cuts = 1000, 0, 0
    for seed in range(draws):
        # With the cut, a third token gives the first round room for a block of 2 (a round never
        # drafts past the end); only the first two tokens are counted.
        result = decoder.generate(prompt, max_new_tokens=3 if cutting else 2,
                                  block_size=None if cutting or lookup else 2,
                                  denoising_steps=2 if drafter_kind == "diffusion-next-token" else None,
                                  temperature=1.0, top_k=TOP_K, seed=seed, eos_token_id=[])
        a, b = result.token_ids[:2]
        counts[a * SHAPE.vocab_size + b] += 1
        accepted += sum(s.accepted for s in result.stats)
        cuts += result.stats[0].proposed < result.stats[0].block_size
    assert chi2_pvalue(counts, law) > 1e-3
    if cutting:
        assert 0.1 * draws < cuts < 0.9 * draws  # the cut really varied
    if drafter_kind in ("noisy-verifier", "one-hot-argmax"):
        assert accepted > draws * 0.3  # the acceptance branch really ran
    if lookup:
        assert accepted > 0 and {s.proposer.value for s in result.stats} <= {"ngram", "plain"}


def test_target_probs_match_transformers_sampling(verifier):
    """Our processed distribution is the one ``generate(do_sample=True)`` samples from."""
    sampling = SamplingConfig(temperature=0.7, top_k=10, top_p=0.9)
    prompt = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        logits = verifier.model(prompt).logits[:, -1:]
    probs = target_probs(logits, sampling)[0, 0]
    assert int((probs > 0).sum()) <= 10 and probs.sum().item() == pytest.approx(1.0)
    counts = torch.zeros(SHAPE.vocab_size)
    for seed in range(300):
        torch.manual_seed(seed)
        out = verifier.model.generate(prompt, do_sample=True, temperature=0.7, top_k=10, top_p=0.9,
                                      max_new_tokens=1, pad_token_id=0)
        counts[out[0, -1]] += 1
    assert chi2_pvalue(counts, probs) > 1e-3
