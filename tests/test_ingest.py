"""Ingest: every format into one real index, incremental updates, bad input, atomic writes."""

import json
import shutil

import pytest
from conftest import CORPUS, SHARED

from rag import Index, IndexStoreError, Retriever, ingest
from rag.ingest import NothingToIndex
from rag.ingest.__main__ import main as ingest_main
from rag.ingest.loaders import load_file


def test_index_holds_every_file_with_offsets_and_pages(vellmar_index, embedder, config):
    index = Index.open(vellmar_index)
    chunks = index.chunks()
    files = {c.source.removeprefix(str(CORPUS) + "/") for c in chunks}
    assert files == {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()}
    assert index.manifest.num_chunks == len(chunks) == len(index.embeddings())
    assert index.manifest.dimension == 384 and index.manifest.index_type == "flat"
    for chunk in chunks:
        page_text = load_file(CORPUS / chunk.source)[(chunk.page or 1) - 1].text
        assert page_text[chunk.start : chunk.end] == chunk.text
        # +2: the encoder's [CLS] and [SEP]
        assert len(embedder.tokenizer(chunk.text)["input_ids"]) <= config.chunk_tokens + 2
    assert {c.page for c in chunks if c.source.endswith(".pdf")} == {1, 2, 3}


def copy_corpus(tmp_path):
    folder = tmp_path / "docs"
    shutil.copytree(CORPUS, folder)
    return folder


def test_incremental_runs_embed_only_what_changed(tmp_path, config, embedder):
    docs = copy_corpus(tmp_path)
    index_dir = tmp_path / "index"
    first = ingest([docs], index_dir, config, embedder=embedder)
    assert first.changed and first.files_read == 19 and first.chunks_added == first.chunks_total

    again = ingest([docs], index_dir, config, embedder=embedder)
    assert not again.changed and again.files_read == 0 and again.files_unchanged == 19

    glossary = docs / "glossary.txt"
    glossary.write_text(glossary.read_text(encoding="utf-8") + "\nZorbling: a word added for this test.\n", encoding="utf-8")
    (docs / "membership.md").unlink()
    (docs / "new.md").write_text("# New\n\nThe harbour cat is called Biscuit.\n", encoding="utf-8")
    third = ingest([docs], index_dir, config, embedder=embedder)
    assert (third.files_read, third.files_unchanged, third.files_removed) == (2, 17, 1)

    index = Index.open(index_dir)
    sources = {c.source for c in index.chunks()}
    assert str((docs / "membership.md").resolve()) not in sources
    assert str((docs / "new.md").resolve()) in sources
    top = Retriever(index, config, embedder=embedder).search(["What is the harbour cat called?"], "dense", k=1)[0][0]
    assert "Biscuit" in top.chunk.text
    # Reused vectors are the very rows embedded before, not re-computed ones.
    assert index.manifest.num_chunks == third.chunks_total


def test_bad_inputs_are_named_and_the_run_goes_on(tmp_path, capsys):
    docs = tmp_path / "mixed"
    docs.mkdir()
    shutil.copy(CORPUS / "about.md", docs)
    shutil.copy(SHARED / "pdfs" / "libreoffice-writer-password.pdf", docs)
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "table.csv").write_text("a,b\n1,2\n")
    code = ingest_main([str(docs), str(tmp_path / "missing"), "--index", str(tmp_path / "index"), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    reasons = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in summary["skipped"]}
    assert "--pdf-password" in reasons["libreoffice-writer-password.pdf"]
    assert "PDF" in reasons["corrupt.pdf"]
    assert reasons["empty.txt"] == "empty file"
    assert "unsupported extension .csv" in reasons["table.csv"]
    assert reasons["missing"] == "no such file or directory"
    assert summary["files_read"] == 1 and summary["chunks_total"] > 0


def test_encrypted_pdf_is_indexed_with_its_password(tmp_path, config, embedder):
    pdf = SHARED / "pdfs" / "libreoffice-writer-password.pdf"
    summary = ingest([pdf], tmp_path / "index", config.override({"pdf_password": "openpassword"}), embedder=embedder)
    assert summary.files_read == 1 and not summary.skipped


def test_nothing_to_index_exits_2(tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert ingest_main([str(tmp_path / "empty.txt"), "--index", str(tmp_path / "index")]) == 2
    assert "nothing to index" in capsys.readouterr().err
    with pytest.raises(NothingToIndex, match="empty file"):
        ingest([tmp_path / "empty.txt"], tmp_path / "index")
    assert not (tmp_path / "index" / "CURRENT").exists()


def test_a_crash_mid_write_leaves_the_previous_index_whole(tmp_path, config, embedder, monkeypatch):
    docs = copy_corpus(tmp_path)
    index_dir = tmp_path / "index"
    ingest([docs], index_dir, config, embedder=embedder)
    before = Index.open(index_dir)
    chunks_before = before.chunks()

    (docs / "new.md").write_text("# Added\n\nThis file arrives just before the crash.\n", encoding="utf-8")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated kill while writing the BM25 index")

    monkeypatch.setattr("rag.index.bm25s.BM25.save", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        ingest([docs], index_dir, config, embedder=embedder)
    monkeypatch.undo()

    after = Index.open(index_dir)
    assert after.folder == before.folder and after.chunks() == chunks_before
    assert Retriever(after, config, embedder=embedder).search(["Lantern Fair"], "bm25", k=1)[0]
    # The next run finishes the job and clears the debris; the generation it replaces stays one write longer, for readers.
    summary = ingest([docs], index_dir, config, embedder=embedder)
    assert summary.files_read == 1
    assert sorted(p.name for p in index_dir.iterdir() if "gen-" in p.name) == [before.folder.name, Index.open(index_dir).folder.name]


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_index_types_find_what_flat_finds(tmp_path, vellmar_index, config, embedder, index_type):
    flat = Retriever(Index.open(vellmar_index), config, embedder=embedder)
    ingest([CORPUS], tmp_path / "index", config.override({"index_type": index_type}), embedder=embedder)
    approximate = Retriever(Index.open(tmp_path / "index"), config, embedder=embedder)
    assert Index.open(tmp_path / "index").manifest.index_type == index_type
    question = ["What is the name of the ferry?"]
    assert flat.search(question, "dense", k=1)[0][0].chunk_id == approximate.search(question, "dense", k=1)[0][0].chunk_id


def test_unknown_index_type_lists_the_choices(tmp_path, config, embedder):
    with pytest.raises(ValueError, match="flat, hnsw, ivf"):
        ingest([CORPUS / "about.md"], tmp_path / "index", config.override({"index_type": "annoy"}), embedder=embedder)


def test_queries_with_another_embedder_are_refused(tmp_path, vellmar_index, config):
    copy = tmp_path / "index"
    shutil.copytree(vellmar_index, copy)
    manifest_path = Index.open(copy).folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["embedder_fingerprint"] = "0" * 16  # as if built by a different encoder
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="re-embed the index"):
        Retriever(Index.open(copy), config)


def test_an_index_of_an_older_format_is_rebuilt_by_the_next_ingest(tmp_path, config, embedder):
    ingest([CORPUS / "about.md"], tmp_path / "index", config, embedder=embedder)
    manifest_path = Index.open(tmp_path / "index").folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 1  # as written before chunks recorded their language
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="re-ingest it"):
        Index.open(tmp_path / "index")
    summary = ingest([CORPUS / "about.md"], tmp_path / "index", config, embedder=embedder)
    assert summary.files_read == 1 and Index.open(tmp_path / "index").manifest.num_chunks == summary.chunks_total


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexStoreError, match="python -m rag.ingest"):
        Index.open(tmp_path / "nowhere")
