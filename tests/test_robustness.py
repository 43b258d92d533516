"""Robustness (#11): no input crashes a run, no reader breaks during a write, no command hangs.

Each test reproduces a failure found by using the lab as a new user would: damaged
files, a search while the index is rewritten, hidden folders, a training run with no
batch, blank questions and bad flags. The fuzz and concurrency tests are seeded and
bounded in time; :func:`deadline` turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CORPUS, QA_FILE, ROOT, SHARED

from rag import Index, Pipeline, Retriever, ingest
from rag.cli import main as rag_main
from rag.cli_common import run_cli
from rag.eval.__main__ import main as eval_main
from rag.finetune.__main__ import main as finetune_main
from rag.finetune.embeddings import no_duplicate_batches
from rag.finetune.examples import Example
from rag.finetune.trainer import Task, plan_steps
from rag.finetune import FinetuneConfig
from rag.finetune.data import load_data
from rag.ingest import discover
from rag.ingest.__main__ import main as ingest_main
from rag.langchain_retriever import RagRetriever
from langchain_text_splitters import RecursiveCharacterTextSplitter

split_text = RecursiveCharacterTextSplitter.split_text  # the real one, for the files a test does not break

SQUAD = SHARED / "squad" / "notre-dame-train-v1.1.json"
PDF = CORPUS / "emergency-procedures.pdf"


@contextmanager
def deadline(seconds: float):
    """Raise ``TimeoutError`` in the block if it runs past ``seconds``: a hang fails the test instead of blocking it."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def copy_corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(CORPUS, folder)
    return folder


def unknown_filter_pdf() -> bytes:
    """The corpus PDF with its stream filter renamed: pypdf raises NotImplementedError("Unsupported filter")."""
    data = PDF.read_bytes()
    assert b"/FlateDecode" in data
    return data.replace(b"/FlateDecode", b"/FlateDecodX")


def sources(index_dir: Path) -> dict[str, list[str]]:
    """File name -> chunk texts of the live generation."""
    found: dict[str, list[str]] = {}
    for chunk in Index.open(index_dir).chunks():
        found.setdefault(Path(chunk.source).name, []).append(chunk.text)
    return found


# ---------------------------------------------------------------------------- a file that fails


def test_any_failure_of_one_file_is_reported_and_the_run_goes_on(tmp_path, config, embedder, monkeypatch, capsys):
    import ftfy

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(CORPUS / "about.md", docs)
    (docs / "filter.pdf").write_bytes(unknown_filter_pdf())
    (docs / "repair.txt").write_text("ftfy trips over this one\n", encoding="utf-8")
    (docs / "chunk.md").write_text("# Chunk\n\nthe splitter trips over this one\n", encoding="utf-8")
    fix_text = ftfy.fix_text

    def failing_fix(text, *args, **kwargs):
        if "ftfy trips" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return fix_text(text, *args, **kwargs)

    def failing_split(self, text):
        if "splitter trips" in text:
            raise IndexError("list index out of range")
        return split_text(self, text)

    monkeypatch.setattr(ftfy, "fix_text", failing_fix)
    monkeypatch.setattr(RecursiveCharacterTextSplitter, "split_text", failing_split)
    monkeypatch.setattr(sys.modules["rag.ingest"], "load_embedder", lambda config: embedder)  # rag.ingest is also a function
    assert ingest_main([str(docs), "--index", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "1 files read" in out and "3 skipped" in out
    assert "filter.pdf: corrupt PDF (NotImplementedError" in out
    assert "repair.txt: RecursionError: maximum recursion depth exceeded" in out
    assert "chunk.md: IndexError: list index out of range" in out
    assert set(sources(tmp_path / "index")) == {"about.md"}


def test_a_file_that_breaks_keeps_the_version_indexed_before(tmp_path, config, embedder):
    docs = copy_corpus(tmp_path)
    index_dir = tmp_path / "index"
    ingest([docs], index_dir, config, embedder=embedder)
    before = sources(index_dir)

    (docs / PDF.name).write_bytes(unknown_filter_pdf())
    summary = ingest([docs], index_dir, config, embedder=embedder)
    (skipped,) = summary.skipped
    assert skipped.path.endswith(PDF.name) and "Unsupported filter" in skipped.reason
    assert "kept the version indexed before" in skipped.reason
    assert sources(index_dir) == before  # nothing stored is lost

    (docs / PDF.name).write_bytes(PDF.read_bytes())  # repaired: it matches what is indexed
    again = ingest([docs], index_dir, config, embedder=embedder)
    assert not again.skipped and not again.changed


# ---------------------------------------------------------------------------- readers during writes


def test_a_reader_opened_before_writes_keeps_searching(tmp_path, config, embedder):
    docs = copy_corpus(tmp_path)
    index_dir = tmp_path / "index"
    ingest([docs], index_dir, config, embedder=embedder)
    retriever = Retriever(Index.open(index_dir), config, embedder=embedder)
    for round in range(3):  # three writes: the generation the reader opened is long retired
        (docs / f"new-{round}.md").write_text(f"# Note {round}\n\nThe harbour cat naps on pier {round}.\n", encoding="utf-8")
        assert ingest([docs], index_dir, config, embedder=embedder).changed
        for method in ("dense", "bm25", "hybrid"):
            hits = retriever.search(["When is the Lantern Fair?"], method, k=3)[0]
            assert len(hits) == 3 and all(hit.chunk.text for hit in hits)


def test_long_lived_readers_pick_up_each_new_generation(tmp_path, config, embedder):
    docs = copy_corpus(tmp_path)
    index_dir = tmp_path / "index"
    ingest([docs], index_dir, config, embedder=embedder)
    bm25 = config.override({"retriever": "bm25", "k": 1})
    pipeline = Pipeline(index_dir, bm25)
    langchain = RagRetriever.from_index(index_dir, bm25, method="bm25", k=1)
    question = "What is the harbour cat called?"
    for name in ("Biscuit", "Pepper"):
        (docs / "cat.md").write_text(f"# Harbour cat\n\nThe harbour cat is called {name}.\n", encoding="utf-8")
        ingest([docs], index_dir, config, embedder=embedder)
        assert name in pipeline.retrieve([question])[0][0].chunk.text
        assert name in langchain.invoke(question)[0].page_content


# ---------------------------------------------------------------------------- discovery


def test_discovery_skips_hidden_entries_and_symlink_loops_and_reports_the_unreadable(tmp_path, config, embedder, monkeypatch):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "visible.md").write_text("# Visible\n\nThe harbour cat is called Biscuit.\n", encoding="utf-8")
    (docs / "sub" / "deep.txt").write_text("The ferry leaves at noon.\n", encoding="utf-8")
    for hidden in (".venv/lib/site.md", ".git/notes.txt", ".hidden.md", "sub/.cache/page.html"):
        (docs / hidden).parent.mkdir(parents=True, exist_ok=True)
        (docs / hidden).write_text("hidden\n", encoding="utf-8")
    (docs / "sub" / "loop").symlink_to(docs, target_is_directory=True)  # docs/sub/loop/sub/loop/...
    (docs / "again.md").symlink_to(docs / "visible.md")  # the same file twice: indexed once
    (docs / "dangling.md").symlink_to(docs / "nowhere.md")
    os.mkfifo(docs / "pipe.txt")  # reading it would block forever
    (docs / "locked.txt").write_text("secret\n", encoding="utf-8")
    with deadline(20):
        found, skipped = discover([docs])
    assert sorted(str(path.relative_to(docs.resolve())) for path in found) == ["locked.txt", "sub/deep.txt", "visible.md"]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert reasons.keys() == {"loop", "dangling.md", "pipe.txt"}
    assert "symlink loop" in reasons["loop"]
    assert "broken symbolic link" in reasons["dangling.md"]
    assert "not a regular file" in reasons["pipe.txt"]

    read_bytes = Path.read_bytes  # the tests run as root, who may read any file: refuse this one by hand

    def refuse(path):
        if path.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with deadline(120):
        summary = ingest([docs], tmp_path / "index", config, embedder=embedder)
    assert {Path(s.path).name: s.reason for s in summary.skipped}["locked.txt"] == "Permission denied"
    assert set(sources(tmp_path / "index")) == {"visible.md", "deep.txt"}


# ---------------------------------------------------------------------------- training with no batch


def test_a_training_run_with_no_batch_is_refused_instead_of_looping(tmp_path):
    one = [Example("Who founded it?", "Agathe Morrow founded it.", ("Agathe Morrow",))]
    task = Task(model=None, train=one, val=one, loss=None, save=None, batches=no_duplicate_batches)
    for flags in ({"max_steps": 2}, {}):
        settings = FinetuneConfig("embeddings", str(tmp_path / "out"), batch_size=2, **flags).resolved()
        with deadline(10), pytest.raises(ValueError, match="no training batch"):
            plan_steps(task, settings)


def command(capsys, main, *argv) -> tuple[int, str]:
    """Run an entry point as its console script does (through run_cli): (exit code, its one error line).

    Progress lines may come first on stderr; the error must be the last line, and the only one.
    """
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda: main([str(arg) for arg in argv]))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return exited.value.code, errors[0]


@pytest.mark.parametrize("flags", [["--batch-size", "1", "--max-steps", "2"], ["--limit", "1"]])
def test_an_embeddings_run_without_a_batch_exits_2_and_publishes_nothing(tmp_path, capsys, flags):
    out = tmp_path / "run"
    with deadline(300):
        code, err = command(capsys, finetune_main, "embeddings", "--qa", SQUAD, "--out", out, *flags)
    assert code == 2 and "batch" in err and not out.exists()


# ---------------------------------------------------------------------------- quick smoke runs


def test_embeddings_evaluation_ranks_a_corpus_bounded_by_limit(config, monkeypatch):
    from rag.finetune import embeddings

    settings = FinetuneConfig("embeddings", "unused", qa=str(SQUAD), limit=2).resolved()
    data = load_data(settings, config)
    assert len(data.corpus) > 40  # the 55 Notre-Dame paragraphs
    task = embeddings.build(settings, config, data)
    embedded, embed_texts = [], embeddings.embed_texts

    def counting(model, texts, *args, **kwargs):
        embedded.append(len(texts))
        return embed_texts(model, texts, *args, **kwargs)

    monkeypatch.setattr(embeddings, "embed_texts", counting)
    assert 0 <= task.evaluate()["recall@10"] <= 1
    # 2 validation questions, their 2 passages and at most 16 others: the cost follows --limit, not the corpus
    assert sum(embedded) <= 2 + 2 + embeddings.MIN_OTHERS


def test_a_cpu_batch_runs_one_sequence_at_a_time_with_the_padded_batch_loss_and_gradients(config):
    import torch

    from rag.finetune.causal import IGNORE, Sequence, causal_task, collate
    from rag.finetune.trainer import batch_loss
    from rag.models import load_generator

    model, tokenizer = load_generator(config, for_training=True)
    model.eval()  # no dropout: both ways must compute the same function
    batch = [
        Sequence(list(range(100, 100 + length)), [IGNORE] * (length - answer) + list(range(100 + length - answer, 100 + length)))
        for length, answer in ((40, 5), (25, 9), (33, 1))
    ]
    task = causal_task(model, tokenizer, ([], []), save=None)
    assert [len(part) for part, _ in task.parts(batch)] == [1, 1, 1]
    weight = model.get_output_embeddings().weight
    padded = model(**collate(batch, tokenizer.pad_token_id, "cpu")).loss
    padded.backward()
    padded_grad, weight.grad = weight.grad.clone(), None
    loss, tokens = batch_loss(task, batch, backward=True)
    assert loss == pytest.approx(padded.item(), abs=1e-4) and tokens == 98
    assert torch.allclose(weight.grad, padded_grad, rtol=1e-4, atol=1e-5)  # fp32 sums in another order: ~3e-6 apart
    # the padded batch at once (a GPU's path) computes the same loss as transformers
    assert task.loss(batch)[0].item() == pytest.approx(padded.item(), abs=1e-4)


def test_the_training_loss_runs_the_output_layer_on_the_answer_positions_alone(config):
    """A supervised prompt labels its answer only: the vocabulary projection skips the prompt, with or without a
    soft prompt in front, and the loss is transformers' own."""
    from peft import PromptTuningConfig, get_peft_model

    from rag.finetune.causal import IGNORE, Sequence, causal_task, collate
    from rag.models import load_generator

    model, tokenizer = load_generator(config, for_training=True)
    model.eval()
    soft_prompted = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    sequence = Sequence(list(range(100, 140)), [IGNORE] * 35 + list(range(135, 140)))  # a 5-token answer
    widths = []
    model.get_output_embeddings().register_forward_hook(lambda layer, inputs, output: widths.append(inputs[0].shape[1]))
    for trained in (model, soft_prompted):
        widths.clear()
        loss, tokens = causal_task(trained, tokenizer, ([], []), save=None).loss([sequence])
        assert widths == [6] and tokens == 40  # the position before the answer predicts its first token
        reference = trained(**collate([sequence], tokenizer.pad_token_id, "cpu")).loss
        assert widths[-1] == 40 + 4 * (trained is soft_prompted)
        assert loss.item() == pytest.approx(reference.item(), abs=1e-5)


# ---------------------------------------------------------------------------- blank questions and bad flags


def test_a_blank_question_is_refused(vellmar_index, config, embedder):
    retriever = Retriever(Index.open(vellmar_index), config, embedder=embedder)
    for method in ("dense", "bm25", "hybrid"):
        with pytest.raises(ValueError, match="blank"):
            retriever.search([" \n\t"], method, k=4)


def test_an_over_long_question_is_refused_before_retrieval(vellmar_index, config, generator, monkeypatch):
    pipeline = Pipeline(vellmar_index, config, generator=generator)
    monkeypatch.setattr(pipeline, "retrieve", lambda questions: pytest.fail("retrieved an over-long question"))
    with pytest.raises(ValueError, match="shorten the question"):
        pipeline.ask("Who founded the seed library? " * 400)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Files of every kind of bad input."""
    folder = tmp_path_factory.mktemp("bad")
    for name, peft_type in (("lora", "LORA"), ("soft-prompt", "PROMPT_TUNING")):
        (folder / name).mkdir()
        (folder / name / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type}), encoding="utf-8")
    (folder / "generator").mkdir()  # a causal LM folder: config.json but no sentence-transformers modules.json
    (folder / "generator" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}), encoding="utf-8")
    (folder / "broken.toml").write_text("k = [unclosed\n", encoding="utf-8")
    (folder / "list.yaml").write_text("- bm25\n- dense\n", encoding="utf-8")
    (folder / "unknown.toml").write_text('retrievrs = ["bm25"]\n', encoding="utf-8")
    (folder / "empty.jsonl").write_text("\n", encoding="utf-8")
    (folder / "empty.json").write_text(json.dumps({"version": "1.1", "data": []}), encoding="utf-8")
    (folder / "a-file").write_text("not a folder\n", encoding="utf-8")
    return folder


def bad_input_cases():
    """(command, arguments, words the one-line message holds); INDEX, BAD and OUT are filled in by the test."""
    ask = ["ask", "Who founded the seed library?", "--index", "INDEX"]
    eval_ = ["--qa", QA_FILE, "--index", "INDEX", "--out", "OUT", "--generators", "base", "--retrievers", "bm25"]
    return [
        ("rag", ["ask", "  ", "--index", "INDEX"], "blank"),
        ("rag", [*ask, "--k", "0"], "k must be at least 1"),
        ("rag", [*ask, "--set", "context_tokens=-5"], "context_tokens must be at least 1"),
        ("rag", [*ask, "--set", "retriever=semantic"], "dense, bm25, hybrid, corpus, none"),
        ("rag", [*ask, "--adapter", "BAD/missing"], "no such folder"),
        ("rag", [*ask, "--adapter", "BAD/soft-prompt"], "expected LORA"),
        ("rag", [*ask, "--soft-prompt", "BAD/lora"], "expected PROMPT_TUNING"),
        ("rag", [*ask, "--generator", "BAD/lora"], "no config.json"),
        ("rag", [*ask, "--embedder", "BAD/generator"], "not a sentence-transformers"),
        ("rag", [*ask, "--config", "BAD/broken.toml"], "cannot read config file"),
        ("rag", ["ask", "Who?", "--index", "BAD/a-file"], "is a file"),
        ("rag", ["ask", "Who?", "--index", "BAD/nowhere"], "no index at"),
        ("rag", ["serve", "--index", "BAD/nowhere"], "no index at"),
        ("rag", ["serve", "--index", "INDEX", "--k", "0"], "k must be at least 1"),
        ("rag", ["serve", "--report", "BAD"], "not a rag.eval report folder"),
        ("ingest", [CORPUS, "--index", "OUT", "--chunk-tokens", "0"], "chunk_tokens must be at least 1"),
        ("ingest", [CORPUS, "--index", "OUT", "--embedder", "BAD/generator"], "not a sentence-transformers"),
        ("ingest", [CORPUS, "--index", "BAD/a-file"], "is a file"),
        ("ingest", [CORPUS, "--index", "OUT", "--config", "BAD/unknown.toml"], "unknown config key"),
        ("finetune", ["embeddings", "--qa", SQUAD, "--out", "OUT", "--batch-size", "1"], "--batch-size 2"),
        ("finetune", ["lora", "--qa", "BAD/empty.jsonl", "--out", "OUT"], "holds no records"),
        ("finetune", ["lora", "--qa", "BAD/empty.json", "--out", "OUT"], "holds no questions"),
        ("finetune", ["lora", "--qa", "BAD/missing.json", "--out", "OUT"], "does not exist"),
        ("finetune", ["full", "--qa", SQUAD, "--out", "BAD/a-file"], "is a file"),
        ("finetune", ["prompt-tuning", "--qa", SQUAD, "--out", "OUT", "--max-steps", "0"], "max_steps must be at least 1"),
        ("finetune", ["tuning", "--qa", SQUAD, "--out", "OUT"], "choose one of embeddings"),
        ("eval", [*eval_, "--k", "0"], "k must be at least 1"),
        ("eval", [*eval_, "--limit", "0"], "limit must be at least 1"),
        ("eval", [*eval_, "--matrix", "BAD/broken.toml"], "cannot read matrix file"),
        ("eval", [*eval_, "--matrix", "BAD/list.yaml"], "must hold a table"),
        ("eval", [*eval_, "--matrix", "BAD/unknown.toml"], "unknown eval setting"),
        ("eval", ["--qa", "BAD/empty.jsonl", "--index", "INDEX", "--out", "OUT"], "holds no records"),
        ("eval", ["--qa", "BAD/empty.json", "--index", "INDEX", "--out", "OUT"], "holds no questions"),
        ("eval", [*eval_, "--adapter", "BAD/missing"], "no such folder"),
        ("eval", [*eval_, "--soft-prompt", "BAD/lora"], "expected PROMPT_TUNING"),
    ]


MAINS = {"rag": rag_main, "ingest": ingest_main, "finetune": finetune_main, "eval": eval_main}


@pytest.mark.parametrize(("name", "argv", "message"), bad_input_cases())
def test_bad_input_gets_one_line_and_exit_2(name, argv, message, bad, vellmar_index, tmp_path, capsys):
    fill = {"INDEX": str(vellmar_index), "OUT": str(tmp_path / "out")}
    argv = [fill.get(str(arg), str(arg).replace("BAD", str(bad))) for arg in argv]
    with deadline(120):  # every one of these is refused before any model does real work
        code, err = command(capsys, MAINS[name], *argv)
    assert code == 2 and message in err, err


# ---------------------------------------------------------------------------- fuzz

FUZZ_FILES = 420
FUZZ_BATCHES = 4
TEXT_SEED_BYTES = 800  # small text files (a chunk or two) keep the embedding of the readable mutants quick
HUGE_LINE = 10_000  # characters on one line (an inlined image, a minified page): five times the long-run threshold


def fuzz_seeds() -> list[tuple[str, bytes]]:
    """(extension, bytes) of small real files of every format: the corpus (text files cut short) and shared PDFs."""
    seeds = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        data = path.read_bytes()
        seeds.append((path.suffix, data if path.suffix == ".pdf" else data[:TEXT_SEED_BYTES]))
    seeds.append((".htm", (CORPUS / "lantern-fair.html").read_bytes()[:TEXT_SEED_BYTES]))
    for name in ("minimal-document.pdf", "002-trivial-libre-office-writer.pdf", "crazyones-pdfa.pdf", "libreoffice-writer-password.pdf"):
        seeds.append((".pdf", (SHARED / "pdfs" / name).read_bytes()))
    return seeds


def flip_bits(data: bytes, rng: random.Random) -> bytes:
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
    return bytes(flipped)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def zero_run(data: bytes, rng: random.Random) -> bytes:
    start, length = rng.randrange(len(data)), rng.randint(1, 512)
    return data[:start] + bytes(length) + data[start + length :]


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(0, 4096))


def huge_line(data: bytes, rng: random.Random) -> bytes:
    # Runs the encoder reads as one unknown word each, so that embedding them stays cheap; tags nest deeply in HTML.
    pattern = b"<b>" if data.lstrip().startswith(b"<") else rng.choice([b"a", "\u00e9".encode(), b"x9"])
    cut = rng.randrange(len(data))
    return data[:cut] + pattern * (HUGE_LINE // len(pattern)) + data[cut:]


def wrong_encoding(data: bytes, rng: random.Random) -> bytes:
    encoding = rng.choice(["utf-16", "utf-16-be", "utf-32", "cp1252", "shift_jis", "cp037", "koi8-r", "gb18030"])
    return data.decode("utf-8", errors="replace").encode(encoding, errors="replace")


STRUCTURE = [b"/FlateDecode", b"/Length", b"endstream", b"endobj", b"xref", b"/Root", b"/Pages", b"<p>", b"</", b"<head>", b"\n\n", b"# "]


def damage_structure(data: bytes, rng: random.Random) -> bytes:
    """A format keyword removed, misspelt or repeated: a PDF filter or object, an HTML tag, a Markdown heading."""
    present = [keyword for keyword in STRUCTURE if keyword in data] or [data[:1]]
    keyword = rng.choice(present)
    replacement = rng.choice([b"", keyword[:-1] + b"X", keyword * 64, b"<script>"])
    return data.replace(keyword, replacement, rng.choice([1, -1]))


MUTATIONS = [flip_bits, truncate, zero_run, random_bytes, huge_line, wrong_encoding, damage_structure]


def test_fuzzed_files_never_break_a_run_nor_the_index(tmp_path, config, embedder):
    rng = random.Random(11)
    seeds = fuzz_seeds()
    index_dir = tmp_path / "index"
    ingest([copy_corpus(tmp_path)], index_dir, config, embedder=embedder)
    previous = sources(index_dir)
    per_batch = FUZZ_FILES // FUZZ_BATCHES
    began = time.perf_counter()
    for batch in range(FUZZ_BATCHES):
        folder = tmp_path / f"fuzz-{batch}"
        folder.mkdir()
        for number in range(batch * per_batch, (batch + 1) * per_batch):
            extension, data = seeds[number % len(seeds)]
            mutate = MUTATIONS[number // len(seeds) % len(MUTATIONS)]  # every seed meets every mutation
            (folder / f"{number:03d}-{mutate.__name__}{extension}").write_bytes(mutate(data, rng))
        with deadline(600):
            summary = ingest([folder], index_dir, config, embedder=embedder)  # an uncaught exception fails here
        assert summary.files_read + len(summary.skipped) == per_batch
        assert all(skipped.reason for skipped in summary.skipped)
        current = sources(index_dir)
        assert {name: current.get(name) for name in previous} == previous  # what was stored before is intact
        previous = current
    seconds = time.perf_counter() - began
    print(f"fuzz: {FUZZ_FILES} mutated files in {FUZZ_BATCHES} ingests, {seconds:.1f} s")


# ---------------------------------------------------------------------------- concurrency

WRITES = 12
# Searches one index in a loop, as `rag chat` does between questions, and checks each generation it sees.
READER = r"""
import json, sys
from pathlib import Path
from rag import Config, Index, Retriever

index_dir, stop = Path(sys.argv[1]), Path(sys.argv[2])
retriever = Retriever(Index.open(index_dir), Config())  # BM25 and stored vectors only: no model loads
searches, failures, markers = 0, [], set()
while not stop.exists():
    try:
        retriever.refresh()
        index = retriever.index
        hits = retriever.search(["zebra marker"], "bm25", k=3)[0]
        marker = [hit.chunk.text for hit in hits if "zebra" in hit.chunk.text]
        assert marker, "a generation without the marker file"
        markers.add(marker[0])
        vectors = index.embeddings()
        scores, ids = index.search_vectors(vectors[:2], k=len(index))
        assert sorted(ids[0].tolist()) == list(range(len(index))), "FAISS rows differ from the manifest"
        assert len(index.chunks(ids[0].tolist())) == len(index) == len(vectors), "docstore rows differ"
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")
    searches += 1
    if searches == 1:
        print("ready", flush=True)
print(json.dumps({"searches": searches, "failed": len(failures), "failures": failures[:5], "markers": sorted(markers)}))
"""


def test_searches_never_fail_while_the_index_is_rewritten(tmp_path, config, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("about.md", "glossary.txt", "lantern-fair.html"):
        shutil.copy(CORPUS / name, docs)
    index_dir, stop = tmp_path / "index", tmp_path / "stop"

    def write(number: int):
        (docs / "marker.md").write_text(f"# Marker\n\nThe zebra marker number {number}.\n", encoding="utf-8")
        return ingest([docs], index_dir, config, embedder=embedder)

    write(0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(index_dir), str(stop)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        with deadline(300):
            assert reader.stdout.readline() == "ready\n"  # awaited: the reader has searched once
            began = time.perf_counter()
            for number in range(1, WRITES + 1):
                assert write(number).changed
            seconds = time.perf_counter() - began
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=120)
    result = json.loads(out.splitlines()[-1])
    assert result["failed"] == 0, (result["failures"], err[-3000:])
    assert result["searches"] > WRITES and len(result["markers"]) > 1
    print(f"concurrency: {WRITES} writes in {seconds:.1f} s, {result['searches']} searches, 0 failed")
