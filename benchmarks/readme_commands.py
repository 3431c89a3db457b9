"""Run every command of README.md on a fresh copy of the repository, and say which failed.

    .venv/bin/python benchmarks/readme_commands.py            # exactly as written (minutes; a new venv)
    .venv/bin/python benchmarks/readme_commands.py --quick    # small arguments, this venv (under a minute)

The commands are the lines of the README's ```bash blocks (``\\`` continues a line) and its
```python blocks (each run whole); ```text blocks are examples that need what a fresh clone lacks
(real models, two hours of training) and are not run. The copy holds the repository's tracked
files and nothing else (no ``runs/``, no ``.venv``), and each command runs in it with ``.venv/bin``
first on PATH, as ``source .venv/bin/activate`` leaves a shell.

Exact mode runs ``bash setup.sh`` in the copy (a venv of its own, about 1.5 minutes), then every
command as written; only ``python -m pytest`` is left to CI, which runs that line verbatim
(``.ci/run``). Quick mode shares this checkout's venv, so it drops ``bash setup.sh &&`` (which
would re-point the editable install at the copy), leaves the test command to CI too, and shrinks
the long arguments: ``--limit`` to 1 prompt, ``--max-new-tokens`` to 8, the demo to 8 tokens.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LEFT_TO_CI = "-m pytest"  # the test command: CI runs it verbatim (and it would run this script again)


@dataclass(frozen=True)
class Command:
    text: str
    language: str  # "bash" or "python"


def readme_commands(readme: Path) -> list[Command]:
    """The runnable commands, in README order."""
    commands = []
    for language, body in FENCE.findall(readme.read_text()):
        if language == "python":
            commands.append(Command(body, "python"))
        elif language in ("bash", "sh", "shell"):
            for line in body.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    commands.append(Command(" ".join(line.split()), "bash"))
    return commands


def quick(command: str) -> str:
    """The command with small arguments (quick mode)."""
    command = command.replace("bash setup.sh && ", "")
    command = re.sub(r"--limit \d+", "--limit 1", command)
    command = re.sub(r"--max-new-tokens \d+", "--max-new-tokens 8", command)
    if re.search(r"specdiff demo\b", command) and "--max-new-tokens" not in command:
        command += " --max-new-tokens 8"
    return command


def fresh_copy(dest: Path) -> Path:
    """The repository's tracked files (as in a fresh clone, with this checkout's edits) in ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def run_all(exact: bool, keep: bool = False, skip: tuple[str, ...] = ()) -> list[tuple[str, int, float, str]]:
    """Run every command (but those containing a ``skip`` string); returns (command as run, exit
    code, seconds, last output lines)."""
    base = Path(tempfile.mkdtemp(prefix="readme-"))
    clone = fresh_copy(base / "clone")
    if not exact:
        (clone / ".venv").symlink_to(ROOT / ".venv")
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    outcomes = []
    try:
        for command in readme_commands(clone / "README.md"):
            text = command.text if exact else quick(command.text)
            if LEFT_TO_CI in text or any(part in text for part in skip):
                outcomes.append((text, 0, 0.0, "not run here"))
                continue
            argv = ["bash", "-c", text] if command.language == "bash" else [str(clone / ".venv/bin/python"), "-c",
                                                                           text]
            start = time.perf_counter()
            done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True)
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            outcomes.append((text.splitlines()[0][:100], done.returncode, time.perf_counter() - start, tail))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small arguments, this checkout's venv")
    parser.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    args = parser.parse_args()
    outcomes = run_all(exact=not args.quick, keep=args.keep)
    for text, code, seconds, tail in outcomes:
        print(f"{'ok ' if code == 0 else 'FAIL'} {seconds:6.1f} s  {text}")
        if code != 0:
            print("     " + tail.replace("\n", "\n     "))
    failed = sum(code != 0 for _, code, _, _ in outcomes)
    print(f"{len(outcomes) - failed}/{len(outcomes)} README commands ran")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
