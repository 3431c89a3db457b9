"""Loading models and tokenizers from a local folder or a hub id, safely.

Both adapters load through here: safetensors only, remote code never, no progress bars, and each
way a load goes wrong becomes one ``SpecdiffError`` line that says what to do, checked before the
weights are read where it can be (``specdiff.model_checks``): a missing folder, a model of the
other kind (a drafter given as the verifier, or the reverse), a truncated weights file, a device
map naming a GPU torch cannot see, and a hub id that is neither cached nor reachable (which would
otherwise retry for half a minute).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from specdiff.errors import SpecdiffError
from specdiff.model_checks import check_device_map, check_model_files, hub_kwargs


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with no leading path marker; anything else is meant as a local folder.

    A name whose first component is an existing local folder (``models/verifier``) is a path.
    """
    if name.startswith((".", "/", "~")) or os.sep != "/" and os.sep in name:
        return False
    if Path(name.split("/")[0]).is_dir():
        return False
    parts = name.split("/")
    return len(parts) in (1, 2) and all(parts) and not name.endswith((".json", ".safetensors"))


def resolve_model_location(path_or_id: str | os.PathLike[str]) -> str:
    """Return a loadable location, refusing a local folder that does not exist or holds no model."""
    name = str(path_or_id)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise SpecdiffError(f"{folder} has no config.json; point at a folder saved with save_pretrained()")
        return str(folder)
    if looks_like_hub_id(name) and not folder.exists():
        return name
    raise SpecdiffError(
        f"model folder not found: {name}; pass an existing folder saved with save_pretrained() or a hub id"
    )


def load_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The caller's kwargs (dtype, device_map, ...) with safetensors forced on and remote code off."""
    if kwargs.get("trust_remote_code"):
        raise SpecdiffError("trust_remote_code is not supported: specdiff only loads transformers' own classes")
    if kwargs.get("use_safetensors") is False:
        raise SpecdiffError("specdiff loads safetensors weights only; convert the checkpoint to safetensors")
    return {**kwargs, "use_safetensors": True, "trust_remote_code": False}


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' weight-loading progress bars off for our own loads (restored after)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_model(model_cls: Any, path_or_id: str | os.PathLike[str], **kwargs: Any) -> Any:
    location = resolve_model_location(path_or_id)
    check_device_map(kwargs.get("device_map"))
    check_model_files(model_cls, location)
    try:
        with quiet_loading():
            model = model_cls.from_pretrained(location, **load_kwargs(kwargs), **hub_kwargs(location))
    except OSError as err:
        raise SpecdiffError(
            f"could not load {location}: {err.__class__.__name__}: {str(err).splitlines()[0]}; "
            "check the path or hub id, and that safetensors weights are there (or cached, when offline)"
        ) from err
    model.eval()
    return model


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def load_tokenizer(path_or_id: str | os.PathLike[str]) -> Any | None:
    """The tokenizer saved beside a model, or ``None`` when there is none."""
    from transformers import AutoTokenizer

    location = resolve_model_location(path_or_id)
    # Without tokenizer files AutoTokenizer still builds an empty tokenizer from the model config.
    if Path(location).is_dir() and not any((Path(location) / f).is_file() for f in TOKENIZER_FILES):
        return None
    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=False, **hub_kwargs(location))
    except (OSError, ValueError, TypeError, KeyError):
        return None


DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


def check_dtype_name(dtype: str | None) -> None:
    """None (the models' own dtype) or a name transformers loads weights in; else a clear error."""
    if dtype is not None and str(dtype).removeprefix("torch.") not in DTYPE_NAMES:
        raise SpecdiffError(f"unknown dtype {dtype!r}; pass one of {', '.join(DTYPE_NAMES)} (or leave it unset)")


def check_model_pair(drafter: str | None, verifier: str | None) -> None:
    """Both models named, or neither (the pocket pair): half a pair is a mistake, not a default."""
    if (drafter is None) != (verifier is None):
        raise SpecdiffError("name both --drafter and --verifier, or neither to use the pocket pair")
