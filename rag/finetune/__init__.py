"""Fine-tuning: adapt the retriever's encoder or the generator to your own corpus, offline, on CPU.

One command per approach compared in the literature the lab follows:

- ``embeddings`` (:mod:`rag.finetune.embeddings`): the encoder, with in-batch
  negatives (Henderson et al. 2017; sentence-transformers' MultipleNegativesRankingLoss);
- ``lora`` (:mod:`rag.finetune.lora`): low-rank adapters on the generator (Hu et al. 2021);
- ``prompt-tuning`` (:mod:`rag.finetune.prompt_tuning`): a soft prompt before a frozen generator (Lester et al. 2021);
- ``full`` (:mod:`rag.finetune.full`): every weight of the generator.

Generator modes train on RAG prompts (RAFT, Zhang et al. 2024) or on the corpus
text itself (knowledge injection, Ovadia et al. 2024, "Fine-tuning or
retrieval?"). Data: :mod:`rag.finetune.data`; the loop, checkpoints and resume:
:mod:`rag.finetune.trainer`; the run record and atomic output: :mod:`rag.finetune.run`.

    >>> from rag.finetune import FinetuneConfig, finetune
    >>> record = finetune(FinetuneConfig("lora", "runs/lora", qa="corpora/vellmar-qa.jsonl",
    ...                                  index="indexes/vellmar", max_steps=20))  # doctest: +SKIP
    >>> record.artifact_bytes, record.metrics["after"]["val_loss"]                # doctest: +SKIP
"""

from rag.finetune.config import MODE_DEFAULTS, FinetuneConfig
from rag.finetune.data import Data, load_data
from rag.finetune.examples import Example
from rag.finetune.run import MODES, RunRecord, finetune

__all__ = ["MODES", "MODE_DEFAULTS", "Data", "Example", "FinetuneConfig", "RunRecord", "finetune", "load_data"]
