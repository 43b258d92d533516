"""Read one file into clean text: one ``Page`` per PDF page, one for any other format.

Each format is a small function picked by :func:`load_file` from the file's
extension. Text is repaired with ftfy, which undoes mojibake such as
``diff√©rence`` (UTF-8 read as Mac Roman) or ``rÃ©glage`` (read as cp1252).
A file that cannot be read raises :class:`LoadError` with a reason a user can act on.

    >>> [page.text for page in load_file(Path("notes.txt"))]  # doctest: +SKIP
    ['...']
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ftfy


class LoadError(Exception):
    """A file that cannot be indexed, with the reason why."""


@dataclass(frozen=True)
class Page:
    text: str
    page: int | None = None  # 1-based PDF page number; None for formats without pages


# Byte-order marks, longest first: UTF-32 LE starts with the UTF-16 LE mark.
BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]  # fmt: skip
BINARY_SHARE = 0.05  # control characters above this share of a text mean binary content, not text
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")  # tab, newlines and form feed are text


def _decode(data: bytes) -> str:
    """Text of a file in UTF-8 (or the encoding its byte-order mark names), else cp1252; mojibake repaired."""
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), None)
    try:
        text = data.decode(encoding or "utf-8", errors="replace" if encoding else "strict")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # legacy Windows text, the usual non-UTF-8 case
    controls = len(_CONTROL.findall(text))
    if controls > BINARY_SHARE * len(text):
        raise LoadError(f"binary content, not text ({controls} control characters in {len(text)}); if it is text, save it as UTF-8")
    return ftfy.fix_text(_CONTROL.sub("", text) if controls else text)


def load_text(path: Path, data: bytes, pdf_password: str = "") -> list[Page]:
    """.txt, .md, .rst: kept as written (headings carry meaning), mojibake repaired."""
    return [Page(_decode(data))]


_BLANK_RUNS = re.compile(r"\n\s*\n\s*(\n\s*)+")


def load_html(path: Path, data: bytes, pdf_password: str = "") -> list[Page]:
    """.html, .htm: visible text only; scripts, styles and templates are dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(data), "html.parser")
    title = soup.title.get_text().strip() if soup.title else ""
    for hidden in soup(["head", "script", "style", "noscript", "template"]):
        hidden.decompose()
    body = _BLANK_RUNS.sub("\n\n", soup.get_text("\n")).strip()
    return [Page(f"{title}\n\n{body}" if title else body)]


def load_pdf(path: Path, data: bytes, pdf_password: str = "") -> list[Page]:
    """.pdf: text per page with pypdf, page numbers kept; encrypted files need the password."""
    import io

    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            if not pdf_password:
                raise LoadError("encrypted PDF: pass its password with --pdf-password")
            if not reader.decrypt(pdf_password):
                raise LoadError("encrypted PDF: the --pdf-password given does not open it")
        pages = [Page(ftfy.fix_text(page.extract_text() or ""), number) for number, page in enumerate(reader.pages, 1)]
    except LoadError:
        raise
    except Exception as error:  # noqa: BLE001 - pypdf raises many kinds (NotImplementedError for an unknown filter...)
        raise LoadError(f"corrupt PDF ({type(error).__name__}: {error})") from error
    return [page for page in pages if page.text.strip()]


LOADERS: dict[str, Callable[[Path, bytes, str], list[Page]]] = {
    ".txt": load_text,
    ".md": load_text,
    ".rst": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load_file(path: Path, data: bytes | None = None, pdf_password: str = "") -> list[Page]:
    """Pages of text of ``path`` (``data`` is its bytes when already read)."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported extension {path.suffix or '(none)'}; supported: {', '.join(LOADERS)}")
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise LoadError("empty file")
    pages = loader(path, data, pdf_password)
    if not any(page.text.strip() for page in pages):
        raise LoadError("no extractable text (a scanned PDF needs OCR first)")
    return pages
