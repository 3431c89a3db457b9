"""Prompt suites: the prompts the sweep and the bench run.

A suite is a JSONL file, one prompt a line::

    {"id": "code-000", "prompt": "    def close(self):\\n        ...\\n", "source": "ftplib.py:312"}

``id`` (a unique string) and ``prompt`` (a non-empty string) are required; any other key (the
shipped suites add ``source``) is kept as metadata. Wherever a suite is asked for, pass a shipped
suite's name, a ``.jsonl`` path, or a ``.csv`` / ``.parquet`` table with a ``prompt`` column (and
an optional ``id`` column; the row number otherwise).

Shipped suites, of clearly different predictability, 30 prompts each:

``code``
    Code continuation: up to 24 lines (600 characters) of a held-out standard-library file, cut
    at a line inside a function body; the model continues the code.
``functions``
    Function bodies: a held-out function's ``def`` line(s) and docstring; the model writes the body.
``prose``
    Not code: a paragraph or two of a software licence from ``/usr/share/common-licenses``
    (Apache, GPL, LGPL, MPL, GFDL, Artistic, CC0); the model continues the legal English.
``packages`` (held out)
    Code continuation, as ``code``, from the sources of installed third-party packages (rich,
    pandas, click, ...): never used to tune a policy, only to check one.

The code suites come from ``specdiff.training.corpus.heldout_files()``, files the pocket pair never saw.
``python -m specdiff.evals.suites`` rebuilds the shipped files; the choice is seeded and a pure
function of the files' contents, so the same Python and the same licence files give the same
suites byte for byte.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from specdiff.errors import SpecdiffError

SUITES_DIR = Path(__file__).resolve().parent / "suites"
BUILTIN_SUITES = ("code", "functions", "prose")
# Held out from every tuning decision: policies' constants are chosen on BUILTIN_SUITES only and
# checked here (the tiny tokenizer, trained on BUILTIN_SUITES, never sees these either).
HELDOUT_SUITES = ("packages",)
# Installed packages the project depends on, whose sources the ``packages`` suite cuts prompts from.
PACKAGES = ("rich", "typer", "click", "packaging", "pandas", "huggingface_hub", "jinja2", "fsspec", "filelock",
            "pygments", "hypothesis", "matplotlib", "accelerate")
# Chat suites hold user messages marked "chat": true, run through the verifier's chat template
# (specdiff.evals.chat_prompts builds them and says how). Kept apart: the tiny tokenizer trains on BUILTIN_SUITES.
CHAT_SUITES = ("chat",)
PROMPTS_PER_SUITE = 30
MAX_PROMPT_CHARS = 600  # about 150-200 pocket tokens: prompt + 64 new tokens fits the 256 it trained on
MAX_PROMPT_LINES = 24
LICENCES_DIR = Path("/usr/share/common-licenses")
LICENCES = (
    "Apache-2.0",
    "Artistic",
    "CC0-1.0",
    "GFDL-1.3",
    "GPL-2",
    "GPL-3",
    "LGPL-2.1",
    "MPL-1.1",
    "MPL-2.0",
)


@dataclass(frozen=True)
class Prompt:
    id: str
    prompt: str
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def decoder_input(self) -> str | list[dict[str, str]]:
        """What to hand the decoder: a chat suite's prompt is the user's message (the tokenizer's
        chat template applies), any other the text to continue."""
        return [{"role": "user", "content": self.prompt}] if self.meta.get("chat") else self.prompt


@dataclass(frozen=True)
class Suite:
    """A named list of prompts."""

    name: str
    prompts: tuple[Prompt, ...]

    def __len__(self) -> int:
        return len(self.prompts)


# -- loading ----------------------------------------------------------------------------------------


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a user's ``.jsonl``, ``.csv`` or ``.parquet`` file (see module docs)."""
    text = str(name_or_path)
    if text in BUILTIN_SUITES + HELDOUT_SUITES + CHAT_SUITES:
        return Suite(text, _read_jsonl(SUITES_DIR / f"{text}.jsonl"))
    path = Path(text).expanduser()
    if not path.is_file():
        names = ", ".join(BUILTIN_SUITES + HELDOUT_SUITES + CHAT_SUITES)
        raise SpecdiffError(f"unknown suite {text!r}: pass one of {names} or a .jsonl, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        prompts = _read_jsonl(path)
    elif suffix in (".csv", ".parquet"):
        prompts = _read_table(path)
    else:
        raise SpecdiffError(f"suite file {path} must end in .jsonl, .csv or .parquet")
    return Suite(path.stem, prompts)


def _read_jsonl(path: Path) -> tuple[Prompt, ...]:
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise SpecdiffError(f"{path}:{number} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or "id" not in record or "prompt" not in record:
            raise SpecdiffError(f'{path}:{number} needs an object with "id" and "prompt" keys')
        meta = {k: v for k, v in record.items() if k not in ("id", "prompt")}
        prompts.append(Prompt(str(record["id"]), record["prompt"], meta))
    return _checked(prompts, str(path))


def _read_table(path: Path) -> tuple[Prompt, ...]:
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    if "prompt" not in frame.columns:
        raise SpecdiffError(f"{path} has no 'prompt' column (columns: {', '.join(map(str, frame.columns))})")
    ids = frame["id"].astype(str) if "id" in frame.columns else pd.Series(range(len(frame))).astype(str)
    return _checked([Prompt(i, p) for i, p in zip(ids, frame["prompt"], strict=True)], str(path))


def _checked(prompts: list[Prompt], where: str) -> tuple[Prompt, ...]:
    if not prompts:
        raise SpecdiffError(f"suite {where} holds no prompts")
    seen: set[str] = set()
    for p in prompts:
        if not isinstance(p.prompt, str) or not p.prompt:
            raise SpecdiffError(f"suite {where}: prompt {p.id!r} is empty or not a string")
        if p.id in seen:
            raise SpecdiffError(f"suite {where}: prompt id {p.id!r} appears twice; ids must be unique")
        seen.add(p.id)
    return tuple(prompts)


def write_suite(prompts: Iterable[Prompt], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for p in prompts:
            out.write(json.dumps({"id": p.id, "prompt": p.prompt, **p.meta}, ensure_ascii=False) + "\n")


# -- building the shipped suites ---------------------------------------------------------------------


def _round_robin(groups: Sequence[list[Prompt]], n: int) -> list[Prompt]:
    """Take one from each group in turn until ``n`` are taken: prompts spread over all sources."""
    queues = [list(g) for g in groups if g]
    taken: list[Prompt] = []
    while len(taken) < n and queues:
        for q in queues:
            if q and len(taken) < n:
                taken.append(q.pop(0))
        queues = [q for q in queues if q]
    if len(taken) < n:
        raise SpecdiffError(f"only {len(taken)} candidate prompts; a suite needs {n}")
    return taken


def _functions_of(source: str) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _is_table_module(source: str) -> bool:
    # The charmap codecs are a few lines of code around a 256-entry table; their tables would
    # make "code" look far more predictable than code is.
    return "decoding_table = (" in source or "encoding_map = {" in source


def _heldout_sources() -> list[tuple[str, str]]:
    from specdiff.evals.corpus import heldout_files, read_source

    return [(rel, read_source(rel)) for rel in heldout_files() if not _is_table_module(read_source(rel))]


def _package_sources(packages: Sequence[str] = PACKAGES) -> list[tuple[str, str]]:
    """``(path, text)`` of every module of ``packages`` (tests and vendored code left out), sorted."""
    import importlib.util

    sources = []
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SpecdiffError(f"package {name} is not installed; the packages suite is built from {PACKAGES}")
        root = Path(spec.origin).parent
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root.parent).as_posix()
            if "test" in rel or "vendor" in rel:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if not _is_table_module(text):
                sources.append((rel, text))
    return sources


def _tail(lines: list[str], end: int) -> str:
    """The last lines before ``end``, at most MAX_PROMPT_LINES lines and MAX_PROMPT_CHARS characters."""
    start = max(0, end - MAX_PROMPT_LINES)
    while start < end - 1 and sum(len(x) for x in lines[start:end]) > MAX_PROMPT_CHARS:
        start += 1
    return "".join(lines[start:end])


def code_prompts(sources: Sequence[tuple[str, str]], n: int = PROMPTS_PER_SUITE) -> list[Prompt]:
    """Code continuation: the lines before a statement inside a function body."""
    groups = []
    for rel, source in sources:
        lines = source.splitlines(keepends=True)
        cuts = set()
        for fn in _functions_of(source):
            body = fn.body[1:] if ast.get_docstring(fn) else fn.body
            cuts.update(stmt.lineno - 1 for stmt in body if stmt.lineno - 1 >= 8)  # 0-based, some context
        rng = random.Random(f"code:{rel}")
        picks = rng.sample(sorted(cuts), min(2, len(cuts)))
        groups.append(
            [
                Prompt("", _tail(lines, cut), {"source": f"{rel}:{cut + 1}"})
                for cut in picks
                if len(_tail(lines, cut).strip()) > 80
            ]
        )
    return [Prompt(f"code-{i:03d}", p.prompt, p.meta) for i, p in enumerate(_round_robin(groups, n))]


def function_prompts(sources: Sequence[tuple[str, str]], n: int = PROMPTS_PER_SUITE) -> list[Prompt]:
    """Function bodies: a function's decorators, signature and docstring, up to the first statement."""
    groups = []
    for rel, source in sources:
        lines = source.splitlines(keepends=True)
        found = []
        for fn in _functions_of(source):
            if not ast.get_docstring(fn) or len(fn.body) < 3:
                continue
            first = min([fn.lineno] + [d.lineno for d in fn.decorator_list]) - 1
            head = "".join(lines[first : fn.body[0].end_lineno])
            if 40 < len(head) <= MAX_PROMPT_CHARS:
                found.append(Prompt("", head, {"source": f"{rel}:{fn.lineno}"}))
        random.Random(f"functions:{rel}").shuffle(found)
        groups.append(found)
    return [Prompt(f"functions-{i:03d}", p.prompt, p.meta) for i, p in enumerate(_round_robin(groups, n))]


def prose_prompts(licences_dir: Path = LICENCES_DIR, n: int = PROMPTS_PER_SUITE) -> list[Prompt]:
    """Not code: consecutive paragraphs of licence text, ending at a paragraph break."""
    groups = []
    for name in LICENCES:
        path = licences_dir / name
        if not path.is_file():
            raise SpecdiffError(f"{path} is missing; the prose suite is built from {licences_dir}")
        paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        found = []
        for i in range(2, len(paragraphs) - 1):  # skip the title block; leave something to continue
            text = paragraphs[i]
            if len(text) < 150:  # a heading or a short clause: join the next paragraph too
                text = text + "\n\n" + paragraphs[i + 1]
            if 150 <= len(text) <= MAX_PROMPT_CHARS:
                found.append(Prompt("", text + "\n\n", {"source": f"{name} paragraph {i}"}))
        groups.append(random.Random(f"prose:{name}").sample(found, min(4, len(found))))
    return [Prompt(f"prose-{i:03d}", p.prompt, p.meta) for i, p in enumerate(_round_robin(groups, n))]


def build_suites(out_dir: Path = SUITES_DIR) -> dict[str, Path]:
    """Write the shipped suites under ``out_dir``; returns each suite's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = _heldout_sources()
    built = {"code": code_prompts(sources), "functions": function_prompts(sources), "prose": prose_prompts()}
    packages = code_prompts(random.Random("packages").sample(_package_sources(), 60))
    built["packages"] = [Prompt(p.id.replace("code", "packages"), p.prompt, p.meta) for p in packages]
    paths = {}
    for name, prompts in built.items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_suite(prompts, paths[name])
    return paths


if __name__ == "__main__":
    for suite_name, suite_path in build_suites().items():
        print(f"{suite_name}: {len(load_suite(suite_path))} prompts -> {suite_path}")
