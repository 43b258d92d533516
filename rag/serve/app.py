"""The HTTP app: OpenAI-compatible endpoints, ``/v1/ask``, the source files, the report, and the web pages.

Endpoints (every ``/v1`` one needs ``Authorization: Bearer KEY`` when the
server has an API key; errors are ``{"error": {"message", "type", "code"}}``
with a 4xx status):

- ``GET /v1/models``: the served combination, then the same generator behind the other retrievers;
- ``POST /v1/chat/completions``: OpenAI chat completions, plain or streamed (``stream: true``);
- ``POST /v1/ask``: ``{"question", "retriever"?, "k"?, "max_tokens"?, "stream"?}`` answers with
  what ``python -m rag ask --json`` prints, or streams ``sources``, ``token`` and ``answer`` events;
- ``GET /v1/files?source=PATH``: a source file, only if the served index holds it;
- ``GET /v1/report``, ``GET /v1/report/charts/NAME``: the eval report folder given with ``--report``;
- ``GET /healthz``: status, queue and counters (no key needed);
- ``GET /`` and ``GET /report``: the web pages (plain HTML and JavaScript in ``static/``).

    >>> app = create_app(served, ServeConfig())   # doctest: +SKIP  (loads the models once)
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.serve import openai_api as oa
from rag.serve.batcher import Batcher, Job
from rag.serve.batcher import Request as JobRequest
from rag.serve.config import MAX_K, ServeConfig
from rag.serve.engine import Done, Engine
from rag.serve.report_view import chart_path, report_data
from rag.serve.served import Served

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
DISCONNECT_POLL_S = 0.5  # how often a waiting request checks that its client is still there
PAGE_HEADERS = {
    # The pages load their own script and style only; answers and passages are inserted as text, never as HTML.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "request_too_large"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class ClientGone(Exception):
    """The client disconnected while its request waited."""


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse(oa.error_body(message, kind, code), status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413, by its Content-Length or as it streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(413, f"request body over {self.max_bytes} bytes (--max-request-bytes)", "request_too_large")
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                # Raised while FastAPI reads the body, which lets an HTTPException through as it is.
                raise StarletteHTTPException(413, f"request body over {self.max_bytes} bytes (--max-request-bytes)")
            return message

        await self.app(scope, counted, send)


def create_app(served: Served, settings: ServeConfig = ServeConfig(), engine: Engine | None = None) -> FastAPI:
    """The app serving ``served``; the models load here, once. The batcher runs while the app does."""
    settings.check()
    engine = engine or Engine(served, settings.max_tokens)
    batcher = Batcher(engine.run, settings.batch_window_ms / 1000, served.pipeline.config.generation_batch_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="rag-lab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.batcher, app.state.served = engine, batcher, served
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---------------------------------------------------------------- errors, key

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return error_response(error.status, error.message, error.code, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in error.errors())
        return error_response(400, f"invalid request: {problems}", "invalid_request")

    key = settings.api_key.encode()

    def require_key(request: Request) -> None:
        if not key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key):
            raise ApiError(401, "missing or wrong API key: send the header Authorization: Bearer KEY", "invalid_api_key")

    authorized = [Depends(require_key)]

    # ---------------------------------------------------------------- jobs

    def job_request(question: str, retriever: str, k: int | None, max_tokens: int | None) -> JobRequest:
        if retriever not in served.retrievers:
            raise ApiError(400, f"unknown retriever {retriever!r} here; choose one of {', '.join(served.retrievers)}", "invalid_retriever")
        max_tokens = max_tokens or served.pipeline.config.max_new_tokens
        if max_tokens > settings.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens} (--max-tokens)", "max_tokens")
        return JobRequest(question, retriever, k or served.pipeline.config.k, max_tokens)

    def submit(request: JobRequest) -> Job:
        job = Job(request, asyncio.get_running_loop())
        batcher.submit(job)
        return job

    async def wait_event(job: Job, request: Request) -> tuple[str, object]:
        """The job's next event; the job is cancelled if its client disconnects meanwhile."""
        while (event := await job.next_event(DISCONNECT_POLL_S)) is None:
            if await request.is_disconnected():
                job.cancel()
                raise ClientGone
        return event

    async def wait_done(job: Job, request: Request) -> Done:
        while True:
            kind, value = await wait_event(job, request)
            if kind == "error":
                raise ApiError(value.status, str(value))
            if kind == "done":
                return value

    async def first_event(job: Job, request: Request) -> tuple[str, object]:
        """Wait for the sources (or an error, which then gets its own status) before a stream starts."""
        kind, value = await wait_event(job, request)
        if kind == "error":
            raise ApiError(value.status, str(value))
        return kind, value

    def event_stream(job: Job, events: AsyncIterator[str]) -> StreamingResponse:
        async def body():
            try:
                async for text in events:
                    yield text
            finally:  # also when the client disconnects: Starlette cancels this generator
                job.cancel()

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def gone() -> Response:
        return Response(status_code=499)  # nobody reads it: the client has gone

    # ---------------------------------------------------------------- OpenAI

    @app.get("/v1/models", dependencies=authorized)
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "rag-lab"} for name in served.model_ids]}

    @app.post("/v1/chat/completions", dependencies=authorized)
    async def chat_completions(body: oa.ChatRequest, request: Request):
        if body.n != 1:
            raise ApiError(400, "n must be 1: decoding is greedy, every choice would be the same", "n")
        try:
            question = body.question()
            retriever = body.retriever or served.retriever_of(body.model)
        except ValueError as error:
            raise ApiError(400, str(error), "invalid_messages") from None
        except LookupError as error:
            raise ApiError(404, str(error.args[0]), "model_not_found") from None
        job = submit(job_request(question, retriever, body.k, body.max_completion_tokens or body.max_tokens))
        model = served.name if retriever == served.retriever else f"{retriever}+{served.generator}"
        try:
            if not body.stream:
                done = await wait_done(job, request)
                return oa.completion(model, done.answer, done.finish_reason, done.completion_tokens)
            _, sources = await first_event(job, request)
        except ClientGone:
            return gone()
        writer = oa.ChunkWriter(model)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def chunks():
            yield writer.chunk({"role": "assistant", "content": ""}, sources=oa.sources_payload(sources))
            async for kind, value in job.events():
                if kind == "token":
                    yield writer.chunk({"content": value})
                elif kind == "done":
                    answer = value.answer
                    if answer.sources:
                        yield writer.chunk({"content": oa.citations(answer.sources)})
                    yield writer.chunk({}, value.finish_reason, sources=oa.sources_payload(answer.sources))
                    if include_usage:
                        yield writer.usage(answer, value.completion_tokens)
                elif kind == "error":
                    yield oa.sse(oa.error_body(str(value), "server_error"))
            yield oa.sse("[DONE]")

        return event_stream(job, chunks())

    # ---------------------------------------------------------------- ask

    @app.post("/v1/ask", dependencies=authorized)
    async def ask(body: oa.AskRequest, request: Request):
        job = submit(job_request(body.question, body.retriever or served.retriever, body.k, body.max_tokens))
        try:
            if not body.stream:
                return (await wait_done(job, request)).answer.to_dict()
            _, sources = await first_event(job, request)
        except ClientGone:
            return gone()

        async def events():
            yield oa.sse(oa.sources_payload(sources), "sources")
            async for kind, value in job.events():
                if kind == "token":
                    yield oa.sse({"text": value}, "token")
                elif kind == "done":
                    yield oa.sse(value.answer.to_dict() | {"finish_reason": value.finish_reason}, "answer")
                elif kind == "error":
                    yield oa.sse(oa.error_body(str(value), "server_error"), "error")

        return event_stream(job, events())

    # ---------------------------------------------------------------- files, report, health

    @app.get("/v1/files", dependencies=authorized)
    def source_file(source: str):
        record = engine.indexed_file(source)
        if record is None:
            raise ApiError(404, "not a file of the served index", "not_indexed")
        path = Path(record.source)
        if not path.is_file():
            raise ApiError(404, f"{path.name} is in the index but no longer on disk; re-run rag.ingest", "missing_file")
        # Served inert: a PDF as itself, anything else (HTML included) as plain text, in a sandbox.
        media = "application/pdf" if path.suffix.lower() == ".pdf" else "text/plain; charset=utf-8"
        headers = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
        return FileResponse(path, media_type=media, filename=path.name, content_disposition_type="inline", headers=headers)

    def report_folder() -> Path:
        if served.report is None:
            raise ApiError(404, "no eval report here: start the server with --report DIR", "no_report")
        return served.report

    @app.get("/v1/report", dependencies=authorized)
    def report():
        try:
            return report_data(report_folder())
        except FileNotFoundError as error:
            raise ApiError(404, str(error), "no_report") from None

    @app.get("/v1/report/charts/{name}", dependencies=authorized)
    def chart(name: str):
        path = chart_path(report_folder(), name)
        if path is None:
            raise ApiError(404, f"no chart {name!r} in the report", "no_chart")
        return FileResponse(path, media_type="image/png")

    @app.get("/healthz")
    def health():
        counters = batcher.counters
        return {
            "status": "ok",
            "model": served.name,
            "retrievers": served.retrievers,
            "k": served.pipeline.config.k,
            "max_k": MAX_K,
            "max_tokens": served.pipeline.config.max_new_tokens,
            "max_tokens_limit": settings.max_tokens,
            "index_generation": engine.refresh(),
            "report": served.report is not None,
            "auth": bool(key),
            "queued": batcher.queued,
            "active": counters.active,
            "finished": counters.finished,
            "cancelled": counters.cancelled,
            "batches": counters.batches,
        }

    # ---------------------------------------------------------------- pages

    @app.get("/", include_in_schema=False)
    def home():
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/report", include_in_schema=False)
    def report_page():
        return FileResponse(STATIC / "report.html", headers=PAGE_HEADERS)

    return app
