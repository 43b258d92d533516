"""Loading each format, repairing mojibake, and refusing bad files with a reason."""

from pathlib import Path

import pytest
from conftest import CORPUS, SHARED

from rag.ingest.loaders import LoadError, load_file

SEEDS = SHARED / "seeds-fr"
PDFS = SHARED / "pdfs"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("about.md", "Tidewatch Cooperative"),
        ("seed-library.txt", "Agathe Morrow"),
        ("lighthouses/keepers.rst", "tidewheel"),
        ("lantern-fair.html", "Lantern Fair"),
    ],
)
def test_text_formats_keep_their_words(name, expected):
    pages = load_file(CORPUS / name)
    assert len(pages) == 1 and pages[0].page is None
    assert expected.lower() in pages[0].text.lower()


def test_html_drops_scripts_and_styles_but_keeps_the_title():
    raw = (CORPUS / "lantern-fair.html").read_text(encoding="utf-8")
    assert "<script" in raw and "<style" in raw
    text = load_file(CORPUS / "lantern-fair.html")[0].text
    assert "<" not in text and "{" not in text and "function" not in text
    assert text.startswith("The Lantern Fair")


def test_pdf_gives_one_page_each_with_page_numbers():
    pages = load_file(CORPUS / "emergency-procedures.pdf")
    assert [p.page for p in pages] == [1, 2, 3]
    assert all(len(p.text.split()) > 100 for p in pages)


@pytest.mark.parametrize(
    ("name", "broken", "fixed"),
    [
        ("000_488fe2e0cbb96990.txt", "diff√©rence", "différence"),  # UTF-8 read as Mac Roman
        ("002_965f74e21756a2a6.txt", "rÃ©glage", "réglage"),  # UTF-8 read as cp1252
    ],
)
def test_mojibake_is_repaired(name, broken, fixed):
    assert broken in (SEEDS / name).read_text(encoding="utf-8")
    text = load_file(SEEDS / name)[0].text
    assert fixed in text and broken not in text


def test_every_seed_comes_out_as_clean_french():
    for path in sorted(SEEDS.iterdir()):
        text = load_file(path)[0].text
        assert not any(marker in text for marker in ("√", "Ã", "â€")), path.name
        assert any(word in text for word in ("modèle", "modèles", "réglage")), path.name


def test_encrypted_pdf_needs_its_password():
    path = PDFS / "libreoffice-writer-password.pdf"
    with pytest.raises(LoadError, match="--pdf-password"):
        load_file(path)
    with pytest.raises(LoadError, match="does not open"):
        load_file(path, pdf_password="wrong")
    assert load_file(path, pdf_password="openpassword")[0].text.strip()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"   \n\n", "empty file"),
        ("corrupt.pdf", b"%PDF-1.4\nthis is not really a pdf\n", "PDF"),
        ("data.json", b"{}", "unsupported extension .json"),
    ],
)
def test_bad_files_raise_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load_file(path)


def test_every_readable_shared_pdf_yields_text():
    for path in sorted(PDFS.glob("*.pdf")):
        if "password" in path.name:
            continue
        pages = load_file(Path(path))
        assert pages and all(p.page >= 1 for p in pages), path.name
