"""The drafter recipe's offline prompt corpus: chat instructions and code, with a held-out split.

Nothing is downloaded. The chat side is the stdlib instruction corpus of
``specdiff.evals.chat_prompts`` (templated "explain / write / test / summarize" instructions read
from module, class and function docstrings); the code side is windows of stdlib source files
(``specdiff.evals.corpus``). Both splits are the corpus' own deterministic ones: a held-out
instruction (by source file or topic hash) and a held-out file never train a drafter, and the
evals ``chat`` suite, built from held-out instructions only, is checked to be absent from the
training side (`check_excludes_chat_suite`). Sampling within each side is seeded, so the same
config gives the same prompts on any machine with the same stdlib.

A prompt is a ``CorpusPrompt``: its kind (``chat`` or ``code``), the text (a user message for chat,
the text to continue for code) and where it came from; ``decoder_input`` is what a
``SpeculativeDecoder`` (or the verifier's tokenizer) takes for it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from specdiff.errors import SpecdiffError

KINDS = ("chat", "code")


@dataclass(frozen=True)
class CorpusPrompt:
    kind: str  # one of KINDS
    text: str
    source: str

    @property
    def decoder_input(self) -> str | list[dict[str, str]]:
        return [{"role": "user", "content": self.text}] if self.kind == "chat" else self.text


@dataclass(frozen=True)
class CorpusSizes:
    """How many prompts of each kind and split (each capped by what the corpus holds)."""

    train_chat: int = 3000
    train_code: int = 1500
    heldout_chat: int = 24
    heldout_code: int = 24
    code_lines: tuple[int, int] = (6, 30)  # a code prompt's line count, drawn uniformly
    max_code_chars: int = 1500
    max_files: int | None = None  # a slice of the stdlib (tests)
    seed: int = 0


def code_window(source: str, rng: random.Random, lines: tuple[int, int], max_chars: int) -> str | None:
    """A run of whole lines of ``source`` starting at a random line, at most ``max_chars`` long
    (None when the file is too short or the window is blank)."""
    all_lines = source.splitlines(keepends=True)
    count = rng.randint(*lines)
    if len(all_lines) < count + 1:
        return None
    start = rng.randrange(len(all_lines) - count)
    text = "".join(all_lines[start : start + count])[-max_chars:]
    return text if text.strip() else None


def code_prompts(rel_paths: Sequence[str], n: int, sizes: CorpusSizes, salt: str) -> list[CorpusPrompt]:
    """``n`` code windows from the given stdlib files, files drawn with replacement (seeded)."""
    from specdiff.evals.corpus import read_source

    if not rel_paths or n <= 0:
        return []
    rng = random.Random(f"{salt}:{sizes.seed}")
    sources: dict[str, str] = {}
    found: list[CorpusPrompt] = []
    for _ in range(20 * n):  # a few files are too short for the chosen window: bounded retries
        if len(found) == n:
            break
        rel = rel_paths[rng.randrange(len(rel_paths))]
        if rel not in sources:
            sources[rel] = read_source(rel)
        text = code_window(sources[rel], rng, sizes.code_lines, sizes.max_code_chars)
        if text is not None:
            found.append(CorpusPrompt("code", text, rel))
    return found


def _sample(items: list, n: int, salt: str, seed: int) -> list:
    picked = list(items)
    random.Random(f"{salt}:{seed}").shuffle(picked)
    return picked[:n]


def build_corpus(sizes: CorpusSizes) -> dict[str, list[CorpusPrompt]]:
    """``{"train": [...], "heldout": [...]}``, chat then code within each (deterministic)."""
    from specdiff.evals.chat_prompts import instruction_corpus, split_instructions
    from specdiff.evals.corpus import heldout_files, train_files

    train_paths, heldout_paths = train_files(), heldout_files()
    if sizes.max_files is not None:
        train_paths, heldout_paths = train_paths[: sizes.max_files], heldout_paths[: max(2, sizes.max_files // 4)]
    # The instruction split is decided per file and topic; the file slice only bounds the parsing.
    train_ins, heldout_ins = split_instructions(instruction_corpus(train_paths + heldout_paths))
    train = [CorpusPrompt("chat", i.text, i.source) for i in _sample(train_ins, sizes.train_chat, "chat", sizes.seed)]
    heldout = [CorpusPrompt("chat", i.text, i.source)
               for i in _sample(heldout_ins, sizes.heldout_chat, "heldout-chat", sizes.seed)]
    train += code_prompts(train_paths, sizes.train_code, sizes, "code")
    heldout += code_prompts(heldout_paths, sizes.heldout_code, sizes, "heldout-code")
    check_excludes_chat_suite(train)
    return {"train": train, "heldout": heldout}


def chat_suite_messages() -> set[str]:
    """The user messages of every evals chat suite (``CHAT_SUITES``)."""
    from specdiff.evals.suites import CHAT_SUITES, load_suite

    return {p.prompt for name in CHAT_SUITES for p in load_suite(name).prompts}


def check_excludes_chat_suite(train: Sequence[CorpusPrompt]) -> None:
    """Refuse a training side that contains any chat-suite instruction (the suite is held out)."""
    suite = chat_suite_messages()
    leaked = [p.text for p in train if p.kind == "chat" and p.text in suite]
    if leaked:
        raise SpecdiffError(
            f"{len(leaked)} training instructions are in the evals chat suite (first: {leaked[0][:80]!r}); "
            "the suite must stay held out: rebuild it with `python -m specdiff.evals.chat_prompts`"
        )


def save_corpus(corpus: dict[str, list[CorpusPrompt]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for split, prompts in corpus.items():
            for p in prompts:
                f.write(json.dumps({"split": split, **asdict(p)}, ensure_ascii=False) + "\n")


def load_corpus(path: Path) -> dict[str, list[CorpusPrompt]]:
    corpus: dict[str, list[CorpusPrompt]] = {"train": [], "heldout": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        corpus[record.pop("split")].append(CorpusPrompt(**record))
    return corpus


def encode_prompt(tokenizer, prompt: CorpusPrompt, max_tokens: int) -> list[int]:
    """The prompt's ids as the decoder would build them (chat template for chat), keeping the
    last ``max_tokens`` (a long code window loses its first lines, a chat prompt its system turn)."""
    from specdiff.prompts import prompt_token_ids

    return prompt_token_ids(prompt.decoder_input, tokenizer)[-max_tokens:]
