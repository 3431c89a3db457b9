"""Helpers of the server tests: the reference answers, free ports, the metrics page as numbers."""

from __future__ import annotations

import re
import socket

from specdiff.args import GenerateArgs

NEW = 24  # tokens per answer in these tests: enough for several rounds, cheap on one core


def greedy_text(decoder, prompt, new: int = NEW) -> tuple[str, list[int]]:
    """What ``generate()`` alone gives for ``prompt`` under greedy decoding: the text and the tokens.

    Greedy output does not depend on who drafts (the decoder is lossless, tests/test_decoding.py),
    so the cheap lookup proposer computes the reference."""
    result = decoder.generate(prompt, GenerateArgs(max_new_tokens=new, proposer="ngram", block_size=4))
    return result.text, result.token_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(page: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples on a ``/metrics`` page whose labels include ``labels``."""
    total = 0.0
    for line in page.splitlines():
        match = re.match(r"^([^\s{]+)(?:\{([^}]*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total
