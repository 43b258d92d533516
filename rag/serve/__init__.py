"""Serve one combination: an OpenAI-compatible API, ``/v1/ask``, and a web page, from one process.

    python -m rag serve --index indexes/vellmar                          # hybrid+base on 127.0.0.1:8000
    python -m rag serve --index indexes/vellmar --adapter runs/lora --retriever bm25 --k 3
    python -m rag serve --report reports/vellmar                         # the eval verdict's pick, its exact settings
    python -m rag serve --report reports/vellmar --combination bm25+lora --port 8080
    RAG_API_KEY=secret python -m rag serve --index indexes/vellmar --host 0.0.0.0

Then any OpenAI client: ``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="secret")``;
the page at ``/`` asks and streams, ``/report`` shows the eval report.

Modules, in the order a request goes through them: ``app`` (HTTP, keys, limits,
wire formats from ``openai_api``), ``batcher`` (the queue and its collection
window), ``engine`` (retrieval, prompts and batched streaming generation),
``served`` (what is served, from flags or a report), ``server`` (sockets and uvicorn).
"""

from __future__ import annotations

import logging

from rag.serve.config import API_KEY_ENV, ServeConfig
from rag.serve.served import Served, from_report, generator_label

# The HTTP side (rag.serve.app, rag.serve.server) imports FastAPI and uvicorn: loaded by serve() only,
# so that `python -m rag ask` does not pay for them.
__all__ = ["API_KEY_ENV", "ServeConfig", "Served", "from_report", "generator_label", "serve"]

logger = logging.getLogger(__name__)


def serve(served: Served, settings: ServeConfig) -> None:
    """Bind, load the models once, then answer until interrupted."""
    try:
        from rag.serve.app import create_app
        from rag.serve.server import bind, is_loopback, run, url_of
    except ImportError as error:
        raise ImportError(f"python -m rag serve needs FastAPI and uvicorn ({error}): run `make setup` or pip install 'rag-lab[serve]'") from error

    settings.check()
    sock = bind(settings.host, settings.port)  # before loading the models: a taken port fails at once
    if not is_loopback(settings.host) and not settings.api_key:
        logger.warning(
            "listening on %s without an API key: anyone who can reach this address can use the models; "
            "set --api-key or %s", settings.host, API_KEY_ENV,
        )
    app = create_app(served, settings)
    url = url_of(sock)
    logger.info("serving %s at %s/ (OpenAI base URL %s/v1, API key %s)", served.name, url, url, "required" if settings.api_key else "none")
    run(app, sock)
