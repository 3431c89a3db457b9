"""Write the model profiles under ``evals/profiles/models`` from cited shapes.

Gemma 4 and DiffusionGemma profiles are derived from transformers configs of the published
shapes (``profile_from_config``: exact parameter counts, the model built on the meta device);
the derived totals are checked against the published ones (30.7B; 25.2B total / 3.8B active).
Drafters whose configs are not public in full (DFlash, the MTP assistant) are written from the
figures their sources give, with the uncertainty stated. The pocket pair's come from its shipped
configs. ``tests/evals/test_estimate.py`` re-derives the config-based ones and compares.

    .venv/bin/python benchmarks/estimate_profiles.py
"""

from __future__ import annotations

import json

from specdiff.evals.roofline import PROFILE_DIR, DraftMode, ModelProfile, Source, profile_from_config, profile_to_json

GEMMA_31B_SOURCES = (
    Source("60 layers, hidden 5376, 32 heads, vocabulary 262,144, 5:1 sliding:full, head dims 256 / 512, "
           "4 global KV heads with keys = values, tied embeddings",
           "https://huggingface.co/mlboydaisuke/Gemma-4-31B-CoreAI"),
    Source("16 KV heads (sliding layers), FFN 21,504, sliding window 1,024, 30.7B parameters",
           "https://apxml.com/models/gemma-4-31b"),
)
GEMMA_A4B_SOURCES = (
    Source("30 layers, 16 heads, 8 KV heads, head dim 256, 128 experts top-8, expert FFN 704, sliding window 1,024",
           "https://apxml.com/models/gemma-4-26b-a4b"),
    Source("25 sliding + 5 global layers; 25.2B total, 3.8B active", "https://www.colaberry.ai/aixcelerator/"
           "llm-architectures/gemma-4-26b-a4b"),
    Source("128 experts, top-8, plus a shared expert (the dense MLP)", "https://vast.ai/model/gemma-4-26b-a4b-it"),
    Source("hidden 2816, dense MLP 2112, global head dim 512, 2 global KV heads (public config mirrors; transformers' "
           "Gemma4TextConfig expert-parallel plan notes num_global_key_value_heads=2 for google/gemma-4-26B-A4B-it)",
           "https://github.com/huggingface/transformers/blob/main/src/transformers/models/gemma4/configuration_gemma4.py"),
)
DIFFUSION_SOURCES = GEMMA_A4B_SOURCES + (
    Source("DiffusionGemma is Gemma 4 26B-A4B patched into encoder and denoiser modes; canvas 256 tokens",
           "https://deepmind.google/models/gemma/diffusiongemma/"),
)


def gemma_text_kwargs(moe: bool) -> dict:
    """Gemma 4 31B (dense) or 26B-A4B (MoE) text-config arguments, per the sources above."""
    base = dict(vocab_size=262_144, head_dim=256, global_head_dim=512, attention_k_eq_v=True, sliding_window=1024,
                hidden_size_per_layer_input=0, vocab_size_per_layer_input=262_144, num_kv_shared_layers=0,
                tie_word_embeddings=True, final_logit_softcapping=30.0, use_double_wide_mlp=False)
    if not moe:
        return dict(base, hidden_size=5376, intermediate_size=21_504, num_hidden_layers=60, num_attention_heads=32,
                    num_key_value_heads=16, num_global_key_value_heads=4, enable_moe_block=False,
                    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 10)
    return dict(base, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30, num_attention_heads=16,
                num_key_value_heads=8, num_global_key_value_heads=2, enable_moe_block=True, num_experts=128,
                top_k_experts=8, moe_intermediate_size=704,
                layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 5)


def config_profiles() -> list[ModelProfile]:
    """The profiles derived from transformers configs."""
    from transformers import AutoConfig, DiffusionGemmaConfig, Gemma4TextConfig

    from specdiff.loaders import POCKET_DIR

    tiny_vision = {"model_type": "gemma4_vision", "hidden_size": 16, "num_hidden_layers": 1,
                   "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 32}
    pocket = (Source("specdiff's shipped pocket pair", "specdiff/pocket_models/README.md"),)
    return [
        profile_from_config(Gemma4TextConfig(**gemma_text_kwargs(False)), "gemma-4-31b", GEMMA_31B_SOURCES,
                            description="Gemma 4 31B dense (google/gemma-4-31B-it), text stack"),
        profile_from_config(Gemma4TextConfig(**gemma_text_kwargs(True)), "gemma-4-26b-a4b", GEMMA_A4B_SOURCES,
                            description="Gemma 4 26B-A4B MoE (google/gemma-4-26B-A4B-it) as a verifier"),
        profile_from_config(
            DiffusionGemmaConfig(text_config=gemma_text_kwargs(True), vision_config=tiny_vision, canvas_length=256),
            "diffusiongemma-26b-a4b", DIFFUSION_SOURCES,
            description="DiffusionGemma 26B-A4B (google/diffusiongemma-26b-a4b-it): a 256-token canvas per step"),
        profile_from_config(AutoConfig.from_pretrained(POCKET_DIR / "verifier"), "pocket-verifier", pocket,
                            description="the pocket Gemma 4 verifier"),
        profile_from_config(AutoConfig.from_pretrained(POCKET_DIR / "drafter"), "pocket-drafter", pocket,
                            description="the pocket DiffusionGemma drafter"),
    ]


def figure_profiles(verifier: ModelProfile) -> list[ModelProfile]:
    """Drafters for Gemma 4 31B known only from their published sizes (``verifier``: the 31B profile)."""
    common = dict(vocab_size=verifier.vocab_size, expert_params=0, num_experts=0, top_k_experts=0,
                  sliding_window=0, attention_flops_sliding=0, kv_per_token_sliding=0, canvas_length=0)
    dflash = ModelProfile(
        name="dflash-gemma-4-31b", description="z-lab DFlash block-diffusion drafter for gemma-4-31B-it",
        num_layers=5, hidden_size=verifier.hidden_size, dense_params=1_470_000_000,
        lm_head_params=verifier.lm_head_params, kv_per_token_full=5 * 2 * 8 * 128, attention_flops_full=5 * 4 * 4096,
        draft_mode=DraftMode.BLOCK,
        sources=(Source("5 trained layers; shares the target's embedding and LM head; 'a 2B drafter'",
                        "https://divinci.ai/blog/gemma4-dflash-speculative-decoding-for-free/"),
                 Source("its own weights: 2.94 GB in bf16 (1.47B parameters) as a GGUF without the shared head",
                        "https://huggingface.co/Anbeeld/gemma-4-31B-it-DFlash-GGUF"),
                 Source("one parallel forward drafts the block (16 tokens)", "https://huggingface.co/z-lab/gemma-4-31B-it-DFlash")),
        notes="Uncertain: attention widths (Qwen3-style, 32 x 128 queries, 8 x 128 KV heads) are assumed; they "
              "matter little at batch 1. The shared LM head is read again by every draft forward.",
        **common)
    mtp = ModelProfile(
        name="gemma-4-31b-mtp", description="Google's MTP assistant for Gemma 4 31B (google/gemma-4-31B-it-assistant)",
        num_layers=4, hidden_size=1024, dense_params=200_000_000, lm_head_params=262_144 * 1024,
        kv_per_token_full=0, attention_flops_full=4 * 4 * 1024, draft_mode=DraftMode.AUTOREGRESSIVE,
        sources=(Source("about 470M parameters", "https://onlylabs.fyi/signals/bdf07c85-5eb4-4573-b293-bc19df10e294"),
                 Source("4 Q-only attention layers reading the target's KV cache; a dense tied head on 26B-A4B / 31B",
                        "https://github.com/vllm-project/vllm/pull/41745"),),
        notes="Uncertain: the split of 470M between its layers and its head (hidden 1024 assumed) is not published. "
              "It drafts autoregressively: one forward per draft token.",
        **dict(common, vocab_size=verifier.vocab_size))
    return [dflash, mtp]


def main() -> None:
    profiles = config_profiles()
    by_name = {p.name: p for p in profiles}
    for name, total, active in (("gemma-4-31b", 30.7e9, None), ("gemma-4-26b-a4b", 25.2e9, 3.8e9)):
        p = by_name[name]
        print(f"{name}: {p.total_params / 1e9:.2f}B total (published {total / 1e9:.1f}B)"
              + (f", {p.active_params / 1e9:.2f}B active (published {active / 1e9:.1f}B)" if active else ""))
    out = PROFILE_DIR / "models"
    out.mkdir(parents=True, exist_ok=True)
    for p in profiles + figure_profiles(by_name["gemma-4-31b"]):
        (out / f"{p.name}.json").write_text(json.dumps(profile_to_json(p), indent=2) + "\n")
        print(f"wrote {out / (p.name + '.json')}")


if __name__ == "__main__":
    main()
