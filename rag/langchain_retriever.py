"""The retriever as a LangChain ``BaseRetriever``, so it plugs into LangChain chains.

    >>> from rag.langchain_retriever import RagRetriever
    >>> retriever = RagRetriever.from_index("indexes/vellmar", method="hybrid", k=4)  # doctest: +SKIP
    >>> docs = retriever.invoke("When is the Lantern Fair?")                          # doctest: +SKIP
    >>> docs[0].metadata["source"], docs[0].metadata["score"]                          # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.config import Config
from rag.index import Index
from rag.retrieve import Retriever


class RagRetriever(BaseRetriever):
    """Dense, BM25 or hybrid search over a rag index, returning LangChain ``Document`` objects.

    Each query searches the index's newest generation, so a re-ingest shows up without a restart.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Retriever
    method: str = "hybrid"
    k: int = 4

    @classmethod
    def from_index(cls, index_dir: str | Path, config: Config = Config(), **fields) -> RagRetriever:
        return cls(retriever=Retriever(Index.open(index_dir), config), **fields)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        self.retriever.refresh()
        hits = self.retriever.search([query], self.method, self.k)[0]
        return [
            Document(
                page_content=hit.chunk.text,
                metadata={"source": hit.chunk.source, "page": hit.chunk.page, "chunk_id": hit.chunk_id, "score": hit.score},
            )
            for hit in hits
        ]
