"""The DiffusionGemma draft engine: its probabilities are the ones its tokens came from."""

from __future__ import annotations

import pytest
import torch
from helpers import CANVAS, chi2_pvalue
from specdiff.drafts import DenoisingConfig, DiffusionGemmaDrafter, ProposalMode

from specdiff.protocols import Choice


def one_step_reference_logits(drafter, prompt: torch.Tensor, seed: int) -> torch.Tensor:
    """The first step's scheduled logits, recomputed from scratch with the same starting noise.

    With ``encoder_first_token`` the first row is the encoder's next-token logits at the prompt's
    last token (LM head and soft-cap applied to the encoder's output), the rest the decoder's.
    """
    from transformers import DynamicCache

    model = drafter.model
    gen = torch.Generator().manual_seed(seed)
    canvas = torch.randint(0, drafter.vocab_size, (1, CANVAS), generator=gen)  # the session's first draw
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    with torch.no_grad():
        encoded = model.model.encoder(input_ids=prompt, cache=cache, use_cache=True)
        logits = model(decoder_input_ids=canvas, cache=cache).logits  # [1, C, V]
        if drafter.encoder_first_token:
            cap = model.config.text_config.final_logit_softcapping
            first = torch.tanh(model.lm_head(encoded.last_hidden_state[:, -1:]) / cap) * cap  # [1, 1, V]
            logits = torch.cat([first, logits[:, 1:]], dim=1)
    return logits / drafter.denoising.t_max  # one step: the schedule sits at t_max


@pytest.mark.parametrize("encoder_first_token", [True, False])
@pytest.mark.parametrize("mode", list(ProposalMode))
def test_one_step_probs_are_the_schedule_distribution(drafter, mode, encoder_first_token):
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=mode, encoder_first_token=encoder_first_token)
    prompt = torch.tensor([[4, 8, 15, 16, 23, 42]])
    draft = engine.session(prompt).propose(prompt[:, :0], Choice.diffusion(5, 1), torch.Generator().manual_seed(3))
    reference = one_step_reference_logits(engine, prompt, seed=3)[:, :5]
    assert draft.tokens.shape == (1, 5) and draft.distribution(engine.vocab_size).shape == (1, 5, engine.vocab_size)
    if mode.resolved(greedy=True) is ProposalMode.ARGMAX:  # the session serves a greedy decode
        assert torch.equal(draft.tokens, reference.argmax(-1))
        assert draft.probs is None  # deterministic: the one-hot is built only on demand
        one_hot = torch.nn.functional.one_hot(draft.tokens, engine.vocab_size).float()
        assert torch.equal(draft.distribution(engine.vocab_size), one_hot)
    else:
        assert torch.allclose(draft.probs, torch.softmax(reference, dim=-1), atol=1e-5)
    # The confidence is the largest probability of the distribution each token came from.
    torch.testing.assert_close(draft.confidence(), torch.softmax(reference, dim=-1).amax(-1))
    head = draft.truncated(2)
    assert torch.equal(head.tokens, draft.tokens[:, :2])
    torch.testing.assert_close(head.confidence(), draft.confidence()[:, :2])


def test_encoder_first_token_survives_a_call_with_nothing_new(drafter):
    """The encoder's prediction for the next token is kept: a second proposal with no new committed
    tokens drafts the same first token, with no encoder pass."""
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.RESAMPLE)
    prompt = torch.tensor([[4, 8, 15, 16, 23, 42]])
    session = engine.session(prompt)
    first = session.propose(prompt[:, :0], Choice.diffusion(3, 1), torch.Generator().manual_seed(0))
    again = session.propose(prompt[:, :0], Choice.diffusion(3, 1), torch.Generator().manual_seed(1))
    assert session.cache.get_seq_length() == prompt.shape[1]
    torch.testing.assert_close(again.probs[:, 0], first.probs[:, 0])
    assert not torch.allclose(again.probs[:, 1], first.probs[:, 1])  # the decoder's rows saw new noise


def test_resampled_tokens_follow_their_returned_probs(drafter):
    """Over many seeds, token counts match the summed returned probabilities (several steps)."""
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.RESAMPLE,
                                   denoising=DenoisingConfig(t_min=1.5, t_max=2.0))
    prompt = torch.tensor([[7, 7, 9]])
    counts = torch.zeros(engine.vocab_size)
    expected = torch.zeros(engine.vocab_size)
    for seed in range(400):
        generator = torch.Generator().manual_seed(seed)
        draft = engine.session(prompt).propose(prompt[:, :0], Choice.diffusion(1, 3), generator)
        counts[draft.tokens[0, 0]] += 1
        expected += draft.probs[0, 0]
    top = expected.argsort(descending=True)[:8]  # pool the tail so expected counts stay large
    observed = torch.cat([counts[top], counts.sum(0, keepdim=True) - counts[top].sum()])
    law = torch.cat([expected[top], expected.sum(0, keepdim=True) - expected[top].sum()]) / 400
    assert chi2_pvalue(observed, law) > 1e-3


def test_session_encodes_only_new_tokens(drafter):
    prompt = torch.tensor([[3, 4, 5, 6]])
    session = drafter.session(prompt)
    gen = torch.Generator().manual_seed(0)
    session.propose(prompt[:, :0], Choice.diffusion(4, 2), gen)
    assert session.encoded_length == 4 and session.cache.get_seq_length() == 4
    session.propose(torch.tensor([[9, 10]]), Choice.diffusion(4, 1), gen)
    assert session.encoded_length == 6 and session.cache.get_seq_length() == 6


def test_recycled_canvas_starts_from_the_shifted_tail(drafter):
    session = drafter.session(torch.tensor([[3, 4, 5]]))
    gen = torch.Generator().manual_seed(0)
    session.propose(torch.empty((1, 0), dtype=torch.long), Choice.diffusion(4, 1, True), gen)
    previous = session.last_canvas.clone()
    assert previous.shape == (1, CANVAS)  # recycling keeps the whole canvas, not only the block
    start, _ = session._starting_canvas(1, 3, True, gen)
    assert torch.equal(start[:, : CANVAS - 3], previous[:, 3:])
    assert not torch.equal(session._starting_canvas(1, 3, False, gen)[0][:, : CANVAS - 3], previous[:, 3:])
    session.propose(torch.tensor([[7]]), Choice.diffusion(4, 1), gen)  # without recycling only the block is kept...
    assert session.last_canvas.shape == (1, 4)
    assert session._starting_canvas(1, 1, True, gen)[0].shape == (1, CANVAS)  # ...and noise fills the rest


def test_early_stop_uses_fewer_steps_when_confident(drafter):
    # A huge confidence threshold makes the stable-and-confident stop fire after the stability window.
    engine = DiffusionGemmaDrafter(drafter.model, denoising=DenoisingConfig(confidence_threshold=1e9,
                                                                            stability_threshold=0))
    draft = engine.session(torch.tensor([[1, 2]])).propose(torch.empty((1, 0), dtype=torch.long),
                                                          Choice.diffusion(3, 8), torch.Generator().manual_seed(0))
    assert draft.denoising_steps_used == 1


def test_denoising_defaults_come_from_the_checkpoint(drafter):
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import (
        DiffusionGemmaGenerationConfig,
        EntropyBoundSamplerConfig,
    )

    config = DiffusionGemmaGenerationConfig(t_min=0.2, t_max=0.9, sampler_config=EntropyBoundSamplerConfig(0.3))
    parsed = DenoisingConfig.from_generation_config(config)
    assert (parsed.t_min, parsed.t_max, parsed.entropy_bound) == (0.2, 0.9, 0.3)
    assert parsed.stability_threshold == DenoisingConfig().stability_threshold  # unset: reference default


def test_auto_mode_proposes_argmax_for_greedy_and_resamples_for_sampling(drafter, verifier):
    from specdiff import SpeculativeDecoder

    engine = DiffusionGemmaDrafter(drafter.model)  # AUTO by default
    prompt = torch.tensor([[4, 8, 15, 16]])
    assert engine.session(prompt).mode is ProposalMode.ARGMAX
    assert engine.session(prompt, greedy=False).mode is ProposalMode.RESAMPLE
    assert DiffusionGemmaDrafter(drafter.model, proposal_mode="argmax").session(prompt, greedy=False).mode \
        is ProposalMode.ARGMAX  # an explicit mode is kept

    class Recording:
        """The real engine, recording which decode each session served."""

        def __init__(self, inner):
            self.inner, self.flags = inner, []
            self.canvas_length, self.vocab_size, self.tokenizer = inner.canvas_length, inner.vocab_size, None
            self.kind, self.max_block_size = inner.kind, inner.max_block_size

        def session(self, prompt_ids, greedy=True):
            self.flags.append(greedy)
            return self.inner.session(prompt_ids, greedy=greedy)

    recording = Recording(engine)
    decoder = SpeculativeDecoder(recording, verifier)
    decoder.generate([4, 8, 15], max_new_tokens=4, block_size=2, eos_token_id=[])
    decoder.generate([4, 8, 15], max_new_tokens=4, block_size=2, temperature=0.8, seed=0, eos_token_id=[])
    assert recording.flags == [True, False]


def jacobi_reference(drafter, prompt: torch.Tensor, block: int, steps: int, seed: int) -> tuple[torch.Tensor, int]:
    """A next-token canvas's greedy proposal, recomputed from scratch: the encoder's argmax first, then
    up to ``steps`` decoder passes, each feeding outputs 0..K-2 back into canvas positions 1..K-1."""
    from transformers import DynamicCache

    model = drafter.model
    cap = model.config.text_config.final_logit_softcapping
    canvas = torch.randint(0, drafter.vocab_size, (1, CANVAS), generator=torch.Generator().manual_seed(seed))
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    with torch.no_grad():
        encoded = model.model.encoder(input_ids=prompt, cache=cache, use_cache=True).last_hidden_state
        canvas[0, 0] = (torch.tanh(model.lm_head(encoded[:, -1]) / cap) * cap).argmax(-1)
        for used in range(1, steps + 1):
            outputs = model(decoder_input_ids=canvas, cache=cache).logits[:, : block - 1].argmax(-1)
            if used == steps or torch.equal(outputs, canvas[:, 1:block]):
                return torch.cat([canvas[:, :1], outputs], dim=1), used
            canvas[:, 1:block] = outputs


@pytest.mark.parametrize("block,steps", [(1, 1), (5, 1), (5, 3), (CANVAS, 6)])
def test_next_token_canvas_is_the_encoder_token_then_the_decoder_outputs_one_position_on(drafter, block, steps):
    engine = DiffusionGemmaDrafter(drafter.model, next_token_canvas=True)
    prompt = torch.tensor([[4, 8, 15, 16, 23, 42]])
    draft = engine.session(prompt).propose(prompt[:, :0], Choice.diffusion(block, steps),
                                           torch.Generator().manual_seed(3))
    tokens, used = jacobi_reference(engine, prompt, block, steps, seed=3)
    assert torch.equal(draft.tokens, tokens) and draft.denoising_steps_used == used
    assert draft.probs is None  # greedy: one-hot


def test_next_token_canvas_stops_at_its_fixed_point(drafter):
    """A pass that changes none of the block's inputs ends the loop, its outputs being those inputs
    (bidirectional passes need not settle: some canvases cycle until the step cap)."""
    engine = DiffusionGemmaDrafter(drafter.model, next_token_canvas=True)
    early = 0
    for seed in range(12):
        prompt = torch.randint(3, engine.vocab_size, (1, 6), generator=torch.Generator().manual_seed(seed))
        session = engine.session(prompt)
        draft = session.propose(prompt[:, :0], Choice.diffusion(3, 12), torch.Generator().manual_seed(seed))
        if draft.denoising_steps_used < 12:
            early += 1
            assert torch.equal(draft.tokens[:, 1:], session.last_canvas[:, 1:3])
    assert early > 0


def test_next_token_canvas_resamples_from_the_distributions_it_returns(drafter):
    """RESAMPLE: row 0 is the encoder's softmax (no temperature schedule), and over many seeds the
    second token's counts match its summed returned probabilities."""
    engine = DiffusionGemmaDrafter(drafter.model, proposal_mode=ProposalMode.RESAMPLE, next_token_canvas=True)
    prompt = torch.tensor([[7, 7, 9]])
    counts, expected = torch.zeros(engine.vocab_size), torch.zeros(engine.vocab_size)
    for seed in range(400):
        session = engine.session(prompt)
        draft = session.propose(prompt[:, :0], Choice.diffusion(2, 2), torch.Generator().manual_seed(seed))
        if seed == 0:
            torch.testing.assert_close(draft.probs[:, 0], torch.softmax(session.next_logits[:, 0], dim=-1))
        counts[draft.tokens[0, 1]] += 1
        expected += draft.probs[0, 1]
    top = expected.argsort(descending=True)[:8]
    observed = torch.cat([counts[top], counts.sum(0, keepdim=True) - counts[top].sum()])
    law = torch.cat([expected[top], expected.sum(0, keepdim=True) - expected[top].sum()]) / 400
    assert chi2_pvalue(observed, law) > 1e-3


def test_next_token_canvas_follows_the_checkpoint_and_refuses_what_it_cannot_do(drafter):
    from specdiff.drafts.diffusion_gemma import NEXT_TOKEN_KEY

    from specdiff.errors import SpecdiffError

    assert not DiffusionGemmaDrafter(drafter.model).next_token_canvas  # not recorded: DiffusionGemma's own canvas
    setattr(drafter.model.config, NEXT_TOKEN_KEY, True)
    try:
        assert DiffusionGemmaDrafter(drafter.model).next_token_canvas
    finally:
        delattr(drafter.model.config, NEXT_TOKEN_KEY)
    with pytest.raises(SpecdiffError, match="encoder_first_token"):
        DiffusionGemmaDrafter(drafter.model, next_token_canvas=True, encoder_first_token=False)
    engine = DiffusionGemmaDrafter(drafter.model, next_token_canvas=True)
    with pytest.raises(SpecdiffError, match="recycle_canvas=False"):
        engine.session(torch.tensor([[3, 4]])).propose(torch.empty((1, 0), dtype=torch.long),
                                                      Choice.diffusion(4, 1, True), torch.Generator())
