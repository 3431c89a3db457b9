"""A roofline of one forward pass, and the hardware and model profiles it reads.

At batch 1 a forward pass of N new tokens costs

    seconds = overhead + layers x overhead_per_layer + combine(bytes / (bandwidth x eff_bw), flops / (peak x eff_flops))

where ``combine`` is ``max`` (a roofline: the slower of reading the weights and doing the maths) or
``sum`` (no overlap; what a CPU running one thread does). The bytes are the weights the forward
reads, dense parameters always and, for a mixture of experts, only the experts some token routes
to (``experts_touched``), plus the KV cache it attends over. The FLOPs are 2 x active parameters x
tokens, the LM head over the positions whose logits are needed, and attention over the context.

Profiles are small JSON files under ``evals/profiles`` (``hardware/*.json``, ``models/*.json``),
each citing the source of every figure. They are validated on load: a missing or unknown field
is a ``SpecdiffError`` naming the file and the field. ``profile_from_config`` derives a model
profile from a transformers config (exact parameter counts, the model built on the meta device).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from specdiff.errors import SpecdiffError

PROFILE_DIR = Path(__file__).parent / "profiles"
# Bytes a weight takes in memory. fp4 is 4 bits plus one 8-bit scale per 16 weights (NVFP4; AWQ
# int4 with group 128 is 4.25 bits, close enough for a roofline).
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp8": 1.0, "fp4": 0.5625}
# A denoising step that samples its canvas passes over float32 logits about six times (soft-cap and
# temperature, softmax, entropy, the draw, the keep mask): an assumption, 6 x 4 bytes per logit.
SAMPLER_BYTES_PER_LOGIT = 24.0


class DraftMode(Enum):
    """How a drafter spends forwards on one round's draft."""

    CANVAS = "canvas"  # diffusion: each denoising step is a forward over the whole canvas (DiffusionGemma)
    BLOCK = "block"  # block diffusion: each step is a forward over the block only (DFlash)
    AUTOREGRESSIVE = "autoregressive"  # one 1-token forward per draft token (an MTP head, a small AR model)
    NONE = "none"  # a model that is only ever a verifier


class Combine(Enum):
    """How a forward's memory time and compute time add up."""

    MAX = "max"
    SUM = "sum"


@dataclass(frozen=True)
class Source:
    """Where a figure in a profile comes from."""

    figure: str
    url: str
    note: str = ""


@dataclass(frozen=True)
class HardwareProfile:
    """One accelerator (or CPU) at batch 1: its datasheet and its fitted efficiency.

    Attributes:
        memory_bandwidth_gbs: peak memory bandwidth, GB/s (1e9 bytes).
        peak_tflops: peak dense throughput per weight dtype, TFLOP/s (1e12).
        bandwidth_efficiency, flops_efficiency: the share of each peak a forward reaches (fitted).
        overhead_ms: fixed cost of one forward call (kernel launches, the framework), fitted.
        overhead_per_layer_ms: extra fixed cost per layer (large on a CPU in eager PyTorch).
        round_overhead_ms: per speculative round outside any forward (acceptance, rollback).
        combine: ``max`` or ``sum`` of memory and compute time.
    """

    name: str
    description: str
    memory_bandwidth_gbs: float
    peak_tflops: dict[str, float]
    memory_gb: float
    bandwidth_efficiency: float
    flops_efficiency: float
    overhead_ms: float
    overhead_per_layer_ms: float
    round_overhead_ms: float
    combine: Combine
    sources: tuple[Source, ...]
    calibration: str = ""
    notes: str = ""

    def peak_flops(self, dtype: str) -> float:
        """FLOP/s at ``dtype``; an fp4 or fp8 model on hardware without that unit runs at the next wider one."""
        check_dtype(dtype)
        for candidate in ("fp4", "fp8", "bf16", "fp32")[("fp4", "fp8", "bf16", "fp32").index(dtype):]:
            if candidate in self.peak_tflops:
                return self.peak_tflops[candidate] * 1e12
        raise SpecdiffError(f"hardware {self.name!r} lists no peak throughput at {dtype} or wider")


@dataclass(frozen=True)
class ModelProfile:
    """What one forward of a model reads and computes, per token.

    Attributes:
        dense_params: parameters every forward reads (attention, norms, dense MLP, routers), not
            the embedding table or the LM head.
        lm_head_params: the output projection (the embedding table when tied).
        expert_params: all routed experts of all layers; each token uses ``top_k_experts`` of
            ``num_experts`` in every MoE layer (0 experts: a dense model).
        kv_per_token_full, kv_per_token_sliding: cached K/V elements per token, summed over the
            full-attention and the sliding-window layers.
        attention_flops_full, attention_flops_sliding: FLOPs per (new token, cached token) pair.
        draft_mode, canvas_length: how the model drafts (a verifier: ``none``, canvas 0).
    """

    name: str
    description: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    dense_params: int
    lm_head_params: int
    expert_params: int
    num_experts: int
    top_k_experts: int
    kv_per_token_full: int
    kv_per_token_sliding: int
    sliding_window: int
    attention_flops_full: int
    attention_flops_sliding: int
    draft_mode: DraftMode
    canvas_length: int
    sources: tuple[Source, ...]
    notes: str = ""

    @property
    def total_params(self) -> int:
        return self.dense_params + self.lm_head_params + self.expert_params

    @property
    def active_params(self) -> float:
        """Parameters one token uses (head included)."""
        share = self.top_k_experts / self.num_experts if self.num_experts else 0.0
        return self.dense_params + self.lm_head_params + self.expert_params * share


# -- the roofline ------------------------------------------------------------------------------------


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPE_BYTES:
        raise SpecdiffError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BYTES)}")


def experts_touched(num_tokens: float, num_experts: int, top_k: int) -> float:
    """Expected experts of one layer that at least one of ``num_tokens`` routes to.

    Each token picks ``top_k`` of ``num_experts``; treating tokens as independent and uniform, an
    expert is missed by all with probability (1 - k/E)^N. One token touches k; a 256-token canvas
    at top-8 of 128 touches all but 128 x (120/128)^256, about 1e-5 of an expert.
    """
    if num_experts == 0 or num_tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** num_tokens)


def memory_warning(hardware: HardwareProfile, models: tuple[ModelProfile, ...], dtype: str) -> str | None:
    """A sentence when the models' weights at ``dtype`` do not fit in the hardware's memory, else None."""
    weights_gb = sum(m.total_params for m in models) * DTYPE_BYTES[dtype] / 1e9
    if weights_gb <= hardware.memory_gb:
        return None
    return (f"both models' weights take {weights_gb:.0f} GB at {dtype}, more than the {hardware.memory_gb:.0f} GB "
            f"of {hardware.name}; try a narrower dtype")


def kv_bytes_per_element(dtype: str) -> float:
    """KV cache entries stay 16-bit when the weights are quantized (the common serving default)."""
    return 4.0 if dtype == "fp32" else 2.0


def weight_bytes(model: ModelProfile, tokens: float, head_positions: float, dtype: str) -> float:
    """Bytes of weights one forward over ``tokens`` new tokens reads (the head only if it runs)."""
    check_dtype(dtype)
    experts = model.expert_params / model.num_experts * experts_touched(tokens, model.num_experts,
                                                                        model.top_k_experts) if model.num_experts else 0
    head = model.lm_head_params if head_positions > 0 else 0
    return (model.dense_params + head + experts) * DTYPE_BYTES[dtype]


def kv_bytes(model: ModelProfile, context: float, dtype: str) -> float:
    """Bytes of KV cache read by one forward attending over ``context`` cached tokens."""
    elements = model.kv_per_token_full * context + model.kv_per_token_sliding * min(context, model.sliding_window)
    return elements * kv_bytes_per_element(dtype)


def forward_flops(model: ModelProfile, tokens: float, head_positions: float, context: float) -> float:
    """FLOPs of one forward: 2 x active body parameters x tokens, the head, and attention."""
    share = model.top_k_experts / model.num_experts if model.num_experts else 0.0
    body = 2.0 * tokens * (model.dense_params + model.expert_params * share)
    head = 2.0 * head_positions * model.lm_head_params
    # Each new token attends to the cache and to the new tokens before it (about half of them).
    span = context + tokens / 2.0
    attention = tokens * (model.attention_flops_full * span
                          + model.attention_flops_sliding * min(span, model.sliding_window))
    return body + head + attention


def combine_times(memory_s: float, compute_s: float, combine: Combine) -> float:
    return max(memory_s, compute_s) if combine is Combine.MAX else memory_s + compute_s


def forward_bytes(model: ModelProfile, tokens: float, head_positions: float, context: float, dtype: str,
                  sampled_positions: float = 0.0) -> float:
    """Bytes one forward moves: weights, KV cache, and the sampler's passes over sampled logits."""
    sampler = sampled_positions * model.vocab_size * SAMPLER_BYTES_PER_LOGIT
    return weight_bytes(model, tokens, head_positions, dtype) + kv_bytes(model, context, dtype) + sampler


def forward_seconds(hardware: HardwareProfile, model: ModelProfile, tokens: float, head_positions: float,
                    context: float, dtype: str, sampled_positions: float = 0.0) -> float:
    """Predicted wall-clock seconds of one forward of ``model`` on ``hardware`` (and of sampling
    ``sampled_positions`` of its output, as a denoising step that renoises its canvas does)."""
    memory_s = forward_bytes(model, tokens, head_positions, context, dtype, sampled_positions) / (
        hardware.memory_bandwidth_gbs * 1e9 * hardware.bandwidth_efficiency)
    compute_s = forward_flops(model, tokens, head_positions, context) / (
        hardware.peak_flops(dtype) * hardware.flops_efficiency)
    fixed_s = (hardware.overhead_ms + hardware.overhead_per_layer_ms * model.num_layers) / 1e3
    return fixed_s + combine_times(memory_s, compute_s, hardware.combine)


# -- profiles on disk ------------------------------------------------------------------------------------


def known_profiles(kind: str) -> list[str]:
    """Names of the shipped ``hardware`` or ``models`` profiles."""
    return sorted(p.stem for p in (PROFILE_DIR / kind).glob("*.json"))


def _profile_path(name_or_path: str | Path, kind: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise SpecdiffError(f"no {kind} profile at {path}")
        return path
    for known in known_profiles(kind):
        if known.lower() == str(name_or_path).lower():
            return PROFILE_DIR / kind / f"{known}.json"
    raise SpecdiffError(f"unknown {kind} profile {str(name_or_path)!r}; known: {', '.join(known_profiles(kind))} "
                        "(or give a path to a .json profile)")


def _build(cls: type, data: dict[str, Any], path: Path) -> Any:
    """``cls`` from a profile's fields, refusing missing, unknown or mistyped ones by name."""
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names) - {"kind"})
    if unknown:
        raise SpecdiffError(f"{path}: unknown field {unknown[0]!r} (fields: {', '.join(names)})")
    missing = [n for n, f in names.items() if n not in data and f.default is MISSING]
    if missing:
        raise SpecdiffError(f"{path}: missing field {missing[0]!r}")
    values = {}
    for name, value in data.items():
        if name == "kind":
            continue
        field_type = str(names[name].type)
        try:
            if name == "sources":
                values[name] = tuple(Source(**s) for s in value)
            elif name == "peak_tflops":
                values[name] = {str(k): float(v) for k, v in value.items()}
            elif field_type in ("int", "float", "str"):
                if isinstance(value, bool) or (field_type != "str" and not isinstance(value, int | float)):
                    raise TypeError(f"expected a {field_type}")
                values[name] = {"int": int, "float": float, "str": str}[field_type](value)
            else:
                enum = {"DraftMode": DraftMode, "Combine": Combine}[field_type]
                values[name] = enum(value)
        except (TypeError, ValueError, AttributeError) as err:
            raise SpecdiffError(f"{path}: field {name!r} is invalid ({err})") from None
    profile = cls(**values)
    for name in ("memory_bandwidth_gbs", "bandwidth_efficiency", "flops_efficiency", "num_layers", "hidden_size"):
        if name in names and not getattr(profile, name) > 0:
            raise SpecdiffError(f"{path}: field {name!r} must be > 0")
    if not profile.sources:
        raise SpecdiffError(f"{path}: field 'sources' is empty; cite where the figures come from")
    return profile


def load_hardware(name_or_path: str | Path) -> HardwareProfile:
    """A shipped hardware profile by name (``H100``, ``RTX5090``, ...) or a ``.json`` file."""
    path = _profile_path(name_or_path, "hardware")
    return _build(HardwareProfile, _read_json(path), path)


def load_model_profile(name_or_path: str | Path) -> ModelProfile:
    """A shipped model profile by name (``gemma-4-31b``, ...) or a ``.json`` file."""
    path = _profile_path(name_or_path, "models")
    return _build(ModelProfile, _read_json(path), path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SpecdiffError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SpecdiffError(f"{path} must hold one JSON object")
    return data


def profile_to_json(profile: HardwareProfile | ModelProfile) -> dict[str, Any]:
    """The JSON object ``load_hardware`` / ``load_model_profile`` read back to an equal profile."""
    out: dict[str, Any] = {"kind": "hardware" if isinstance(profile, HardwareProfile) else "model"}
    for f in fields(profile):
        value = getattr(profile, f.name)
        if isinstance(value, Enum):
            value = value.value
        elif f.name == "sources":
            value = [vars(s) for s in value]
        out[f.name] = value
    return out


# -- a model profile from a transformers config --------------------------------------------------------


def profile_from_config(config: Any, name: str, sources: tuple[Source, ...], draft_mode: DraftMode | None = None,
                        description: str = "", notes: str = "") -> ModelProfile:
    """Exact parameter counts of a Gemma 4 (or any causal LM) or DiffusionGemma config.

    The model is built on the meta device (no memory, no weights), and its parameters are sorted
    by name: ``experts`` are routed experts, ``embed_tokens`` the embedding (the head when tied),
    vision parts are left out, the rest is dense. KV widths come from each layer's ``k_proj`` and
    ``v_proj`` (a layer with keys equal to values caches one of them).
    """
    import torch

    diffusion = getattr(config, "model_type", "") == "diffusion_gemma"
    with torch.device("meta"):
        if diffusion:
            from transformers import DiffusionGemmaForBlockDiffusion

            model = DiffusionGemmaForBlockDiffusion(config)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config(decoder=True) if diffusion else config
    counts = {"dense": 0, "head": 0, "experts": 0}
    kv = {"full": 0, "sliding": 0}
    attention = {"full": 0, "sliding": 0}
    layer_types = list(getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers)
    for pname, param in model.named_parameters(remove_duplicate=True):
        if "vision" in pname or "multi_modal" in pname:
            continue
        size = param.numel()
        if ".experts." in pname:
            counts["experts"] += size
        elif "embed_tokens" in pname or pname.startswith("lm_head"):
            counts["head"] += size
        else:
            counts["dense"] += size
        layer = _layer_index(pname)
        if layer is not None and pname.endswith(("k_proj.weight", "v_proj.weight", "q_proj.weight")):
            kind = "sliding" if layer_types[layer] == "sliding_attention" else "full"
            if pname.endswith("q_proj.weight"):
                attention[kind] += 4 * param.shape[0]  # QK^T and AV, 2 FLOPs per multiply-add each
            else:
                kv[kind] += param.shape[0]
    tied = bool(getattr(config, "tie_word_embeddings", False)) or counts["head"] == text.vocab_size * text.hidden_size
    if not tied:  # the input table is only looked up; the head is read whole
        counts["head"] = text.vocab_size * text.hidden_size
    mode = draft_mode or (DraftMode.CANVAS if diffusion else DraftMode.NONE)
    return ModelProfile(
        name=name, description=description, num_layers=int(text.num_hidden_layers),
        hidden_size=int(text.hidden_size), vocab_size=int(text.vocab_size), dense_params=counts["dense"],
        lm_head_params=counts["head"], expert_params=counts["experts"],
        num_experts=int(getattr(text, "num_experts", 0) or 0) if counts["experts"] else 0,
        top_k_experts=int(getattr(text, "top_k_experts", 0) or 0) if counts["experts"] else 0,
        kv_per_token_full=kv["full"], kv_per_token_sliding=kv["sliding"],
        sliding_window=int(getattr(text, "sliding_window", None) or 0),
        attention_flops_full=attention["full"], attention_flops_sliding=attention["sliding"],
        draft_mode=mode, canvas_length=int(getattr(config, "canvas_length", 0) or 0) if diffusion else 0,
        sources=sources, notes=notes,
    )


def _layer_index(pname: str) -> int | None:
    parts = pname.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None
