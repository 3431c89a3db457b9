"""The sweep's table: its columns, its row keys, and the durable journal rows go to first.

Durability: each finished row is appended to a journal next to the output (``OUT.rows.jsonl``),
flushed and fsynced before the next generation starts, so ``kill -9`` loses at most the row in
flight. At the end the journal becomes the table (``.parquet`` or ``.csv``) and is removed. A row
is identified by ``KEY_COLUMNS`` and appears once in the final table. A corrupt line in the
journal is skipped and reported by number; reading never writes.

The arguments that define a table (``TABLE_ARGS``: the suite and its prompt texts, the grid, the
sampling settings, the models) live in a sidecar, ``OUT.args.json``, written before the first
row and kept beside the table. A sidecar rather than a header line: the same file serves a
``.parquet`` and a ``.csv`` table (which has no place for metadata) and the journal, whose lines
stay rows only; it is small, readable and written once. A resume under other arguments would
mix rows that do not belong together (another suite's prompts under the same ids, another
``max_new_tokens`` as a second ``ar`` row), so it is refused, naming what differs.

Row columns (``ROW_COLUMNS``): the key, then

- ``prompt_tokens``, ``new_tokens``, ``rounds``, ``proposed``, ``accepted``;
- ``mean_acceptance_length`` (tokens committed per round, the verifier's token included) and
  ``acceptance_rate`` (accepted over proposed draft tokens);
- ``draft_s``, ``verify_s``, ``other_s``: round time spent drafting, verifying and on everything
  else (acceptance, rollback, bookkeeping), summed from the ``RoundStats``; ``setup_s``: time
  outside rounds (the verifier reading the prompt); ``total_s`` the whole call, and
  ``tokens_per_s = new_tokens / total_s``;
- ``position_judged`` and ``position_accepted``: per draft position, how many rounds judged it and
  how many accepted it (``specdiff.metrics.position_counts``; lists, JSON text in a CSV);
- ``loop_share``: the share of the output's 4-grams that already occurred earlier in it (a
  looping output is trivially easy to draft, so read acceptance beside it);
- ``output_hash``: a digest of the new token ids (greedy rows of one prompt must agree);
- ``drafter``, ``verifier``: the models ("pocket" for the pocket pair).

``batch_size`` (a key column): 1 for a generation alone; above 1, the row is one prompt of a batch
of that many (the suite's prompts in order, cut into groups; the last may be smaller): specdiff's
``generate_batch``, or for ``method="ar"`` transformers' batched ``generate()`` with left padding.
A batch row's ``total_s`` is its share of the batch's wall-clock seconds (the batch's over its rows),
so that a summary's tokens/s is the batch's throughput; its drafting / verifying / other seconds
are its own rounds' scaled to that share. Tables written before the column read as batch size 1.

For ``method="ar"``: ``proposer = "plain"``, ``block_size = denoising_steps = 0``, one round per token, and all of
``total_s`` counts as verifying. ``top_k = 0`` and ``top_p = 1.0`` mean no truncation.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdiff.errors import SpecdiffError

if TYPE_CHECKING:
    import pandas as pd  # imported where used: `specdiff --help` stays fast

KEY_COLUMNS = [
    "suite",
    "prompt_id",
    "method",
    "proposer",
    "block_size",
    "denoising_steps",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "max_new_tokens",
    "batch_size",
]
# Key columns added after tables were first written, and the value their older rows mean.
KEY_DEFAULTS = {"batch_size": 1}
ROW_COLUMNS = KEY_COLUMNS + [
    "prompt_tokens",
    "new_tokens",
    "rounds",
    "proposed",
    "accepted",
    "mean_acceptance_length",
    "acceptance_rate",
    "denoising_steps_used",
    "draft_s",
    "verify_s",
    "other_s",
    "setup_s",
    "total_s",
    "tokens_per_s",
    "loop_share",
    "output_hash",
    "position_judged",
    "position_accepted",
    "drafter",
    "verifier",
]
TIMING_COLUMNS = ["draft_s", "verify_s", "other_s", "setup_s", "total_s", "tokens_per_s"]
LIST_COLUMNS = ["position_judged", "position_accepted"]
SPECDIFF, AR = "specdiff", "ar"
PLAIN, DIFFUSION = "plain", "diffusion"  # ``Proposer`` values, spelt out: this module loads without torch


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(_normal(row[c] if c in row else KEY_DEFAULTS[c]) for c in KEY_COLUMNS)


def _normal(value: Any) -> Any:
    # CSV and parquet round trips turn 0.0 into 0, ints into numpy ints and ids into numbers;
    # keys compare in one canonical form.
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def output_hash(tokens: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps(list(tokens)).encode()).hexdigest()[:16]


# -- the journal: one fsynced JSON line per finished row ------------------------------------------


def journal_path(out: Path) -> Path:
    return out.with_name(out.name + ".rows.jsonl")


@dataclass(frozen=True)
class JournalScan:
    """What a journal holds: its rows, the numbers (1-based) of complete lines that are not rows,
    and an unfinished last line (a run killed mid-write, or one still writing) starting at ``torn_at``."""

    rows: list[dict[str, Any]]
    bad_lines: tuple[int, ...] = ()
    torn_at: int | None = None

    def problems(self, path: Path) -> list[str]:
        """One line per problem, for the user; a torn last line is normal and not listed."""
        if not self.bad_lines:
            return []
        numbers = ", ".join(map(str, self.bad_lines[:10])) + (" ..." if len(self.bad_lines) > 10 else "")
        return [f"{path}: line(s) {numbers} are not rows (corrupted?); skipped, the {len(self.rows)} valid rows "
                "around them are kept (a resumed sweep runs the skipped generations again)"]


class Journal:
    """An append-only JSONL file; each row is on disk before ``append`` returns.

    Reading never writes (``specdiff report`` reads a running sweep's journal); only a resuming
    writer cuts a torn last line off (``repair``), so that its next row starts on a line of its own.
    A corrupt line in the middle is skipped and reported, never a reason to drop the rows after it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def scan(self) -> JournalScan:
        if not self.path.exists():
            return JournalScan([])
        rows, bad, offset, torn_at = [], [], 0, None
        for number, line in enumerate(self.path.read_bytes().splitlines(keepends=True), start=1):
            if not line.endswith(b"\n"):
                torn_at = offset  # only the last line can lack its newline
                break
            offset += len(line)
            row = _row_or_none(line)
            if row is None:
                if line.strip():
                    bad.append(number)
            else:
                rows.append(row)
        return JournalScan(rows, tuple(bad), torn_at)

    def read(self) -> list[dict[str, Any]]:
        """The finished rows (skipping lines that are not rows, and an unfinished last line)."""
        return self.scan().rows

    def repair(self) -> JournalScan:
        """Before appending: cut an unfinished last line off the file; returns what it holds."""
        scan = self.scan()
        if scan.torn_at is not None:
            with open(self.path, "r+b") as f:
                f.truncate(scan.torn_at)
        return scan

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _row_or_none(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(row, dict):
        return None
    row = {**KEY_DEFAULTS, **row}  # a journal written before a key column existed
    return row if all(c in row for c in KEY_COLUMNS) else None


def warn(message: str) -> None:
    """A problem the user should see that does not stop the run: one line on stderr."""
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


# -- the arguments that define a table: a sidecar beside it ------------------------------------------


def args_path(out: Path) -> Path:
    return out.with_name(out.name + ".args.json")


# Each recorded argument and the option that sets it, for messages.
TABLE_ARGS = {"suite": "--suite", "prompts": "the suite's prompt texts", "proposers": "--proposers",
              "block_sizes": "--block-sizes", "denoising_steps": "--steps", "temperatures": "--temperatures",
              "seeds": "--seeds", "max_new_tokens": "--max-new-tokens", "top_k": "--top-k", "top_p": "--top-p",
              "drafter": "--drafter", "verifier": "--verifier", "batch_sizes": "--batch-sizes"}
# Arguments added after tables were first written, and the value a sidecar without them means.
ARG_DEFAULTS: dict[str, Any] = {"batch_sizes": [1]}


def write_args(out: Path, args: dict[str, Any]) -> None:
    """Record the arguments a table is written with (atomically)."""
    path = args_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(args, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_args(out: Path) -> dict[str, Any] | None:
    path = args_path(out)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SpecdiffError(f"{path} is not valid JSON ({err}); it records what {out.name} was run with") from None


def args_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between the arguments a table was written with and this run's, for the user.

    Prompts are compared by id where both have one: a different ``--limit`` may add or drop prompts,
    but a prompt whose text changed would mix two suites' rows under one id.
    """
    out = []
    for name, option in TABLE_ARGS.items():
        old, new = recorded.get(name, ARG_DEFAULTS.get(name)), now.get(name)
        if name == "prompts":
            changed = sorted(i for i in set(old or {}) & set(new or {}) if old[i] != new[i])
            if changed:
                out.append(f"{option} differ for {len(changed)} prompt(s), e.g. {changed[0]!r}")
        elif old != new:
            out.append(f"{option} {_shown(old)} there, {_shown(new)} now")
    return out


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "(none)"
    return "(not recorded)" if value is None else str(value)


def read_results(path: str | Path) -> pd.DataFrame:
    """A sweep table (``.parquet``, ``.csv`` or a journal ``.jsonl``) with list columns as lists."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise SpecdiffError(f"no results file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        text_columns = {c: str for c in ("suite", "prompt_id", "method", "output_hash", "drafter", "verifier")}
        frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False)
    elif suffix == ".jsonl":
        scan = Journal(path).scan()
        for problem in scan.problems(path):
            warn(problem)
        frame = pd.DataFrame(scan.rows, columns=ROW_COLUMNS)
    else:
        raise SpecdiffError(f"{path} must be a .parquet, .csv or .jsonl sweep table")
    missing = [c for c in ("prompt_id", "method", "block_size", "new_tokens", "total_s") if c not in frame.columns]
    if missing:
        raise SpecdiffError(f"{path} is not a sweep table: it lacks {', '.join(missing)}")
    if "proposer" not in frame.columns:
        # Tables written before proposers were peers: 0 denoising steps was the n-gram lookup.
        frame.insert(frame.columns.get_loc("method") + 1, "proposer",
                     [PLAIN if m == AR else ("ngram" if s == 0 else DIFFUSION)
                      for m, s in zip(frame["method"], frame["denoising_steps"], strict=True)])
    for column, value in KEY_DEFAULTS.items():  # tables written before the column existed
        if column not in frame.columns:
            frame.insert(frame.columns.get_loc("max_new_tokens") + 1 if "max_new_tokens" in frame.columns
                         else len(frame.columns), column, value)
        else:
            frame[column] = frame[column].fillna(value).astype(type(value))
    for column in LIST_COLUMNS:
        if column in frame.columns:
            frame[column] = [[int(x) for x in (json.loads(v) if isinstance(v, str) else v)] for v in frame[column]]
    return frame


def write_table(rows: list[dict[str, Any]], out: Path) -> pd.DataFrame:
    """Write ``rows`` (deduplicated by key, last wins) atomically to ``out``; returns the table."""
    import pandas as pd

    unique = {row_key(r): r for r in rows}
    frame = pd.DataFrame(list(unique.values()), columns=ROW_COLUMNS)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        flat = frame.copy()
        for column in LIST_COLUMNS:
            flat[column] = [json.dumps(list(v)) for v in flat[column]]
        flat.to_csv(tmp, index=False)
    os.replace(tmp, out)
    return frame
