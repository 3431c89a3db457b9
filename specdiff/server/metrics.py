"""Prometheus metrics of one server, on a registry of its own (so that tests can build several apps).

Speculative-decoding counters carry vLLM's names (``vllm:spec_decode_num_drafts`` and kin, as vLLM's
``vllm/v1/spec_decode/metrics.py`` names them) under a ``specdiff:`` prefix; counters are exposed with
the ``_total`` suffix. Per row and round: a *draft* is a round in which the row proposed at least
one token, *draft tokens* what it proposed, *accepted tokens* the accepted prefix, and
``..._per_pos{position}`` counts acceptances at each draft position. Inter-token latency is the
gap between two rounds that gave a request tokens (a round gives several).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

PREFIX = "specdiff:"
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
TTFT_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
# The ``_created`` timestamp series double the page and no dashboard reads them (vLLM drops them too).
disable_created_metrics()
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OUTCOMES = ("stop", "length", "cancelled", "error", "rejected")


class ServerMetrics:
    """Every metric the server exports; ``exposition()`` is the ``/metrics`` body."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg, labels = self.registry, ["model_name"]

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels + list(extra), registry=reg)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=reg)

        self.num_drafts = counter("spec_decode_num_drafts", "Rounds in which a request proposed draft tokens.")
        self.num_draft_tokens = counter("spec_decode_num_draft_tokens", "Draft tokens proposed.")
        self.num_accepted_tokens = counter("spec_decode_num_accepted_tokens", "Draft tokens accepted.")
        self.accepted_per_pos = counter("spec_decode_num_accepted_tokens_per_pos",
                                        "Draft tokens accepted at each draft position.", ("position",))
        self.denoising_steps = counter("spec_decode_num_denoising_steps",
                                       "Denoising steps the diffusion drafter ran (one loop serves the batch).")
        self.rounds = counter("spec_decode_num_rounds", "Batch rounds run, by proposer.", ("proposer",))
        self.prompt_tokens = counter("prompt_tokens", "Prompt tokens of finished requests.")
        self.generation_tokens = counter("generation_tokens", "Tokens generated for finished requests (usage).")
        self.requests = counter("requests", "Requests by outcome: " + ", ".join(OUTCOMES) + ".", ("outcome",))
        self.draft_seconds = histogram("draft_seconds", "Seconds a batch round spent drafting.", LATENCY_BUCKETS)
        self.verify_seconds = histogram("verify_seconds", "Seconds a batch round spent verifying.", LATENCY_BUCKETS)
        self.ttft = histogram("time_to_first_token_seconds", "Arrival to the first generated token.", TTFT_BUCKETS)
        self.itl = histogram("inter_token_latency_seconds", "Gap between two rounds that gave a request tokens.",
                             LATENCY_BUCKETS)
        self.batch_rows = histogram("batch_rows", "Rows in a batch round.", BATCH_BUCKETS)
        self.e2e = histogram("e2e_request_latency_seconds", "Arrival to the last token.", TTFT_BUCKETS)
        self.waiting = Gauge(PREFIX + "num_requests_waiting", "Requests queued for a batch slot.", labels,
                             registry=reg)
        self.running = Gauge(PREFIX + "num_requests_running", "Requests in the running batch.", labels, registry=reg)
        self.model_name = model_name
        for outcome in OUTCOMES:  # every outcome shows from the start, at 0
            self.requests.labels(model_name, outcome)

    def row_round(self, proposed: int, accepted: int) -> None:
        """One row's part in a round."""
        if proposed <= 0:
            return
        m = self.model_name
        self.num_drafts.labels(m).inc()
        self.num_draft_tokens.labels(m).inc(proposed)
        self.num_accepted_tokens.labels(m).inc(accepted)
        for position in range(accepted):
            self.accepted_per_pos.labels(m, str(position)).inc()

    def batch_round(self, rows: int, proposer: str, draft_s: float, verify_s: float, steps_used: int) -> None:
        m = self.model_name
        self.rounds.labels(m, proposer).inc()
        self.batch_rows.labels(m).observe(rows)
        self.draft_seconds.labels(m).observe(draft_s)
        self.verify_seconds.labels(m).observe(verify_s)
        if steps_used:
            self.denoising_steps.labels(m).inc(steps_used)

    def finished(self, outcome: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        assert outcome in OUTCOMES, f"unknown outcome {outcome}"
        m = self.model_name
        self.requests.labels(m, outcome).inc()
        self.prompt_tokens.labels(m).inc(prompt_tokens)
        self.generation_tokens.labels(m).inc(completion_tokens)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
