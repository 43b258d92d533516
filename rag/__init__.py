"""An offline lab for adapting language models to your own documents.

Stages, in the order data flows: ``rag.ingest`` (load, chunk, embed, index),
``rag.retrieve``, ``rag.prompt``, ``rag.generate``, then ``rag.finetune`` and
``rag.eval``. ``Pipeline`` ties retrieval, prompting and generation together.
"""

from rag.config import Config, load_config
from rag.generate import Generator
from rag.index import Index, IndexStoreError
from rag.ingest import IngestSummary, NothingToIndex, ingest
from rag.pipeline import Answer, Pipeline
from rag.retrieve import Retrieved, Retriever

__all__ = [
    "Answer",
    "Config",
    "Generator",
    "Index",
    "IndexStoreError",
    "IngestSummary",
    "NothingToIndex",
    "Pipeline",
    "Retrieved",
    "Retriever",
    "ingest",
    "load_config",
]
