"""Incremental detokenisation and stop strings for one request.

Each round hands a row several tokens; ``TextStream.push`` turns them into the text that may be sent
now. Byte-level tokenizers split a multi-byte character over several tokens, and decoding a prefix
that ends inside one gives U+FFFD: such a tail is held back until the character completes (or the
row ends, when what the tokens decode to is final). A tail that could be the start of a stop string
is held back too, so a stop string is never half-sent. The text sent is always a prefix of the
final text, so the deltas concatenate to exactly the non-streamed answer.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string begins in ``text`` (None: none occurs)."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def partial_stop_length(text: str, stops: tuple[str, ...]) -> int:
    """The longest tail of ``text`` that is a proper prefix of some stop string (0: none)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


def safe_length(text: str, stops: tuple[str, ...]) -> int:
    """How much of ``text`` can be sent before more tokens arrive: no trailing U+FFFD, no partial stop."""
    end = len(text.rstrip(REPLACEMENT))
    return end - partial_stop_length(text[:end], stops)


class TextStream:
    """One row's text as it grows: ``push`` each round's tokens, ``finish`` at the end.

    Attributes:
        ids: every token pushed.
        sent: the text handed out so far (always a prefix of the final text).
        stopped_at: the token count that completed a stop string (None: no stop string met).
    """

    def __init__(self, tokenizer: Any, stops: tuple[str, ...] = ()) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(s for s in stops if s)
        self.ids: list[int] = []
        self.sent = ""
        self.stopped_at: int | None = None
        self.final: str | None = None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, tokens: list[int]) -> str:
        """Add a round's tokens; returns the new text that may be sent (maybe ""). After a stop
        string (``stopped_at`` set) the text is final: cut before the stop."""
        assert self.final is None, "the stream has finished"
        before = len(self.ids)
        self.ids += tokens
        text = self.decode(self.ids)
        cut = first_stop(text, self.stops) if self.stops else None
        if cut is not None:
            self.stopped_at = self._tokens_to_stop(before)
            return self._close(text[:cut])
        return self._advance(text[: safe_length(text, self.stops)])

    def finish(self) -> str:
        """The rest of the text once the row has ended (EOS, length, or cancelled)."""
        if self.final is not None:
            return ""
        return self._close(self.decode(self.ids))

    def _advance(self, text: str) -> str:
        # A decode that rewrote already-sent text (never seen with byte-level BPE) waits for the end.
        if not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def _close(self, text: str) -> str:
        delta = self._advance(text)
        self.final = self.sent if text.startswith(self.sent) else text
        return delta

    def _tokens_to_stop(self, before: int) -> int:
        """The fewest tokens whose text holds a stop string: what the answer's usage counts."""
        for n in range(before + 1, len(self.ids) + 1):
            if first_stop(self.decode(self.ids[:n]), self.stops) is not None:
                return n
        return len(self.ids)
