"""An offline chat-instruction corpus, built from the Python standard library, and the chat suite.

No instruction data set lies on the machine, so the instructions are written from what does: the
stdlib's modules, classes and functions, read with ``ast`` (nothing is imported). Six kinds::

    explain    Explain what `statistics.median` does in Python, with a short example.
    write      Write a Python function `median(data)`. Its docstring begins: "Return the median ...".
    module     What is the Python module `ftplib` for? Describe two typical uses.
    rewrite    Rewrite this documentation in plain English for a beginner: <a module docstring paragraph>
    summarize  Summarize in two sentences what this Python code does: <a short function's source>
    tests      Write pytest unit tests for `statistics.median(data)`, covering normal use and edge cases.

Every instruction has a *topic* (``statistics.median``, or the module for module-wide ones). The
held-out split is deterministic: an instruction is held out when its source file is one of the
corpus' held-out files (``specdiff.evals.corpus.is_heldout``), or when a SHA-256 of its topic falls in
the held-out share. Hashing the topic rather than the text keeps every instruction about one
function on one side, so the drafter never trains on "explain X" while the suite asks "write X".

The ``chat`` suite (``evals/suites/chat.jsonl``) takes 40 held-out instructions, spread over the
kinds. Each line is a plain suite record whose ``prompt`` is the *user message*, marked
``"chat": true``: whoever runs it sends ``[{"role": "user", "content": prompt}]`` through the
verifier's chat template (``Prompt.decoder_input``). ``python -m specdiff.evals.chat_prompts`` rebuilds the
file; the same Python gives the same file byte for byte.
"""

from __future__ import annotations

import ast
import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from specdiff.evals.corpus import is_heldout, library_files, read_source
from specdiff.evals.suites import MAX_PROMPT_CHARS, SUITES_DIR, Prompt, load_suite, write_suite

KINDS = ("explain", "write", "module", "rewrite", "summarize", "tests")
HELDOUT_TOPIC_PER_MILLE = 50
CHAT_SUITE_SIZE = 40
MAX_CODE_CHARS = 420  # the summarize kind's function source, so the message stays under MAX_PROMPT_CHARS
# Generated codec tables, the IDE and the removed build/2to3 tools make dull or dated instructions.
SKIPPED_PACKAGES = ("encodings", "idlelib", "lib2to3", "distutils")


@dataclass(frozen=True)
class Instruction:
    """One user message, with what it is about and where it came from (``file:line``)."""

    kind: str
    topic: str
    text: str
    source: str

    @property
    def file(self) -> str:
        return self.source.rsplit(":", 1)[0]


def topic_is_heldout(topic: str) -> bool:
    digest = hashlib.sha256(f"chat-topic:{topic}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1000 < HELDOUT_TOPIC_PER_MILLE


def is_heldout_instruction(instruction: Instruction) -> bool:
    """Whether ``instruction`` belongs to the held-out side (stable, pure; see the module docs)."""
    return is_heldout(instruction.file) or topic_is_heldout(instruction.topic)


def module_name(rel_path: str) -> str:
    """``email/charset.py`` -> ``email.charset``; a package's ``__init__.py`` is the package."""
    parts = rel_path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _first_line(docstring: str) -> str:
    return docstring.strip().split("\n\n")[0].split("\n")[0].strip()


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``name(a, b=...)``: the parameter names, ``self`` dropped, defaults elided."""
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args if a.arg not in ("self", "cls")]
    if args.vararg:
        names.append(f"*{args.vararg.arg}")
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append(f"**{args.kwarg.arg}")
    return f"{fn.name}({', '.join(names)})"


def _usable_docstring(text: str | None, low: int = 20, high: int = 200) -> bool:
    # Docstrings that are too short ("Foo.") or cross-references only make poor instructions.
    return bool(text) and low <= len(_first_line(text)) <= high and not _first_line(text).startswith(("See ", ":"))


def _public(name: str) -> bool:
    return not name.startswith("_")


def instructions_of_file(rel_path: str, source: str) -> Iterator[Instruction]:
    """Every instruction the file gives: module-wide ones, then one set per public function/class."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return
    module = module_name(rel_path)
    if not all(_public(part) for part in module.split(".")) or module.split(".")[0] in SKIPPED_PACKAGES:
        return
    doc = ast.get_docstring(tree)
    if _usable_docstring(doc, 20, 300):
        yield Instruction(
            "module", module, f"What is the Python module `{module}` for? Describe two typical uses.", f"{rel_path}:1"
        )
        paragraph = " ".join(doc.strip().split("\n\n")[0].split())
        if 80 <= len(paragraph) <= 400:
            yield Instruction(
                "rewrite",
                module,
                f"Rewrite this documentation in plain English for a beginner:\n\n{paragraph}",
                f"{rel_path}:1",
            )
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or not _public(node.name):
            continue
        topic, where, node_doc = f"{module}.{node.name}", f"{rel_path}:{node.lineno}", ast.get_docstring(node)
        if not _usable_docstring(node_doc):
            continue
        what = "class" if isinstance(node, ast.ClassDef) else "function"
        yield Instruction("explain", topic, f"Explain what `{topic}` does in Python, with a short example.", where)
        if isinstance(node, ast.ClassDef):
            continue
        signature = _signature(node)
        first = _first_line(node_doc).replace('"', "'")
        yield Instruction(
            "write", topic, f'Write a Python {what} `{signature}`. Its docstring begins: "{first}"', where
        )
        yield Instruction(
            "tests",
            topic,
            f"Write pytest unit tests for `{module}.{signature}`, covering normal use and edge cases.",
            where,
        )
        code = ast.get_source_segment(source, node) or ""
        if 120 <= len(code) <= MAX_CODE_CHARS and code.count("\n") >= 3:
            yield Instruction(
                "summarize", topic, f"Summarize in two sentences what this Python code does:\n\n{code}\n", where
            )


def instruction_corpus(rel_paths: Iterable[str] | None = None) -> list[Instruction]:
    """All instructions from the stdlib files (every non-test module by default), deduplicated by text."""
    seen: set[str] = set()
    found = []
    for rel in library_files() if rel_paths is None else rel_paths:
        for instruction in instructions_of_file(rel, read_source(rel)):
            if instruction.text not in seen and len(instruction.text) <= MAX_PROMPT_CHARS:
                seen.add(instruction.text)
                found.append(instruction)
    return found


def split_instructions(instructions: Iterable[Instruction]) -> tuple[list[Instruction], list[Instruction]]:
    """``(train, held_out)``, in the given order; a drafter recipe trains on the first only."""
    train, held_out = [], []
    for instruction in instructions:
        (held_out if is_heldout_instruction(instruction) else train).append(instruction)
    return train, held_out


def train_instructions() -> list[Instruction]:
    """The training side of the whole corpus: what a drafter may see."""
    return split_instructions(instruction_corpus())[0]


def chat_suite_prompts(held_out: Iterable[Instruction], n: int = CHAT_SUITE_SIZE) -> list[Prompt]:
    """``n`` held-out instructions, kinds taken in turn, each kind's order seeded and fixed."""
    by_kind = {kind: sorted((i for i in held_out if i.kind == kind), key=lambda i: i.text) for kind in KINDS}
    for kind, items in by_kind.items():
        random.Random(f"chat:{kind}").shuffle(items)
    picked: list[Instruction] = []
    while len(picked) < n and any(by_kind.values()):
        for kind in KINDS:
            if by_kind[kind] and len(picked) < n:
                picked.append(by_kind[kind].pop(0))
    return [
        Prompt(f"chat-{i:03d}", p.text, {"chat": True, "kind": p.kind, "topic": p.topic, "source": p.source})
        for i, p in enumerate(picked)
    ]


def build_chat_suite(out_dir: Path = SUITES_DIR, corpus: list[Instruction] | None = None) -> Path:
    """Write ``chat.jsonl`` under ``out_dir`` from ``corpus`` (the whole stdlib's when omitted)."""
    path = Path(out_dir) / "chat.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_suite(chat_suite_prompts(split_instructions(instruction_corpus() if corpus is None else corpus)[1]), path)
    return path


if __name__ == "__main__":
    corpus = instruction_corpus()
    train, held = split_instructions(corpus)
    built = build_chat_suite(corpus=corpus)
    print(f"{len(corpus)} instructions: {len(train)} train, {len(held)} held out")
    print(f"chat: {len(load_suite(built))} prompts -> {built}")
