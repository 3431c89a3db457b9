"""``specdiff demo``'s speedup on a quiet machine against the same demo beside a process that keeps
one core busy, interleaved (quiet, busy, quiet, busy, ...) so that other load hits both alike.

    .venv/bin/python benchmarks/busy_demo.py --pairs 3            # the CLI's defaults (one thread)
    .venv/bin/python benchmarks/busy_demo.py --pairs 3 --threads 2 --policy ACTIVE   # spinning threads

The busy process is ``python -c 'while True: pass'``; each demo is a fresh ``specdiff demo``
process, whose speedup line (speculative tokens/s over the verifier alone's) is parsed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

SPECDIFF = Path(sys.executable).with_name("specdiff")


def demo_speedup(threads: int | None, policy: str | None) -> tuple[float, float, float]:
    """One ``specdiff demo``: (speedup, verifier-alone tokens/s, speculative tokens/s)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [str(SPECDIFF), "demo"] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    flat = " ".join(out.split())
    plain = float(re.search(r"verifier alone: ([0-9.]+) tokens/s", flat).group(1))
    spec = float(re.search(r"speculative: ([0-9.]+) tokens/s", flat).group(1))
    return float(re.search(r"speedup ([0-9.]+)x", flat).group(1)), plain, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="--threads for the demo (default: the CLI's)")
    parser.add_argument("--policy", default=None, help="OMP_WAIT_POLICY for the demo (default: the CLI's)")
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float, float]]] = {"quiet": [], "busy": []}
    for _ in range(args.pairs):
        runs["quiet"].append(demo_speedup(args.threads, args.policy))
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            runs["busy"].append(demo_speedup(args.threads, args.policy))
        finally:
            spinner.kill()
            spinner.wait()
    print(f"threads={args.threads or 'CLI default'} OMP_WAIT_POLICY={args.policy or 'CLI default'}")
    print(f"{'machine':8} {'speedups':28} {'median':>7} {'verifier tok/s':>15} {'specdiff tok/s':>15}")
    for name, rows in runs.items():
        speedups = " ".join(f"{s:.2f}" for s, _, _ in rows)
        print(f"{name:8} {speedups:28} {statistics.median(s for s, _, _ in rows):7.2f} "
              f"{statistics.median(p for _, p, _ in rows):15.1f} {statistics.median(t for _, _, t in rows):15.1f}")
    ratio = statistics.median(s for s, _, _ in runs["busy"]) / statistics.median(s for s, _, _ in runs["quiet"])
    print(f"busy / quiet median speedup: {ratio:.2f}")


if __name__ == "__main__":
    main()
