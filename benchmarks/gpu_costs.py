"""GPU cost probe: time the forwards the cost model predicts, and write a hardware profile from them.

Builds random-weight Gemma 4 (verifier) and DiffusionGemma (drafter) models of the real shapes
(``--scale real``: Gemma 4 31B + DiffusionGemma 26B-A4B in bf16, about 111 GB, for a 141 GB
H200) or scaled ones (``small``, ``tiny``), then times, with a warm KV cache of ``--context``
tokens:

- a verifier forward over K new tokens, K = 1, 2, 4, ..., 256, logits for all K (rolled back after each);
- one DiffusionGemma denoising step: the decoder over the whole canvas against the encoder's
  cache, the LM head over every canvas position.

From the medians it fits the profile's bandwidth and compute efficiencies and per-forward
overhead (``specdiff.evals.calibrate.fit_hardware``) and writes a hardware profile JSON that
``specdiff estimate --hardware PATH`` reads, with the timings in its ``calibration`` field. No
network: configs are built in code, weights are random.

    .venv/bin/python benchmarks/gpu_costs.py --scale real --device cuda --base H200 --out h200_measured.json
    .venv/bin/python benchmarks/gpu_costs.py --scale tiny --device cpu --base CPU-1T --out /tmp/cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from estimate_profiles import gemma_text_kwargs  # noqa: E402 - the cited real shapes live there
from specdiff.evals.calibrate import Observation, fit_hardware  # noqa: E402
from specdiff.evals.estimate import Forward  # noqa: E402
from specdiff.evals.roofline import (  # noqa: E402
    Combine,
    Source,
    load_hardware,
    profile_from_config,
    profile_to_json,
)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TINY_VISION = {"model_type": "gemma4_vision", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
               "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 32}


def scaled_kwargs(moe: bool, scale: str) -> dict:
    """Text-config arguments: the real shape, or one scaled down in width, depth and vocabulary."""
    real = gemma_text_kwargs(moe)
    if scale == "real":
        return real
    small = scale == "small"
    layers = 6 if small else 2
    shape = dict(hidden_size=512 if small else 64, intermediate_size=2048 if small else 128,
                 num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, num_global_key_value_heads=1,
                 head_dim=64 if small else 16, global_head_dim=64 if small else 16, vocab_size=32_768 if small else 512,
                 vocab_size_per_layer_input=32_768 if small else 512, sliding_window=1024,
                 layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"])
    if moe:
        shape.update(num_experts=16 if small else 4, top_k_experts=4 if small else 2,
                     moe_intermediate_size=256 if small else 32, intermediate_size=512 if small else 64)
    return dict(real, **shape)


def build(scale: str, device: str, dtype: torch.dtype):
    """(verifier, drafter), random weights, eval mode, on ``device``."""
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion, Gemma4ForCausalLM, Gemma4TextConfig

    verifier_config = Gemma4TextConfig(**scaled_kwargs(False, scale))
    drafter_config = DiffusionGemmaConfig(text_config=scaled_kwargs(True, scale), vision_config=TINY_VISION,
                                          canvas_length=256)
    drafter_config.get_text_config()._experts_implementation = "grouped_mm"
    with torch.device(device):
        verifier = Gemma4ForCausalLM._from_config(verifier_config, dtype=dtype).eval()
        drafter = DiffusionGemmaForBlockDiffusion._from_config(drafter_config, dtype=dtype).eval()
    return verifier, drafter


def median_seconds(fn, device: str, repeats: int) -> float:
    fn()  # warm-up: first-call costs (allocation, kernel selection) land in no sample
    samples = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@torch.no_grad()
def time_verifier(model, context: int, widths: list[int], device: str, repeats: int) -> dict[int, float]:
    """Median seconds of a forward over K new tokens after ``context`` cached ones, per K."""
    from transformers import DynamicCache

    vocab = model.config.vocab_size
    cache = DynamicCache(config=model.config)
    cache.activate_past_recording()
    model(input_ids=torch.randint(0, vocab, (1, context), device=device), cache=cache, use_cache=True)
    cache.crop(0)
    out = {}
    for k in widths:
        ids = torch.randint(0, vocab, (1, k), device=device)

        def step(ids=ids, k=k):
            model(input_ids=ids, cache=cache, use_cache=True)
            cache.crop(-k)  # roll back, as a rejected draft is

        out[k] = median_seconds(step, device, repeats)
    return out


@torch.no_grad()
def time_denoising_step(model, context: int, device: str, repeats: int) -> float:
    """Median seconds of one denoising step: the decoder over the canvas, the head over all of it."""
    from transformers import DynamicCache

    canvas_length = model.config.canvas_length
    vocab = model.config.get_text_config().vocab_size
    cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    prompt = torch.randint(0, vocab, (1, context), device=device)
    canvas = torch.randint(0, vocab, (1, canvas_length), device=device)
    canvas_positions = torch.arange(context, context + canvas_length, device=device)[None]
    model.model(input_ids=prompt, cache=cache, decoder_input_ids=canvas,
                decoder_position_ids=canvas_positions, use_cache=True)  # the encoder fills the cache once

    def step():
        out = model.model(cache=cache, decoder_input_ids=canvas, decoder_position_ids=canvas_positions,
                          use_cache=True)  # the decoder never writes the cache
        model.lm_head(out.last_hidden_state)

    return median_seconds(step, device, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=("real", "small", "tiny"), default="real")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    parser.add_argument("--base", default="H200", help="hardware profile whose datasheet figures to start from")
    parser.add_argument("--name", default=None, help="name of the written profile (default: BASE-measured)")
    parser.add_argument("--context", type=int, default=512, help="cached tokens (below the sliding window)")
    parser.add_argument("--max-width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True, help="profile JSON to write")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(1)
    started = time.perf_counter()
    dtype_name = args.dtype
    verifier, drafter = build(args.scale, args.device, DTYPES[dtype_name])
    widths = [2**i for i in range(args.max_width.bit_length()) if 2**i <= args.max_width]
    verify = time_verifier(verifier, args.context, widths, args.device, args.repeats)
    denoise = time_denoising_step(drafter, args.context, args.device, args.repeats)
    source = (Source("random-weight model timed by benchmarks/gpu_costs.py", "benchmarks/gpu_costs.py"),)
    verifier_profile = profile_from_config(verifier.config, "probe-verifier", source)
    drafter_profile = profile_from_config(drafter.config, "probe-drafter", source)
    canvas = drafter.config.canvas_length
    observations = [Observation(verifier_profile, (Forward(1, k, k, args.context),), s, dtype_name, f"verify {k}")
                    for k, s in verify.items()]
    observations.append(Observation(drafter_profile, (Forward(1, canvas, canvas, args.context + canvas),), denoise,
                                    dtype_name, "denoising step"))
    base = load_hardware(args.base)
    combine = Combine.SUM if args.device == "cpu" else Combine.MAX
    fit = fit_hardware(base, observations, combine=combine)
    timings = ", ".join(f"verify K={k}: {s * 1e3:.2f} ms" for k, s in verify.items())
    profile = replace(fit.hardware, name=args.name or f"{base.name}-measured", round_overhead_ms=base.round_overhead_ms,
                      calibration=f"benchmarks/gpu_costs.py --scale {args.scale} on {args.device} ({dtype_name}, "
                                  f"context {args.context}): {timings}; denoising step over {canvas} tokens: "
                                  f"{denoise * 1e3:.2f} ms; worst fit error {fit.worst:.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(profile_to_json(profile), indent=2) + "\n")
    print(profile.calibration)
    print(f"bandwidth efficiency {profile.bandwidth_efficiency}, flops efficiency {profile.flops_efficiency}, "
          f"overhead {profile.overhead_ms} ms; wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
