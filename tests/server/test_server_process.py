"""``specdiff serve`` as a real uvicorn process on a free local port, driven by the official openai client.

One server for the module (loading the pocket pair costs seconds); the SIGTERM test drains and stops
it, so it runs last (pytest keeps the file's order).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from server_helpers import NEW, free_port, greedy_text, metric

from specdiff.server.app import PLAIN_CHAT_TEMPLATE

MODEL = "pocket"
CONCURRENT = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = os.environ | {"OMP_NUM_THREADS": "1", "SPECDIFF_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "specdiff", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--chat-template", "plain", "--max-batch-size", str(CONCURRENT), "--served-model-name", MODEL],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"specdiff serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"specdiff serve did not come up in 90 s:\n{log.read_text()}")
    yield base, process, log
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def chat_pocket(pocket):
    pocket.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE  # what --chat-template plain gives the server
    return pocket


def clients(base: str) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    kwargs = {"base_url": base + "/v1", "api_key": "unused", "max_retries": 0, "timeout": 120}
    return openai.OpenAI(**kwargs), openai.AsyncOpenAI(**kwargs)


def test_the_sync_client_on_both_endpoints_streamed_or_not(server, chat_pocket, code_prompts):
    sync, _ = clients(server[0])
    assert [m.id for m in sync.models.list().data] == [MODEL]
    prompt = code_prompts[0]
    text, tokens = greedy_text(chat_pocket, prompt)
    whole = sync.completions.create(model=MODEL, prompt=prompt, max_tokens=NEW, temperature=0)
    assert whole.choices[0].text == text and whole.usage.completion_tokens == len(tokens)
    stream = sync.completions.create(model=MODEL, prompt=prompt, max_tokens=NEW, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == text
    messages = [{"role": "user", "content": "Write a function that adds two numbers."}]
    text, _ = greedy_text(chat_pocket, messages)
    chat = sync.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW, temperature=0)
    assert chat.choices[0].message.content == text
    parts = sync.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW, temperature=0,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(parts)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    with pytest.raises(openai.BadRequestError, match="max_tokens must be at least 1"):
        sync.completions.create(model=MODEL, prompt=prompt, max_tokens=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        sync.completions.create(model="gpt-4o", prompt=prompt, max_tokens=4)


def test_the_async_client_on_chat_streamed_or_not(server, chat_pocket):
    _, client = clients(server[0])
    messages = [{"role": "user", "content": "Write a class that holds a stack of items."}]
    text, tokens = greedy_text(chat_pocket, messages)

    async def both():
        whole = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW, temperature=0)
        stream = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=NEW,
                                                      temperature=0, stream=True)
        return whole, [chunk async for chunk in stream]

    whole, chunks = asyncio.run(asyncio.wait_for(both(), timeout=120))
    assert whole.choices[0].message.content == text and whole.usage.completion_tokens == len(tokens)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_concurrent_greedy_requests_each_get_their_own_answer(server, pocket, code_prompts):
    base = server[0]
    _, client = clients(base)
    prompts = code_prompts[1 : 1 + CONCURRENT]
    references = [greedy_text(pocket, p) for p in prompts]
    before = httpx.get(base + "/metrics").text

    async def one(prompt: str, i: int):
        if i % 2:
            return await client.completions.create(model=MODEL, prompt=prompt, max_tokens=NEW, temperature=0,
                                                   extra_body={"specdiff": {"summary": True}})
        stream = await client.completions.create(
            model=MODEL, prompt=prompt, max_tokens=NEW, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"specdiff": {"summary": True}})
        chunks = [chunk async for chunk in stream]
        return "".join(c.choices[0].text for c in chunks if c.choices), chunks

    async def everyone():
        return await asyncio.wait_for(asyncio.gather(*(one(p, i) for i, p in enumerate(prompts))), timeout=180)

    answers = asyncio.run(everyone())
    assert len(answers) == CONCURRENT
    usage, summaries = [], []
    for answer, (text, _) in zip(answers, references, strict=True):
        if isinstance(answer, tuple):
            got, chunks = answer
            usage.append(chunks[-1].usage)
            summaries.append(next(c.model_extra["specdiff"] for c in chunks if "specdiff" in (c.model_extra or {})))
        else:
            got = answer.choices[0].text
            usage.append(answer.usage)
            summaries.append(answer.model_extra["specdiff"])
        assert got == text
    after = httpx.get(base + "/metrics").text

    def grew(name: str) -> float:
        return metric(after, f"specdiff:{name}_total") - metric(before, f"specdiff:{name}_total")

    assert grew("generation_tokens") == sum(u.completion_tokens for u in usage) == sum(len(t) for _, t in references)
    assert grew("prompt_tokens") == sum(u.prompt_tokens for u in usage)
    assert grew("spec_decode_num_drafts") == sum(s["drafts"] for s in summaries)
    assert grew("spec_decode_num_draft_tokens") == sum(s["draft_tokens"] for s in summaries)
    assert grew("spec_decode_num_accepted_tokens") == sum(s["accepted_tokens"] for s in summaries)
    assert grew("requests") == CONCURRENT


def wait_for_one_more_cancel(base: str, cancelled: float) -> str:
    """The metrics page once one more request counts as cancelled and none runs (or after 30 s): a
    departed client's row leaves at the next round boundary."""
    deadline = time.monotonic() + 30
    while True:
        page = httpx.get(base + "/metrics").text
        done = metric(page, "specdiff:requests_total", outcome="cancelled") == cancelled + 1 and metric(
            page, "specdiff:num_requests_running") == 0
        if done or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def test_a_client_killed_mid_stream_leaves_the_others_intact(server, pocket, code_prompts):
    base = server[0]
    _, client = clients(base)
    prompts = code_prompts[20:23]
    references = [greedy_text(pocket, p)[0] for p in prompts[1:]]
    cancelled = metric(httpx.get(base + "/metrics").text, "specdiff:requests_total", outcome="cancelled")

    async def killed():
        stream = await client.completions.create(model=MODEL, prompt=prompts[0], max_tokens=400, temperature=0,
                                                 stream=True)
        async for _ in stream:
            break
        await stream.close()  # the connection drops, as when a client dies

    async def survivor(prompt: str) -> str:
        stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=NEW, temperature=0,
                                                 stream=True)
        return "".join([c.choices[0].text async for c in stream])

    async def all_three():
        return await asyncio.wait_for(asyncio.gather(killed(), *(survivor(p) for p in prompts[1:])), timeout=120)

    _, *texts = asyncio.run(all_three())
    assert texts == references
    page = wait_for_one_more_cancel(base, cancelled)
    assert metric(page, "specdiff:requests_total", outcome="cancelled") == cancelled + 1
    assert metric(page, "specdiff:num_requests_running") == 0


def test_a_client_gone_before_its_non_streamed_answer_frees_its_row(server, code_prompts):
    base = server[0]
    cancelled = metric(httpx.get(base + "/metrics").text, "specdiff:requests_total", outcome="cancelled")
    body = {"model": MODEL, "prompt": code_prompts[21], "max_tokens": 400, "temperature": 0}
    with pytest.raises(httpx.TimeoutException):  # the client gives up and closes the connection
        httpx.post(base + "/v1/completions", json=body, timeout=1.0)
    page = wait_for_one_more_cancel(base, cancelled)
    assert metric(page, "specdiff:requests_total", outcome="cancelled") == cancelled + 1
    assert metric(page, "specdiff:num_requests_running") == 0


def test_sigterm_drains_then_exits_0(server, pocket, code_prompts):
    """Runs last: the server finishes what it has, refuses new work with a 503, and exits 0."""
    base, process, log = server
    sync, _ = clients(base)
    prompt, new = code_prompts[25], 48
    reference = greedy_text(pocket, prompt, new)[0]
    started, parts = threading.Event(), []

    def long_stream():
        for chunk in sync.completions.create(model=MODEL, prompt=prompt, max_tokens=new, temperature=0,
                                             stream=True):
            parts.append(chunk.choices[0].text)
            started.set()

    reader = threading.Thread(target=long_stream)
    reader.start()
    assert started.wait(60)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = httpx.post(base + "/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 2})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_draining"
    reader.join(60)
    assert "".join(parts) == reference
    assert process.wait(60) == 0, log.read_text()
