"""Embed: texts to unit-length vectors with the sentence-transformers encoder.

Ingest embeds chunks, retrieval embeds questions and training evaluates the
encoder with the same two functions, so every vector lives in one space. An
index remembers which encoder built it; :func:`for_index` picks that encoder
for queries and refuses one that would search another space.

    >>> embedder = load_embedder(Config())                          # doctest: +SKIP
    >>> embed_texts(embedder, ["Who founded it?"], 64).shape        # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import numpy as np

from rag.config import Config
from rag.index import Manifest
from rag.models import embedder_source, resolve_device, resolve_dtype


def load_embedder(config: Config, *, for_training: bool = False):
    """A sentence-transformers model on the configured device and precision (fp32 for training)."""
    from sentence_transformers import SentenceTransformer

    source = embedder_source(config.embedder)
    device = resolve_device(config.device)
    model = SentenceTransformer(str(source.folder), device=device, local_files_only=True)
    dtype = resolve_dtype(config.embed_precision, device, "embed_precision")
    return model if for_training else model.to(dtype)


def embed_texts(embedder, texts: list[str], batch_size: int, show_progress: bool = False) -> np.ndarray:
    """Normalized float32 embeddings (len(texts), dim): inner product = cosine similarity."""
    vectors = embedder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=show_progress
    )
    return np.asarray(vectors, dtype=np.float32)


def for_index(manifest: Manifest, config: Config, embedder_spec: str | None = None) -> Config:
    """``config`` naming the encoder that queries an index: ``embedder_spec``, else the one that built it.

    Raises ``IndexStoreError`` for an encoder of another vector space.
    """
    config = config.override({"embedder": embedder_spec or manifest.embedder})
    manifest.check_embedder(config.embedder, embedder_source(config.embedder).fingerprint())
    return config
