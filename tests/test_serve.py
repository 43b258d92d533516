"""python -m rag serve, tested with real clients: the openai package, LangChain's ChatOpenAI, headless Chromium.

One server (real models, a copy of the Vellmar index, an API key) runs from a
thread on 127.0.0.1 and a free port for the whole module; the CLI test starts
its own process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from browser import Browser, find_chromium
from conftest import QA_FILE, ROOT

from rag import Pipeline, ingest
from rag.config import Config
from rag.pipeline import Answer
from rag.serve import ServeConfig, Served, from_report
from rag.serve.app import create_app
from rag.serve.batcher import Batcher, Job, Request
from rag.serve.server import background

# On a CPU busy with other jobs, two OpenMP threads per process spinning against them made generation
# 3-6x slower in our runs (the README's OMP_NUM_THREADS=1 advice); on a quiet machine two threads are faster.
BUSY = os.getloadavg()[0] >= (os.cpu_count() or 1)
API_KEY = "test-key-5f1c"
FERRY = "What is the name of the ferry to Port Aldric?"  # "ferry" alone is in several of the 19 files
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module", autouse=True)
def torch_threads():
    import torch

    threads = torch.get_num_threads()
    if BUSY:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def live_index(vellmar_index, tmp_path_factory):
    """A copy of the session index: the reload test publishes a new generation into it."""
    folder = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(vellmar_index, folder)
    return folder


@pytest.fixture(scope="module")
def eval_report(vellmar_index, tmp_path_factory):
    """A small real eval report: 2 questions (one unanswerable), closed book and BM25 (one passage), base and few-shot."""
    from rag.eval import EvalConfig, run_eval

    out = tmp_path_factory.mktemp("report")
    settings = EvalConfig(
        str(QA_FILE), str(out), index=str(vellmar_index), retrievers=("none", "bm25"), generators=("base", "fewshot"),
        limit=2, bootstrap_resamples=200, rag=Config(max_new_tokens=6, k=1),
    )
    run_eval(settings, progress=False)
    return out


@pytest.fixture(scope="module")
def server(live_index, generator, eval_report):
    # Batches of up to 16: the 16 load-test clients can share one.
    pipeline = Pipeline(live_index, generator.config.override({"generation_batch_size": 16}), generator=generator)
    served = Served("base", pipeline, report=eval_report)
    settings = ServeConfig(api_key=API_KEY, max_tokens=64, max_request_bytes=8192, batch_window_ms=30)
    app = create_app(served, settings)
    with background(app) as url:
        yield SimpleNamespace(url=url, app=app, http=httpx.Client(base_url=url, headers=AUTH, timeout=300))


def health(server) -> dict:
    return server.http.get("/healthz").json()


# ---------------------------------------------------------------------------- real clients


def test_openai_client_plain_and_streamed(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
    assert [m.id for m in client.models.list()][:2] == ["hybrid+base", "dense+base"]

    completion = client.chat.completions.create(
        model="hybrid+base", messages=[{"role": "user", "content": FERRY}], max_tokens=16, extra_body={"k": 2}
    )
    text = completion.choices[0].message.content
    answer, _, cited = text.partition("\n\nSources:\n")
    assert "Sula Wren" in answer and "[1] ferry-schedule.md" in cited
    sources = completion.model_extra["sources"]
    assert sources[0]["source"].endswith("ferry-schedule.md") and sources[0]["number"] == 1 and sources[0]["text"]
    assert completion.usage.prompt_tokens > 100 and 0 < completion.usage.completion_tokens <= 16

    stream = client.chat.completions.create(
        model="bm25+base", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": FERRY}],
        max_tokens=16, stream=True, stream_options={"include_usage": True}, extra_body={"k": 2},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Sula Wren" in text and "\n\nSources:\n[1] ferry-schedule.md" in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # it streamed, piece by piece
    first, last = chunks[0].model_extra["sources"], [c for c in chunks if c.choices][-1]
    assert len(first) == 2 and last.choices[0].finish_reason in ("stop", "length")
    assert [s["number"] for s in last.model_extra["sources"]] == [1, 2]
    assert chunks[-1].usage.completion_tokens > 0 and all(c.model == "bm25+base" for c in chunks)


def test_langchain_chat_openai_plain_and_streamed(server):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="bm25+base", base_url=server.url + "/v1", api_key=API_KEY, max_tokens=16, max_retries=0, timeout=300, extra_body={"k": 2}
    )
    reply = chat.invoke(FERRY)
    assert "Sula Wren" in reply.content and "Sources:\n[1] ferry-schedule.md" in reply.content
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    streamed = "".join(chunk.content for chunk in chat.stream(FERRY))
    assert "Sula Wren" in streamed and "Sources:\n[1] ferry-schedule.md" in streamed


def test_ask_returns_what_ask_json_prints_plain_and_streamed(server):
    answer = server.http.post("/v1/ask", json={"question": "Who founded the seed library?", "retriever": "bm25", "k": 2}).json()
    assert set(answer) == set(Answer("", "", [], 0).to_dict())
    assert answer["sources"][0]["source"].endswith("seed-library.txt")
    assert set(answer["sources"][0]) == {"source", "page", "chunk_id", "score", "text", "cited"}
    assert 0 < answer["timings"]["first_token_s"] <= answer["timings"]["total_s"]

    with server.http.stream("POST", "/v1/ask", json={"question": FERRY, "retriever": "none", "stream": True}) as response:
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert events[0] == "sources" and events[-1] == "answer" and "token" in events


def test_source_files_are_only_those_in_the_index(server, live_index):
    source = str(ROOT / "corpora" / "vellmar" / "ferry-schedule.md")
    got = server.http.get("/v1/files", params={"source": source})
    assert got.status_code == 200 and "Sula Wren" in got.text
    assert got.headers["content-security-policy"] == "sandbox" and got.headers["content-type"].startswith("text/plain")
    html = server.http.get("/v1/files", params={"source": next(str(p) for p in (ROOT / "corpora" / "vellmar").glob("*.html"))})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/plain")  # never rendered as a page
    for outside in ("/etc/passwd", str(QA_FILE), source + "/../ferry-schedule.md", str(live_index / "CURRENT"), "ferry-schedule.md"):
        refused = server.http.get("/v1/files", params={"source": outside})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_indexed", outside


@pytest.mark.parametrize(
    "method, path, body, headers, status, code",
    [
        ("GET", "/v1/models", None, {"Authorization": "Bearer wrong"}, 401, "invalid_api_key"),
        ("POST", "/v1/ask", {"question": "x"}, {"Authorization": ""}, 401, "invalid_api_key"),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 65}, None, 400, "max_tokens"),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "system", "content": "x"}]}, None, 400, "invalid_messages"),
        ("POST", "/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}, None, 404, "model_not_found"),
        ("POST", "/v1/chat/completions", {"messages": []}, None, 400, "invalid_request"),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}, None, 400, "n"),
        ("POST", "/v1/ask", {"question": "x", "retriever": "grep"}, None, 400, "invalid_retriever"),
        ("POST", "/v1/ask", {"question": "x", "k": 0}, None, 400, "invalid_request"),
        ("POST", "/v1/ask", {"question": "x" * 9000}, None, 413, None),
        ("POST", "/v1/ask", {"question": "word " * 1600}, None, 400, None),  # over the prompt's token budget
        ("GET", "/v1/nothing", None, None, 404, None),
    ],
)
def test_errors_are_4xx_with_a_json_body(server, method, path, body, headers, status, code):
    response = server.http.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and (code is None or error["code"] == code)


def test_a_body_without_content_length_is_limited_too(server):
    chunks = iter([b'{"question": "', b"x" * 9000, b'"}'])
    response = server.http.post("/v1/ask", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "max-request-bytes" in response.json()["error"]["message"]


# ---------------------------------------------------------------------------- queue, load, disconnects


def test_batcher_batches_a_window_and_never_runs_a_cancelled_job():
    loop = asyncio.new_event_loop()
    started, release, batches = threading.Event(), threading.Event(), []

    def run_batch(jobs):
        batches.append([job.request.question for job in jobs])
        started.set()
        release.wait(10)
        for job in jobs:
            job.emit("done", None)

    batcher = Batcher(run_batch, window_s=0.05, max_batch=3).start()
    jobs = [Job(Request(str(i), "none", 1, 1), loop) for i in range(6)]
    batcher.submit(jobs[0])
    assert started.wait(5)
    for job in jobs[1:]:
        batcher.submit(job)  # queued while the first batch runs
    jobs[2].cancel()
    release.set()
    batcher.stop()
    loop.close()
    assert batches == [["0"], ["1", "3"], ["4", "5"]]  # [1, 2, 3] collected, 2 dropped: its client had gone
    assert batcher.counters.cancelled == 1 and batcher.counters.finished == 5


def test_sixteen_clients_four_questions_each_none_lost(server):
    from openai import AsyncOpenAI

    questions = [json.loads(line)["question"] for line in QA_FILE.read_text(encoding="utf-8").splitlines()][:64]
    before = health(server)

    async def client_asks(client, mine: list[str]) -> list[str]:
        answers = []
        for question in mine:  # one after the other, as a user would
            reply = await client.chat.completions.create(model="none+base", messages=[{"role": "user", "content": question}], max_tokens=8)
            answers.append(reply.choices[0].message.content)
        return answers

    async def load():
        client = AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=600)
        return await asyncio.gather(*(client_asks(client, questions[i * 4 : i * 4 + 4]) for i in range(16)))

    answers = [answer for per_client in asyncio.run(load()) for answer in per_client]
    after = health(server)
    assert len(answers) == 64 and all(answer.strip() for answer in answers)
    assert after["finished"] - before["finished"] == 64 and after["cancelled"] == before["cancelled"]
    assert after["batches"] - before["batches"] < 64  # batched, not one by one


def test_a_client_that_disconnects_frees_its_slot(server):
    before = health(server)
    body = {"question": "Describe the cooperative in detail.", "retriever": "none", "max_tokens": 64, "stream": True}
    with server.http.stream("POST", "/v1/ask", json=body) as response:
        for line in response.iter_lines():
            if line == "event: token":
                break  # one piece of the answer, then hang up
    deadline = time.monotonic() + 60
    while (now := health(server))["cancelled"] == before["cancelled"] or now["active"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    assert now["finished"] == before["finished"] and now["cancelled"] == before["cancelled"] + 1


# ---------------------------------------------------------------------------- reports, reload


def test_report_combination_is_served_with_its_settings(eval_report, vellmar_index):
    report = json.loads((eval_report / "report.json").read_text())
    picked = from_report(eval_report)
    assert picked.name == report["verdict"]["cheapest"] and picked.report == eval_report
    served = from_report(eval_report, "bm25+fewshot")
    config = served.pipeline.config
    assert served.name == "bm25+fewshot" and (config.retriever, config.few_shot, config.k, config.max_new_tokens) == ("bm25", 4, 1, 6)
    assert served.pipeline.index.folder.parent == vellmar_index
    assert from_report(eval_report, "none+base").pipeline.index is None
    with pytest.raises(ValueError, match="choose one of"):
        from_report(eval_report, "dense+lora")
    with pytest.raises(ValueError, match="was not cross-validated"):
        from_report(eval_report, "bm25+fewshot", fold=0)


def test_report_endpoints(server, eval_report):
    data = server.http.get("/v1/report").json()
    assert len(data["report"]["combinations"]) == 4 and data["report"]["verdict"]["summary"]
    assert {p["combination"] for p in data["predictions"]} == {"none+base", "none+fewshot", "bm25+base", "bm25+fewshot"}
    assert data["charts"] == ["quality_vs_cost.png", "recall_at_k.png"]
    chart = server.http.get("/v1/report/charts/recall_at_k.png")
    assert chart.status_code == 200 and chart.content.startswith(b"\x89PNG")
    assert server.http.get("/v1/report/charts/settings.json").status_code == 404
    assert server.http.get("/v1/report/charts/..%2Fsettings.json").status_code == 404


def test_a_new_index_generation_is_picked_up_without_restart(server, live_index, embedder, tmp_path):
    before = health(server)["index_generation"]
    extra = tmp_path / "cats"
    extra.mkdir()
    (extra / "lighthouse-cat.md").write_text("# The lighthouse cat\n\nThe cat of the north lighthouse is called Biscuit Marlowe.\n")
    ingest([extra], live_index, Config(), embedder=embedder)  # incremental: the other files stay
    answer = server.http.post("/v1/ask", json={"question": "What is the lighthouse cat called?", "retriever": "bm25", "k": 1}).json()
    assert answer["sources"][0]["source"].endswith("lighthouse-cat.md")
    assert health(server)["index_generation"] != before
    assert server.http.get("/v1/files", params={"source": str(extra / "lighthouse-cat.md")}).status_code == 200


# ---------------------------------------------------------------------------- a real browser


def test_browser_asks_streams_and_shows_sources(server, tmp_path):
    chromium = find_chromium()
    assert chromium, "no chromium found: run `make setup` (it installs Debian's chromium package with apt-get)"
    with Browser(chromium) as browser:
        browser.navigate(f"{server.url}/#key={API_KEY}")
        browser.wait_for("document.body.dataset.state === 'idle'")
        browser.select("#retriever", "bm25")
        browser.evaluate("document.querySelector('#k').value = 3")
        browser.type_into("#question", FERRY)
        browser.click("#ask")
        browser.wait_for("document.body.dataset.state === 'asking'", timeout=10)
        browser.wait_for("document.body.dataset.state !== 'asking'", timeout=240)
        state = browser.evaluate(
            "({state: document.body.dataset.state, answer: document.querySelector('#answer').textContent,"
            " sources: [...document.querySelectorAll('.source')].map(s => s.textContent),"
            " cited: document.querySelectorAll('.source.cited').length})"
        )
        assert state["state"] == "done", state
        assert "Sula Wren" in state["answer"] and len(state["sources"]) == 3
        assert "ferry-schedule.md" in state["sources"][0] and "score" in state["sources"][0] and "Kelmby" in state["sources"][0]
        browser.screenshot(tmp_path / "serve-page.png")

        browser.navigate(f"{server.url}/report")
        browser.wait_for("document.body.dataset.state !== 'loading'", timeout=60)
        report = browser.evaluate(
            "({state: document.body.dataset.state, rows: document.querySelectorAll('#results tbody tr').length,"
            " verdict: document.querySelectorAll('#verdict li').length, charts: document.querySelectorAll('#charts img').length,"
            " answers: document.querySelectorAll('#answers tbody tr').length, differ: document.querySelector('#disagree-count').textContent})"
        )
        assert report["state"] == "done" and report["rows"] == 4 and report["verdict"] >= 2 and report["charts"] == 2, report
        assert "questions differ" in report["differ"]
        browser.screenshot(tmp_path / "serve-report.png")
    # RAG_SCREENSHOTS=docs keeps the screenshots (the README's docs/serve-page.png comes from here).
    if folder := os.environ.get("RAG_SCREENSHOTS"):
        for name in ("serve-page.png", "serve-report.png"):
            shutil.copy(tmp_path / name, Path(folder) / name)


# ---------------------------------------------------------------------------- the command line


def test_cli_serve_starts_and_answers(vellmar_index):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_API_KEY": "cli-key"} | ({"OMP_NUM_THREADS": "1"} if BUSY else {})
    command = [sys.executable, "-m", "rag", "serve", "--index", str(vellmar_index), "--retriever", "bm25", "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the server exited"
            if line.startswith("serving bm25+base at "):
                url = line.split()[3].rstrip("/")
        assert url and url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/v1/models").status_code == 401  # the key came from RAG_API_KEY
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer cli-key"}).json()
        assert models["data"][0]["id"] == "bm25+base"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--index", "{tmp}/none"], "python -m rag.ingest"),
        (["--report", "{tmp}", "--adapter", "x"], "--adapter"),
        (["--report", "{tmp}"], "settings.json"),
        (["--index", "{index}", "--combination", "bm25+lora"], "--report"),
        (["--index", "{index}", "--max-tokens", "0"], "max_tokens"),
    ],
)
def test_cli_serve_errors_are_one_line_with_exit_2(vellmar_index, tmp_path, capsys, args, message):
    from rag.cli import main
    from rag.cli_common import run_cli

    argv = ["serve", *(a.format(tmp=tmp_path, index=vellmar_index) for a in args)]
    with pytest.raises(SystemExit) as exit:
        run_cli(lambda: main(argv))
    error = capsys.readouterr().err
    assert exit.value.code == 2 and message in error and len(error.strip().splitlines()) == 1, error
