"""Load benchmark of ``specdiff serve`` through the official openai client (AsyncOpenAI, streaming).

    OMP_NUM_THREADS=1 python benchmarks/serve_bench.py                 # starts a pocket server itself
    python benchmarks/serve_bench.py --server http://127.0.0.1:8000 --model pocket --requests 32 --concurrency 1 4 16

N requests (the code suite's first ``--requests`` prompts, greedy, ``--max-tokens`` each; 8 and 128 by
default) at each concurrency C (C requests in flight; a new one starts as one ends), with speculation
on and off, ``--repeats`` times (3), after an untimed warm-up. Off
is the per-request knob ``{"specdiff": {"speculative": false}}``: the same batched verifier, one
token a round, no drafting. Cells run interleaved (repetition, concurrency, mode), so machine noise
hits all alike. Measured on the client:

``tok/s``    every request's completion tokens (from the usage chunk) over the cell's wall-clock time;
``TTFT``     request sent to the first chunk with text (p50, p99);
``ITL``      the gap between two text chunks of one stream (p50, p99); a chunk is one round, which
             with speculation carries several tokens;
``TPOT``     a request's (last chunk - first chunk) / (tokens - 1), the mean over requests.

The server's own ``/metrics`` give the acceptance (accepted / draft tokens, and tokens a round).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import openai

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Trace:
    """One request as the client saw it."""

    sent: float
    chunk_times: tuple[float, ...]
    tokens: int

    @property
    def ttft(self) -> float:
        return self.chunk_times[0] - self.sent

    @property
    def gaps(self) -> list[float]:
        return list(np.diff(self.chunk_times))

    @property
    def tpot(self) -> float | None:
        if self.tokens < 2 or len(self.chunk_times) < 2:
            return None
        return (self.chunk_times[-1] - self.chunk_times[0]) / (self.tokens - 1)


async def one_request(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int,
                      speculative: bool) -> Trace:
    sent = time.perf_counter()
    stream = await client.completions.create(
        model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"specdiff": {"speculative": speculative}})
    times, tokens = [], 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            times.append(time.perf_counter())
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return Trace(sent, tuple(times) or (time.perf_counter(),), tokens)


async def run_cell(client: openai.AsyncOpenAI, model: str, prompts: list[str], concurrency: int, max_tokens: int,
                   speculative: bool) -> tuple[float, list[Trace]]:
    """Every prompt once, ``concurrency`` in flight; the wall-clock seconds and each request's trace."""
    queue = list(prompts)
    traces: list[Trace] = []

    async def worker() -> None:
        while queue:
            traces.append(await one_request(client, model, queue.pop(0), max_tokens, speculative))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, traces


def start_server(port: int, threads: int, max_batch_size: int) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    process = subprocess.Popen(
        [sys.executable, "-m", "specdiff", "serve", "--port", str(port), "--threads", str(threads),
         "--max-batch-size", str(max_batch_size), "--served-model-name", "pocket"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not come up in 120 s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def acceptance(base: str) -> tuple[float, float]:
    """Draft and accepted token totals from the server's ``/metrics``."""
    page = httpx.get(base + "/metrics").text
    totals = {}
    for name in ("spec_decode_num_draft_tokens_total", "spec_decode_num_accepted_tokens_total"):
        totals[name] = sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
                           if line.startswith("specdiff:" + name))
    return totals["spec_decode_num_draft_tokens_total"], totals["spec_decode_num_accepted_tokens_total"]


async def run_all(opts: argparse.Namespace, base: str, prompts: list[str]) -> dict:
    """Every cell, interleaved, on one client (its connection pool lives on this event loop)."""
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)
    cells: dict[tuple[int, bool], list[tuple[float, list[Trace]]]] = {}
    # Warm-up, untimed: first calls, and the adaptive batch policy's first rounds at each batch size.
    for concurrency in opts.concurrency:
        await run_cell(client, opts.model, prompts[: max(concurrency, 2)], concurrency, 32, True)
    for repeat in range(opts.repeats):
        for concurrency in opts.concurrency:
            for speculative in (True, False) if repeat % 2 == 0 else (False, True):
                drafted = acceptance(base)
                wall, traces = await run_cell(client, opts.model, prompts, concurrency, opts.max_tokens, speculative)
                after = acceptance(base)
                cells.setdefault((concurrency, speculative), []).append((wall, traces))
                print(f"repeat {repeat} C={concurrency} {'spec' if speculative else 'plain'}: "
                      f"{sum(t.tokens for t in traces) / wall:.1f} tok/s, accepted "
                      f"{after[1] - drafted[1]:.0f}/{after[0] - drafted[0]:.0f} draft tokens", flush=True)
    await client.close()
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=None, help="A running server's base URL (default: start one).")
    parser.add_argument("--model", default="pocket")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suite", default="code")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="Also write the table here (markdown).")
    opts = parser.parse_args()

    from specdiff.evals.suites import load_suite

    prompts = [p.prompt for p in load_suite(opts.suite).prompts][: opts.requests]
    process = None
    base = opts.server
    if base is None:
        port = free_port()
        process = start_server(port, opts.threads, max(opts.concurrency))
        base = f"http://127.0.0.1:{port}"
    try:
        cells = asyncio.run(run_all(opts, base, prompts))
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    print_table(opts, prompts, cells)


def print_table(opts: argparse.Namespace, prompts: list[str], cells: dict) -> None:
    lines = [f"{len(prompts)} requests of the {opts.suite} suite, {opts.max_tokens} max tokens, greedy, "
             f"{opts.repeats} repetition(s) interleaved, server threads {opts.threads}", "",
             "| C | speculation | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | TPOT ms |",
             "|---|---|---|---|---|---|---|---|"]
    rate = {}
    for (concurrency, speculative), runs in sorted(cells.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        traces = [t for _, ts in runs for t in ts]
        rate[concurrency, speculative] = sum(t.tokens for t in traces) / sum(w for w, _ in runs)
        ttft = [t.ttft for t in traces]
        gaps = [g for t in traces for g in t.gaps]
        tpot = [t.tpot for t in traces if t.tpot is not None]
        lines.append(f"| {concurrency} | {'on' if speculative else 'off'} | {rate[concurrency, speculative]:.1f} | "
                     f"{pct(ttft, 50):.0f} | {pct(ttft, 99):.0f} | {pct(gaps, 50):.0f} | {pct(gaps, 99):.0f} | "
                     f"{float(np.mean(tpot)) * 1000:.1f} |")
    lo, hi = min(opts.concurrency), max(opts.concurrency)
    lines += ["", "| ratio | value | bar |", "|---|---|---|"]
    for speculative in (True, False):
        if (lo, speculative) in rate and (hi, speculative) in rate:
            label = "on" if speculative else "off"
            lines.append(f"| C={hi} / C={lo}, speculation {label} | "
                         f"{rate[hi, speculative] / rate[lo, speculative]:.2f} | >= 2 |")
    for concurrency in (lo, hi):
        if (concurrency, True) in rate and (concurrency, False) in rate:
            bar = ">= 1.2" if concurrency == lo else "(report)"
            lines.append(f"| speculation on / off, C={concurrency} | "
                         f"{rate[concurrency, True] / rate[concurrency, False]:.2f} | {bar} |")
    text = "\n".join(lines)
    print(text)
    if opts.out is not None:
        opts.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
