"""The app through FastAPI's TestClient, on the pocket pair: answers equal ``generate()``, streams
concatenate to them, bad input gets a 4xx naming the problem, a failure stays in its request."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from server_helpers import NEW, greedy_text, metric

from specdiff.server import engine as engine_module
from specdiff.server.app import ServerConfig, create_app

MODEL = "pocket"


@pytest.fixture(scope="module")
def client(pocket):
    app = create_app(pocket, ServerConfig(model_name=MODEL, max_batch_size=8, chat_template="plain"))
    with TestClient(app) as client:
        yield client


def body(prompt, **extra):
    return {"model": MODEL, "prompt": prompt, "max_tokens": NEW, "temperature": 0} | extra


def events(client, path: str, payload: dict) -> list:
    """The stream's events: parsed chunks, and the final "[DONE]"."""
    with client.stream("POST", path, json=payload | {"stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_a_completion_is_what_generate_gives(client, pocket, code_prompts):
    for prompt in code_prompts[:2]:
        out = client.post("/v1/completions", json=body(prompt)).json()
        text, tokens = greedy_text(pocket, prompt)
        assert out["object"] == "text_completion" and out["model"] == MODEL
        assert out["choices"][0]["text"] == text and out["choices"][0]["finish_reason"] == "length"
        prompt_tokens = pocket.encode_prompt(prompt).shape[1]
        assert out["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                                "total_tokens": prompt_tokens + len(tokens)}


def test_a_stream_concatenates_to_the_answer_a_chunk_a_round(client, code_prompts):
    payload = body(code_prompts[2], specdiff={"summary": True})
    whole = client.post("/v1/completions", json=payload).json()
    stream = events(client, "/v1/completions", payload | {"stream_options": {"include_usage": True}})
    assert stream[-1] == "[DONE]"
    chunks, usage_chunk = stream[:-2], stream[-2]
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    summary = chunks[-1]["specdiff"]
    assert len(chunks) - 1 <= summary["rounds"] < NEW or summary["acceptance_length"] == 1.0


def test_chat_goes_through_the_template(client, pocket):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "def add(a, b):"}]
    payload = {"model": MODEL, "messages": messages, "max_tokens": NEW, "temperature": 0}
    out = client.post("/v1/chat/completions", json=payload).json()
    text, _ = greedy_text(pocket, messages)
    assert out["object"] == "chat.completion" and out["choices"][0]["message"] == {"role": "assistant",
                                                                                    "content": text}
    stream = events(client, "/v1/chat/completions", payload)
    assert stream[0]["object"] == "chat.completion.chunk" and stream[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in stream[:-1]) == text


def test_a_stop_string_cuts_the_answer_and_ends_it(client, pocket, code_prompts):
    text, tokens = greedy_text(pocket, code_prompts[3])
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), "the reference text should have something to stop at"
    out = client.post("/v1/completions", json=body(code_prompts[3], stop=[stop, "never-there"])).json()
    choice = out["choices"][0]
    assert choice["text"] == text[: text.index(stop)] and choice["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] < len(tokens)
    stream = events(client, "/v1/completions", body(code_prompts[3], stop=stop))
    assert "".join(c["choices"][0]["text"] for c in stream[:-1]) == choice["text"]


BAD = [
    ({"prompt": "x"}, 400, "model"),
    ({"model": MODEL}, 400, "prompt"),
    ({"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL, "prompt": "x", "max_tokens": 5000}, 400, "max_tokens"),
    ({"model": MODEL, "prompt": "x", "temperature": -0.5}, 400, "temperature"),
    ({"model": "gpt-4o", "prompt": "x"}, 404, "model"),
    ({"model": MODEL, "prompt": "x " * 5000}, 400, "prompt"),
    ({"model": MODEL, "prompt": ""}, 400, "prompt"),
    ({"model": MODEL, "prompt": "x", "n": 3}, 400, "n"),
    ({"model": MODEL, "prompt": "x", "logprobs": 2}, 400, "logprobs"),
    ({"model": MODEL, "prompt": "x", "frobnicate": True}, 400, "frobnicate"),
    ({"model": MODEL, "prompt": "x", "specdiff": {"denoising_steps": 4}}, 400, "specdiff.denoising_steps"),
    ({"model": MODEL, "prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options"),
    ({"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt"),
]


@pytest.mark.parametrize("payload,status,param", BAD)
def test_bad_input_is_a_4xx_naming_the_field(client, payload, status, param):
    response = client.post("/v1/completions", json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_bad_chat_input_and_malformed_json(client):
    response = client.post("/v1/completions", content=b'{"model": "pocket", "prompt":', headers={
        "content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
    for messages, param in (([], "messages"), ([{"role": "robot", "content": "hi"}], "messages.0.role")):
        response = client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages})
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert client.post("/v1/completions", json=body("def f():", max_tokens=2)).status_code == 200


def test_draining_answers_503_and_health_says_so(client):
    app = client.app
    app.state.draining = True
    try:
        response = client.post("/v1/completions", json=body("x"))
        assert response.status_code == 503 and response.json()["error"]["code"] == "server_draining"
        assert client.get("/health").status_code == 503
    finally:
        app.state.draining = False
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL


class FailingText(engine_module.TextStream):
    """A fault inside one request's handling (its text stream raises), with the decoder untouched."""

    def push(self, tokens):
        if "<boom>" in self.stops:
            raise RuntimeError("injected fault")
        return super().push(tokens)


def test_a_failure_inside_one_request_fails_it_alone(client, pocket, code_prompts, monkeypatch):
    monkeypatch.setattr(engine_module, "TextStream", FailingText)
    payloads = [body(code_prompts[4], stop="<boom>"), body(code_prompts[5])]
    with ThreadPoolExecutor(2) as pool:
        failed, fine = pool.map(lambda p: client.post("/v1/completions", json=p), payloads)
    assert failed.status_code == 500 and "injected fault" in failed.json()["error"]["message"]
    assert fine.status_code == 200 and fine.json()["choices"][0]["text"] == greedy_text(pocket, code_prompts[5])[0]


def test_a_failed_round_fails_its_rows_and_the_server_goes_on(client, pocket, code_prompts, monkeypatch):
    engine = client.app.state.engine
    monkeypatch.setattr(engine.run, "step", lambda: (_ for _ in ()).throw(RuntimeError("round broke")))
    response = client.post("/v1/completions", json=body(code_prompts[6]))
    assert response.status_code == 500 and "round broke" in response.json()["error"]["message"]
    out = client.post("/v1/completions", json=body(code_prompts[6])).json()  # a fresh BatchRun serves it
    assert out["choices"][0]["text"] == greedy_text(pocket, code_prompts[6])[0]


def test_metrics_add_up_to_the_answers(client, code_prompts):
    names = ("spec_decode_num_drafts", "spec_decode_num_draft_tokens", "spec_decode_num_accepted_tokens",
             "generation_tokens", "prompt_tokens")
    before = client.get("/metrics").text
    payloads = [body(p, specdiff={"summary": True}, max_tokens=8 + 4 * i) for i, p in enumerate(code_prompts[7:11])]
    with ThreadPoolExecutor(4) as pool:
        answers = [r.json() for r in pool.map(lambda p: client.post("/v1/completions", json=p), payloads)]
    after = client.get("/metrics").text
    delta = {n: metric(after, f"specdiff:{n}_total") - metric(before, f"specdiff:{n}_total") for n in names}
    assert delta["spec_decode_num_drafts"] == sum(a["specdiff"]["drafts"] for a in answers)
    assert delta["spec_decode_num_draft_tokens"] == sum(a["specdiff"]["draft_tokens"] for a in answers)
    assert delta["spec_decode_num_accepted_tokens"] == sum(a["specdiff"]["accepted_tokens"] for a in answers)
    per_pos = metric(after, "specdiff:spec_decode_num_accepted_tokens_per_pos_total") - metric(
        before, "specdiff:spec_decode_num_accepted_tokens_per_pos_total")
    assert per_pos == delta["spec_decode_num_accepted_tokens"]
    assert delta["generation_tokens"] == sum(a["usage"]["completion_tokens"] for a in answers)
    assert delta["prompt_tokens"] == sum(a["usage"]["prompt_tokens"] for a in answers)
    assert metric(after, "specdiff:requests_total", outcome="length") - metric(
        before, "specdiff:requests_total", outcome="length") == 4
    assert metric(after, "specdiff:time_to_first_token_seconds_count") >= 4
    assert "specdiff:num_requests_waiting" in after and "specdiff:inter_token_latency_seconds_bucket" in after


def test_past_max_batch_size_requests_queue_and_still_get_their_answers(pocket, code_prompts):
    """A second app (its own engine and registry) holding one row at a time: the others wait their turn."""
    app = create_app(pocket, ServerConfig(model_name=MODEL, max_batch_size=1))
    prompts = code_prompts[11:14]
    with TestClient(app) as client, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda p: client.post("/v1/completions", json=body(p, max_tokens=8)).json(), prompts))
        page = client.get("/metrics").text
    assert [a["choices"][0]["text"] for a in answers] == [greedy_text(pocket, p, 8)[0] for p in prompts]
    rounds = metric(page, "specdiff:batch_rows_count")
    assert rounds > 0 and metric(page, "specdiff:batch_rows_bucket", le="1.0") == rounds


def test_sampled_requests_run_beside_greedy_ones_and_a_seed_repeats(client, code_prompts):
    """Per-request sampling in one batch; a seeded request that does not draft samples from its own
    generator only, so it repeats whatever runs beside it."""
    seeded = body(code_prompts[14], temperature=0.9, top_p=0.95, seed=11, max_tokens=12,
                  specdiff={"speculative": False})
    payloads = [seeded, body(code_prompts[15], temperature=1.0, max_tokens=12), body(code_prompts[16], max_tokens=12)]
    with ThreadPoolExecutor(3) as pool:
        first = [r.json() for r in pool.map(lambda p: client.post("/v1/completions", json=p), payloads)]
    again = client.post("/v1/completions", json=seeded).json()
    assert again["choices"][0]["text"] == first[0]["choices"][0]["text"]
    assert all(a["usage"]["completion_tokens"] == 12 or a["choices"][0]["finish_reason"] == "stop" for a in first)
