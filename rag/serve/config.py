"""ServeConfig: how ``python -m rag serve`` listens and what it accepts; one flat set of commented defaults.

Every field is a flag of ``python -m rag serve`` (declared once from this class
with :func:`rag.cli_common.option`). The API key can also come from the
:data:`API_KEY_ENV` environment variable, so that it stays out of the process list.

    >>> ServeConfig().host, ServeConfig(port=0).port
    ('127.0.0.1', 0)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

API_KEY_ENV = "RAG_API_KEY"
MAX_K = 20  # passages a request may ask for; the prompt's token budget packs fewer anyway


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback only; another address exposes the models to the network
    port: int = 8000  # 0 = any free port (the log line says which)
    api_key: str = ""  # "" = no key; else every /v1 request needs "Authorization: Bearer KEY"
    max_request_bytes: int = 64 * 1024  # larger request bodies get 413
    max_tokens: int = 512  # the most new tokens one request may ask for (max_tokens)
    batch_window_ms: float = 20.0  # after the first queued request, wait this long for others to batch with it
    report: str = ""  # an eval report folder: serve its combination and show it at /report
    combination: str = ""  # with report: "retriever+generator" to serve (default: the verdict's cheapest within noise)
    fold: int | None = None  # with a cross-validated report: serve the artifacts of this fold (0 to K-1)

    def with_env(self, environ: dict[str, str] = os.environ) -> ServeConfig:
        """The API key from :data:`API_KEY_ENV` when no flag gave one."""
        if self.api_key or not environ.get(API_KEY_ENV):
            return self
        return dataclasses.replace(self, api_key=environ[API_KEY_ENV])

    def check(self) -> None:
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be at least 1024, got {self.max_request_bytes}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.batch_window_ms < 0:
            raise ValueError(f"batch_window_ms must be 0 or more, got {self.batch_window_ms}")
        if (self.combination or self.fold is not None) and not self.report:
            raise ValueError("--combination and --fold choose from an eval report: give --report DIR too")
