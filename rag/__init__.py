"""An offline lab for adapting language models to your own documents.

Stages, in the order data flows: ``rag.ingest`` (load, chunk), ``rag.embed``,
``rag.index``, ``rag.retrieve``, ``rag.prompt``, ``rag.generate``, then
``rag.finetune`` and ``rag.eval``; ``rag.passage`` is the data they pass on.
``Pipeline`` ties retrieval, prompting and generation together.
"""

from rag.config import CLOSED_BOOK, Config, load_config
from rag.generate import Generator
from rag.index import Index, IndexStoreError
from rag.ingest import IngestSummary, NothingToIndex, ingest
from rag.passage import Chunk, Passage
from rag.pipeline import Answer, Pipeline
from rag.retrieve import Retrieved, Retriever

__all__ = [
    "CLOSED_BOOK",
    "Answer",
    "Chunk",
    "Config",
    "Generator",
    "Index",
    "IndexStoreError",
    "IngestSummary",
    "NothingToIndex",
    "Passage",
    "Pipeline",
    "Retrieved",
    "Retriever",
    "ingest",
    "load_config",
]
