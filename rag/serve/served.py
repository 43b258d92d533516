"""What a server answers with: one retriever x generator combination, named as the eval names it.

From the ``ask`` flags (``--index``, ``--adapter``, ``--retriever``...), or from
an eval report folder: ``--report reports/vellmar --combination bm25+lora``
rebuilds that combination exactly as :mod:`rag.eval` scored it, from the
folder's settings.json (the pipeline config, the index, the artifact folders)
and the variant functions of :mod:`rag.eval.variants`. Without
``--combination`` it is the verdict's pick: the cheapest combination within
noise of the best one.

    >>> generator_label(Config(few_shot=4))
    'fewshot'
    >>> served = from_report("reports/vellmar", "bm25+lora")   # doctest: +SKIP
    >>> served.name, served.pipeline.config.retriever          # doctest: +SKIP
    ('bm25+lora', 'bm25')
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.config import CLOSED_BOOK, Config
from rag.pipeline import Pipeline
from rag.retrieve import RETRIEVAL_METHODS

logger = logging.getLogger(__name__)


def generator_label(config: Config, adapter: str | None = None, soft_prompt: str | None = None) -> str:
    """The eval's name for the generator these settings load: base, fewshot, lora, soft-prompt or full."""
    if config.generator != Config.generator:
        return "full"
    if adapter:
        return "lora"
    if soft_prompt:
        return "soft-prompt"
    return "fewshot" if config.few_shot else "base"


@dataclass(frozen=True)
class Served:
    """A pipeline and the name clients call it by: ``retriever+generator``, the served retriever first."""

    generator: str  # the eval's generator name (generator_label)
    pipeline: Pipeline
    report: Path | None = None  # the eval report folder shown at /report
    combination: str | None = None  # the report's name for it (dense-ft searches with the dense method)

    @property
    def retriever(self) -> str:
        return self.pipeline.config.retriever

    @property
    def name(self) -> str:
        return self.combination or f"{self.retriever}+{self.generator}"

    @property
    def retrievers(self) -> list[str]:
        """What a request may switch to: every method over an index, only closed book without one."""
        if self.pipeline.index is None:
            return [CLOSED_BOOK]
        return [self.retriever, *(m for m in [*RETRIEVAL_METHODS, CLOSED_BOOK] if m != self.retriever)]

    @property
    def model_ids(self) -> list[str]:
        """The served combination first, then the same generator behind the other retrievers."""
        return [self.name, *(f"{retriever}+{self.generator}" for retriever in self.retrievers[1:])]

    def retriever_of(self, model: str | None) -> str:
        """The retriever a request's ``model`` names; ``LookupError`` for a model this server does not run."""
        if not model or model == self.name:
            return self.retriever
        if model in self.model_ids:
            return model.rpartition("+")[0]
        raise LookupError(f"model {model!r} is not served here; available: {', '.join(self.model_ids)}")


# ---------------------------------------------------------------------------- from an eval report


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} has no {path.name}: not a rag.eval report folder; make one with `python -m rag.eval ... --out {path.parent}`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {what}") from error


def picked_combination(report: dict) -> str:
    """The report verdict's practical pick: the cheapest combination within noise of the best, else the best."""
    verdict = report.get("verdict") or {}
    name = verdict.get("cheapest") or verdict.get("best")
    if not name:
        raise ValueError("the report's verdict names no combination (no question with a gold answer was scored); give --combination NAME")
    return name


def from_report(
    folder: str | Path, combination: str | None = None, fold: int | None = None, adjust: Callable[[Config], Config] | None = None
) -> Served:
    """The combination ``combination`` (default: :func:`picked_combination`) of the eval report in ``folder``.

    Its retriever, generator variant, pipeline config, index and artifact folders are
    the ones the eval used, so the served answers are the ones it scored (``adjust``
    may change the config, e.g. ``device``, from the command line's ``--set``). Relative
    artifact paths are read as the eval wrote them, from the current directory. A
    cross-validated report trained one set of artifacts per fold: ``fold`` picks one.
    """
    # Imported here: the eval package (its charts, bootstrap) is only needed to serve a report.
    from rag.eval.artifacts import Artifacts, Unavailable, artifact_flag, given_folders, load_artifact
    from rag.eval.config import ARTIFACT_FIELDS, EvalConfig
    from rag.eval.plan import model_label
    from rag.eval.variants import GENERATORS, RETRIEVERS

    folder = Path(folder)
    recorded = _read_json(folder / "settings.json", "re-run the eval").get("settings")  # beside the fingerprints
    if not isinstance(recorded, dict):
        raise ValueError(f"{folder / 'settings.json'} was written by an older rag.eval; re-run the eval")
    settings = EvalConfig.from_dict(recorded)
    if fold is not None:
        if settings.folds is None:
            raise ValueError(f"--fold: {folder} was not cross-validated (no --folds); leave --fold out")
        if not 0 <= fold < settings.folds:
            raise ValueError(f"--fold must be between 0 and {settings.folds - 1} for {folder}, got {fold}")
        settings = settings.for_fold(fold)
    report = _read_json(folder / "report.json", "re-run the eval to rebuild it")
    scored = [c["combination"] for c in report.get("combinations", [])]
    name = combination or picked_combination(report)
    if name not in scored:
        raise ValueError(f"{folder} scored no combination {name!r}; choose one of {', '.join(scored) or '(none)'}")
    retriever_name, _, variant = name.partition("+")
    generator_name, _, label = variant.partition("@")  # NAME@MODEL when the eval crossed several models
    models = settings.models or (settings.rag.generator,)
    model = next((m for m in models if model_label(m) == label), models[0])
    if retriever_name not in RETRIEVERS or generator_name not in GENERATORS:
        raise ValueError(f"{name!r} is not a retriever+generator pair of this version of rag.eval")

    # Only the artifacts this combination needs must still exist; the others may be gone.
    loaded, errors = {key: [] for key in ARTIFACT_FIELDS}, []
    for key in ARTIFACT_FIELDS:
        for path in given_folders(settings, key):
            try:
                loaded[key].append(load_artifact(artifact_flag(key), path))
            except (FileNotFoundError, ValueError) as error:
                errors.append(error)
    artifacts = Artifacts.matching(loaded, model, models, has_corpus=True)
    try:
        retriever = RETRIEVERS[retriever_name](artifacts)
        generator = GENERATORS[generator_name](settings.rag.override({"generator": model}), artifacts)
    except Unavailable as error:
        if settings.folds is not None and fold is None:
            raise ValueError(
                f"cannot serve {name} from {folder} as it is: {settings.folds}-fold cross-validation trained one artifact "
                f"per fold, none on every question. Serve one fold's with --fold I (0 to {settings.folds - 1}), or train "
                "the arm once on all the questions and evaluate it with --split"
            ) from None
        reason = next((str(e) for e in errors), str(error))
        raise ValueError(f"cannot serve {name} from {folder}: {reason}") from None

    config = generator.config.override({"retriever": retriever.method})
    config = adjust(config) if adjust else config
    if retriever.method == CLOSED_BOOK:
        index = None
    elif retriever.fine_tuned_index:
        index = folder / ("index-ft" if fold is None else f"index-ft-fold-{fold}")  # the eval's copy, fine-tuned embedder
    else:
        index = Path(settings.index) if settings.index else folder / "index"
    logger.info("serving %s from %s (index %s, adapter %s)", name, folder, index or "none", generator.adapter or "none")
    pipeline = Pipeline(index, config, adapter=generator.adapter)
    return Served(generator_name, pipeline, report=folder, combination=name)
