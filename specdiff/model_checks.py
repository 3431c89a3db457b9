"""Checks on a model before its weights load: each failure is one line naming the problem and the fix.

- the kind: a folder's ``config.json`` (``model_type``, ``architectures``) says whether it holds a
  DiffusionGemma drafter or a causal LM, so a model given in the other's place is refused before
  transformers fails deep inside (a ``TypeError`` from the drafter, a list of ~200 config classes
  from the verifier's auto class);
- the weights: every ``.safetensors`` file's header is read and its size checked against the
  tensors it describes, so a truncated download is named, file and all;
- the device map: a map naming a GPU torch cannot see;
- the hub: an id that is not a local folder loads with ``local_files_only`` when the hub is
  unreachable (a quick probe instead of ten retries over half a minute), or is refused at once
  when it is not cached either.
"""

from __future__ import annotations

import functools
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from specdiff.errors import SpecdiffError

DIFFUSION_MODEL_TYPES = ("diffusion_gemma",)
HUB_PROBE_TIMEOUT_S = 1.5
MAX_HEADER_BYTES = 100_000_000  # a safetensors header is JSON about the tensors: megabytes at most


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpecdiffError(f"{path} cannot be read as JSON ({err}); save it again with save_pretrained()") from None
    if not isinstance(config, dict):
        raise SpecdiffError(f"{path} is not a model config (a JSON object); save it again with save_pretrained()")
    return config


def describe(config: dict[str, Any]) -> str:
    """``Gemma4ForCausalLM (model_type gemma4_text)``, for messages."""
    architectures = config.get("architectures") or ["an unnamed architecture"]
    return f"{architectures[0]} (model_type {config.get('model_type', 'unknown')})"


def is_diffusion(config: dict[str, Any]) -> bool:
    architectures = config.get("architectures") or []
    return config.get("model_type") in DIFFUSION_MODEL_TYPES or any("BlockDiffusion" in a for a in architectures)


def wants_diffusion(model_cls: Any) -> bool:
    return getattr(getattr(model_cls, "config_class", None), "model_type", None) in DIFFUSION_MODEL_TYPES


def check_kind(model_cls: Any, config: dict[str, Any], where: str) -> None:
    """Refuse a model of the other kind than ``model_cls`` loads, saying which flag it belongs to."""
    if wants_diffusion(model_cls) and not is_diffusion(config):
        raise SpecdiffError(
            f"{where} holds {describe(config)}, an autoregressive model, not a DiffusionGemma drafter; pass it as "
            "the verifier (--verifier) and a DiffusionGemmaForBlockDiffusion folder as the drafter (--drafter)"
        )
    if wants_diffusion(model_cls):
        return
    if is_diffusion(config):
        raise SpecdiffError(
            f"{where} holds {describe(config)}, a diffusion drafter, not a causal LM; pass it as the drafter "
            "(--drafter) and an autoregressive model (e.g. Gemma 4) as the verifier (--verifier)"
        )
    mapping = getattr(getattr(model_cls, "_model_mapping", None), "_model_mapping", None)
    if mapping is not None and config.get("model_type") not in mapping:
        raise SpecdiffError(
            f"{where} holds {describe(config)}, which transformers cannot load as a causal LM; the verifier must "
            "be an autoregressive model (AutoModelForCausalLM, e.g. Gemma 4)"
        )


def check_safetensors_file(path: Path) -> None:
    """The file's header parses and the file is as long as the tensors it describes."""
    size = path.stat().st_size
    fix = "download it again or save the model again with save_pretrained()"
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 0 or length > MAX_HEADER_BYTES or 8 + length > size:
            raise SpecdiffError(f"{path} is truncated or not a safetensors file ({size:,} bytes); {fix}")
        try:
            header = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SpecdiffError(f"{path} has a corrupt safetensors header; {fix}") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    needed = 8 + length + max(ends, default=0)
    if size < needed:
        raise SpecdiffError(f"{path} is truncated: {size:,} bytes, its header describes {needed:,}; {fix}")


def check_weights(folder: Path) -> None:
    """A local model folder has safetensors weights, none truncated, every indexed shard present."""
    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError):
            raise SpecdiffError(f"{index} is not a safetensors index; save it again with save_pretrained()") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise SpecdiffError(f"{folder} lacks {len(missing)} weight shard(s) its index lists, e.g. {missing[0]}; "
                                "finish the download")
    if not files:
        raise SpecdiffError(f"{folder} has no .safetensors weights (specdiff loads safetensors only); save the "
                            "model with save_pretrained(), whose default format is safetensors")
    for path in files:
        check_safetensors_file(path)


def check_model_files(model_cls: Any, location: str) -> None:
    """Everything about the model that can be checked before its weights load."""
    folder = Path(location)
    if folder.is_dir():
        check_kind(model_cls, read_config(folder), str(folder))
        check_weights(folder)
        return
    hub_kwargs(location)  # refuses an id that is neither cached nor reachable
    cached = cached_hub_file(location, "config.json")
    if cached is not None:
        check_kind(model_cls, read_config(Path(cached).parent), location)


def check_device_map(device_map: Any) -> None:
    """A device map that names a GPU needs torch to see one."""
    if device_map is None:
        return
    values = device_map.values() if isinstance(device_map, dict) else [device_map]
    wants_cuda = any(isinstance(v, int) and not isinstance(v, bool) or "cuda" in str(v) for v in values)
    wants_mps = any("mps" in str(v) for v in values)
    import torch

    if wants_cuda and not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        raise SpecdiffError(f"device map {device_map!r} needs a CUDA GPU, and {why} (torch {torch.__version__}); "
                            "leave --device-map out (or pass cpu) to run on the CPU")
    if wants_mps and not torch.backends.mps.is_available():
        raise SpecdiffError(f"device map {device_map!r} needs Apple's MPS, which this machine lacks; "
                            "leave --device-map out (or pass cpu) to run on the CPU")


# -- the hub ---------------------------------------------------------------------------------------------


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """The cached copy of one file of a hub repo, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None


def hub_offline() -> str | None:
    """Why the hub cannot be reached (offline mode, or a failed probe of its endpoint), or None."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    return _probe(constants.ENDPOINT)


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str) -> str | None:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except OSError as err:
        return f"{url.hostname}:{port} cannot be reached: {err.strerror or err}"


def hub_kwargs(location: str) -> dict[str, Any]:
    """``from_pretrained`` kwargs for a hub id: ``local_files_only`` when the hub is unreachable, so
    a cached model loads at once; a model neither cached nor reachable is refused here."""
    if Path(location).is_dir():
        return {}
    reason = hub_offline()
    if reason is None:
        return {}
    if cached_hub_file(location, "config.json") is None:
        from huggingface_hub import constants

        raise SpecdiffError(
            f"{location} is not a local folder, not in the hub cache ({constants.HF_HUB_CACHE}), and the hub is "
            f"out of reach ({reason}); pass a local folder saved with save_pretrained(), or download the model "
            f"first where there is network (hf download {location})"
        )
    return {"local_files_only": True}
