"""One-way layering, checked on the source: no module imports from a layer above its own.

    .venv/bin/python -m pytest -q tests/test_layers.py

Layers, lowest first: the core (acceptance, sampling, the decode loop, controllers, metrics, the
protocols), the adapters (draft engines and verifier adapters, which import only the core and not
each other), the loaders (ready decoders), the evals, and on top the CLI, the server and the training
recipes.
Every import counts, including those inside functions: a lazy import upward is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Installed name -> folder (pyproject's package-dir mapping).
FOLDERS = {"specdiff.drafts": "drafts", "specdiff.verifiers": "verifiers", "specdiff.evals": "evals",
           "specdiff": "specdiff"}
CORE, ADAPTERS, LOADERS, EVALS, TOP = "core", "adapters", "loaders", "evals", "top"
# What each layer may import (its own layer included, except that the two adapters stay apart).
ALLOWED = {
    CORE: {CORE},
    "drafts": {CORE, "drafts"},
    "verifiers": {CORE, "verifiers"},
    LOADERS: {CORE, "drafts", "verifiers", LOADERS},
    EVALS: {CORE, "drafts", "verifiers", LOADERS, EVALS},
    TOP: {CORE, "drafts", "verifiers", LOADERS, EVALS, TOP},
}
MAX_LINES = 400


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[:2] in (["specdiff", "drafts"], ["specdiff", "verifiers"]):
        return parts[1]
    if parts[:2] == ["specdiff", "evals"]:
        return EVALS
    if len(parts) > 1 and (parts[1] in ("loaders", "pairs")):
        return LOADERS
    if len(parts) > 1 and (parts[1].startswith("cli") or parts[1] in ("training", "server", "__main__")):
        return TOP
    return CORE


def modules() -> dict[str, Path]:
    """Every module of the package, by installed name."""
    found = {}
    for package, folder in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            if package == "specdiff" and path.relative_to(base).parts[0] in ("drafts", "verifiers", "evals"):
                continue
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports_of(path: Path, module: str) -> set[str]:
    """The specdiff modules ``path`` imports (relative imports resolved against ``module``)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    return {n for n in names if n == "specdiff" or n.startswith("specdiff.")}


def violations() -> list[str]:
    found = []
    for module, path in sorted(modules().items()):
        if module == "specdiff":  # the facade: lazy re-exports of every layer's public names
            continue
        mine = layer_of(module)
        for target in sorted(imports_of(path, module)):
            if target == "specdiff":
                continue
            if layer_of(target) not in ALLOWED[mine]:
                found.append(f"{module} ({mine}) imports {target} ({layer_of(target)})")
    return found


def test_no_module_imports_from_a_higher_layer():
    assert violations() == []


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a core module importing the CLI is caught."""
    fake = tmp_path / "specdiff"
    fake.mkdir()
    (fake / "decoding.py").write_text("def f():\n    from specdiff.cli import app\n")
    assert imports_of(fake / "decoding.py", "specdiff.decoding") == {"specdiff.cli", "specdiff.cli.app"}
    assert layer_of("specdiff.cli") == TOP and TOP not in ALLOWED[layer_of("specdiff.decoding")]
    assert layer_of("specdiff.verifiers.causal_lm") not in ALLOWED[layer_of("specdiff.drafts.ngram")]


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_over_400_lines(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by what its parts are"
