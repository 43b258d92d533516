"""Sanity checks for the bundled Vellmar sample corpus and its QA files.

Usage:  python corpora/check_corpus.py        (needs pypdf for the PDF)

Checks:
  * every line of vellmar-qa.jsonl, probes/general-knowledge.jsonl and
    fewshot.jsonl parses and has the expected keys;
  * every answered QA item names a source file that exists under
    corpora/vellmar/, and at least one of its answers occurs verbatim
    (case-insensitive, whitespace-normalised) in that file's visible text
    (HTML: tags stripped, <script>/<style> dropped; PDF: text of the stated
    page, extracted with pypdf);
  * every QA item has a "kind" (see KINDS), "unanswerable" exactly when
    "answers" is empty, and each kind has at least MIN_PER_KIND items;
    "yesno" items answer ["yes"] or ["no"] (not checked verbatim, but their
    source must exist); "multi" items name in "also" the other file(s) the
    answer needs, which must exist (the answer itself is checked in "source");
  * unanswerable items have "answers": [] and no "source";
  * fewshot answers are spans of their contexts;
  * the corpus has the required formats and a sensible total word count.
It also warns when an answer string occurs in a file other than its source
(a hint that a fact is stated twice) and prints the word count per file.
Exit status is 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "vellmar"
QA = HERE / "vellmar-qa.jsonl"
PROBES = HERE.parent / "rag" / "eval" / "probes" / "general-knowledge.jsonl"
FEWSHOT = HERE / "fewshot.jsonl"

MIN_WORDS, MAX_WORDS = 10000, 13000
MIN_QA, MIN_UNANSWERABLE = 240, 25  # answered items; unanswerable items

# Question kinds, so that a report can break scores down by kind.
KINDS = ("name", "number", "date", "place", "yesno", "multi", "other", "unanswerable")
MIN_PER_KIND = {"name": 20, "number": 20, "date": 20, "place": 20, "yesno": 15, "multi": 15}

# Small numbers written as words collide by chance, like digits.
NUMBER_WORDS = set("one two three four five six seven eight nine ten eleven twelve".split())


class _VisibleText(HTMLParser):
    SKIP = {"script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def html_text(raw: str) -> str:
    p = _VisibleText()
    p.feed(raw)
    p.close()
    return " ".join(p.parts)


def pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(str(path)).pages]


def visible_text(path: Path) -> list[str]:
    """Return the visible text of a file as a list of pages (one for non-PDF)."""
    if path.suffix.lower() == ".pdf":
        return pdf_pages(path)
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".html", ".htm"}:
        return [html_text(raw)]
    return [raw]


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def read_jsonl(path: Path, errors: list[str]) -> list[dict]:
    rows = []
    if not path.exists():
        errors.append(f"missing file {path}")
        return rows
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            errors.append(f"{path.name}:{n}: blank line")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path.name}:{n}: bad JSON ({e})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{path.name}:{n}: not an object")
            continue
        rows.append(obj)
    return rows


def has_new_question(item: dict, where: str, seen: set[str], errors: list[str]) -> bool:
    """Whether the item has a question to check further; a missing or repeated one is an error."""
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        errors.append(f"{where}: missing question")
        return False
    if norm(question) in seen:
        errors.append(f"{where}: duplicate question")
    seen.add(norm(question))
    return True


def check_fewshot(path: Path, errors: list[str], cited: bool) -> list[dict]:
    """Few-shot examples: 4, each answer a span of its context, followed by " [1]" when ``cited``."""
    rows = read_jsonl(path, errors)
    if len(rows) != 4:
        errors.append(f"{path.name}: {len(rows)} lines, expected 4")
    for n, item in enumerate(rows, 1):
        c, q, a = item.get("context"), item.get("question"), item.get("answer")
        if not all(isinstance(x, str) and x for x in (c, q, a)):
            errors.append(f"{path.name}:{n}: needs context, question, answer")
            continue
        span = a.removesuffix(" [1]") if cited else a
        if cited and (span == a or not span.strip()):
            errors.append(f"{path.name}:{n}: answer {a!r} must be a short span followed by ' [1]'")
        elif span not in c:
            errors.append(f"{path.name}:{n}: answer {span!r} is not a span of its context")
    return rows


def main() -> int:
    errors: list[str] = []
    warnings: list[str] = []

    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    texts: dict[str, list[str]] = {}
    for p in files:
        rel = p.relative_to(CORPUS).as_posix()
        try:
            texts[rel] = visible_text(p)
        except Exception as e:  # noqa: BLE001
            errors.append(f"cannot read {rel}: {e}")

    # --- formats -----------------------------------------------------------
    suffixes = Counter(Path(r).suffix.lower() for r in texts)
    for suf, need in ((".md", 2), (".txt", 1), (".rst", 1), (".html", 1)):
        if suffixes[suf] < need:
            errors.append(f"need at least {need} {suf} file(s), found {suffixes[suf]}")
    if suffixes[".pdf"] != 1:
        errors.append(f"need exactly one .pdf, found {suffixes['.pdf']}")
    for rel, pages in texts.items():
        if rel.endswith(".pdf"):
            if not 2 <= len(pages) <= 3:
                errors.append(f"{rel}: {len(pages)} pages, expected 2-3")
            for i, t in enumerate(pages, 1):
                if len(t.split()) < 50:
                    errors.append(f"{rel}: page {i} has almost no text")
        if rel.endswith(".html"):
            body = norm(pages[0])
            if "script text" in body or "style text" in body:
                errors.append(f"{rel}: script/style leaked into visible text")

    # --- QA set --------------------------------------------------------------
    qa = read_jsonl(QA, errors)
    answered = unanswerable = 0
    per_source: Counter[str] = Counter()
    seen_q: set[str] = set()
    kinds: Counter[str] = Counter()
    for n, item in enumerate(qa, 1):
        where = f"{QA.name}:{n}"
        answers = item.get("answers")
        if not has_new_question(item, where, seen_q, errors):
            continue
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            errors.append(f"{where}: answers must be a list of strings")
            continue
        kind = item.get("kind")
        if kind not in KINDS:
            errors.append(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        else:
            kinds[kind] += 1
            if (kind == "unanswerable") != (not answers):
                errors.append(f"{where}: kind 'unanswerable' must go with empty answers and only with them")
        also = item.get("also")
        if (kind == "multi") != (also is not None):
            errors.append(f"{where}: 'also' (the other files a multi question needs) is required for kind 'multi' only")
        if also is not None:
            if not isinstance(also, list) or not also or not all(isinstance(r, str) for r in also):
                errors.append(f"{where}: 'also' must be a non-empty list of file names")
            else:
                for rel in also:
                    if rel not in texts:
                        errors.append(f"{where}: 'also' file {rel!r} not found under {CORPUS}")
                    elif rel == item.get("source"):
                        errors.append(f"{where}: 'also' repeats the source {rel!r}")
        if not answers:
            unanswerable += 1
            if "source" in item:
                errors.append(f"{where}: unanswerable item must have no source")
            continue
        answered += 1
        for a in answers:
            if len(a.split()) > 5:
                errors.append(f"{where}: answer too long: {a!r}")
        src = item.get("source")
        if not isinstance(src, str) or src not in texts:
            errors.append(f"{where}: source {src!r} not found under {CORPUS}")
            continue
        per_source[src] += 1
        if kind == "yesno":
            # "yes"/"no" cannot be checked verbatim; the source holds the evidence.
            if answers not in (["yes"], ["no"]):
                errors.append(f"{where}: a yesno item answers [\"yes\"] or [\"no\"], got {answers}")
            if "page" in item and not src.endswith(".pdf"):
                errors.append(f"{where}: 'page' given for non-PDF source")
            continue
        pages = texts[src]
        if src.endswith(".pdf"):
            page = item.get("page")
            if not isinstance(page, int) or not 1 <= page <= len(pages):
                errors.append(f"{where}: PDF item needs a valid 'page' (got {page!r})")
                continue
            hay = norm(pages[page - 1])
        else:
            if "page" in item:
                errors.append(f"{where}: 'page' given for non-PDF source")
            hay = norm(" ".join(pages))
        hits = [a for a in answers if norm(a) in hay]
        if not hits:
            errors.append(f"{where}: no answer of {answers} found in {src}")
            continue
        # Warn when the matched answer also occurs in another file.
        for a in hits:
            if len(a) < 4 or re.fullmatch(r"[\d.,:]+", a) or norm(a) in NUMBER_WORDS:
                continue  # short numbers collide by chance
            pat = re.compile(r"(?<![\w-])" + re.escape(norm(a)) + r"(?![\w-])")
            others = [r for r, t in texts.items() if r != src and pat.search(norm(" ".join(t)))]
            if others:
                warnings.append(f"{where}: answer {a!r} also appears in {others}")

    if answered < MIN_QA:
        errors.append(f"only {answered} answered QA items, need {MIN_QA}")
    if unanswerable < MIN_UNANSWERABLE:
        errors.append(f"only {unanswerable} unanswerable items, need {MIN_UNANSWERABLE}")
    for kind, need in MIN_PER_KIND.items():
        if kinds[kind] < need:
            errors.append(f"only {kinds[kind]} QA items of kind {kind!r}, need {need}")
    for rel in texts:
        need = 4 if rel.endswith((".pdf", ".html")) else 1
        if per_source[rel] < need:
            errors.append(f"{rel}: only {per_source[rel]} questions, need {need}")

    # --- probes and few-shot -----------------------------------------------------
    probes = read_jsonl(PROBES, errors)
    if len(probes) != 30:
        errors.append(f"{PROBES.name}: {len(probes)} lines, expected 30")
    for n, item in enumerate(probes, 1):
        if not isinstance(item.get("question"), str) or not item.get("answers"):
            errors.append(f"{PROBES.name}:{n}: needs question and non-empty answers")

    fewshot = check_fewshot(FEWSHOT, errors, cited=False)
    for n, item in enumerate(fewshot, 1):
        if "vellmar" in str(item.get("context")).lower():
            errors.append(f"{FEWSHOT.name}:{n}: few-shot examples must not be about Vellmar")

    # --- word counts ---------------------------------------------------------
    total = 0
    print("Words per file (visible text):")
    for rel, pages in texts.items():
        words = sum(len(t.split()) for t in pages)
        total += words
        extra = f", {len(pages)} pages" if rel.endswith(".pdf") else ""
        print(f"  {rel:35s} {words:5d}  ({per_source[rel]} questions{extra})")
    print(f"  {'TOTAL':35s} {total:5d}")
    if not MIN_WORDS <= total <= MAX_WORDS:
        errors.append(f"total word count {total} outside {MIN_WORDS}-{MAX_WORDS}")

    print(f"QA lines: {len(qa)} ({answered} answered, {unanswerable} unanswerable)")
    print("QA kinds: " + ", ".join(f"{k} {kinds[k]}" for k in KINDS))
    print(f"Probe lines: {len(probes)}; few-shot lines: {len(fewshot)}")
    check_seeds_fr(errors, warnings)  # French seed QA set: see the section at the end of this file
    for w in warnings:
        print("WARNING:", w)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"FAILED ({len(errors)} errors)")
    return 0 if not errors else 1


# =============================================================================
# French seed QA set (issue #12): corpora/seeds-fr-qa.jsonl over ../shared/data/seeds-fr
# and the French few-shot file corpora/fewshot-fr.jsonl. Kept apart from the Vellmar
# checks above; main() calls check_seeds_fr().
# =============================================================================

SEEDS_FR = HERE.parent.parent / "shared" / "data" / "seeds-fr"  # ../shared beside the repo
SEEDS_FR_QA = HERE / "seeds-fr-qa.jsonl"
FEWSHOT_FR = HERE / "fewshot-fr.jsonl"
SEEDS_FR_MIN_QA, SEEDS_FR_MIN_UNANSWERABLE = 60, 6
SEEDS_FR_MAX_ANSWER_WORDS = 6
SEEDS_FR_KINDS = {"name", "number", "date", "place", "yesno", "multi", "other", "unanswerable"}
SEEDS_FR_KEYS = {"question", "answers", "source", "kind", "also"}


def seed_texts(folder: Path, warnings: list[str]) -> dict[str, str]:
    """File name -> text as the project indexes it: mojibake repaired with ftfy.

    Uses rag.ingest.loaders.load_file when the package imports; otherwise the same
    repair (UTF-8, else cp1252, then ftfy.fix_text), so the check runs without the
    heavy dependencies.
    """
    try:
        from rag.ingest.loaders import load_file
    except ImportError as error:
        import ftfy

        warnings.append(f"rag.ingest.loaders not importable ({error}); repairing seed text with ftfy directly")

        def read(path: Path) -> str:
            data = path.read_bytes()
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("cp1252", errors="replace")
            return ftfy.fix_text(text)
    else:

        def read(path: Path) -> str:
            return "\n".join(page.text for page in load_file(path))

    return {p.name: read(p) for p in sorted(folder.iterdir()) if p.is_file()}


def check_seeds_fr(errors: list[str], warnings: list[str]) -> None:
    """Check seeds-fr-qa.jsonl (and fewshot-fr.jsonl); print a summary; add to errors and warnings."""
    fewshot = len(check_fewshot(FEWSHOT_FR, errors, cited=True))
    qa = read_jsonl(SEEDS_FR_QA, errors)
    texts: dict[str, str] | None = None
    if SEEDS_FR.is_dir():
        texts = {name: norm(text) for name, text in seed_texts(SEEDS_FR, warnings).items()}
    else:
        warnings.append(f"{SEEDS_FR} not found: French QA answers not checked against the seed files")

    answered = unanswerable = 0
    per_source: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    seen_q: set[str] = set()
    for n, item in enumerate(qa, 1):
        where = f"{SEEDS_FR_QA.name}:{n}"
        if set(item) - SEEDS_FR_KEYS:
            errors.append(f"{where}: unexpected keys {sorted(set(item) - SEEDS_FR_KEYS)}")
        answers, kind = item.get("answers"), item.get("kind")
        src, also = item.get("source"), item.get("also", [])
        if not has_new_question(item, where, seen_q, errors):
            continue
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            errors.append(f"{where}: answers must be a list of non-empty strings")
            continue
        if kind not in SEEDS_FR_KINDS:
            errors.append(f"{where}: kind {kind!r} is not one of {sorted(SEEDS_FR_KINDS)}")
            continue
        per_kind[kind] += 1
        if not answers:
            unanswerable += 1
            if kind != "unanswerable":
                errors.append(f"{where}: empty answers but kind {kind!r} (expected 'unanswerable')")
            if "source" in item or "also" in item:
                errors.append(f"{where}: unanswerable item must have no source or also")
            continue
        answered += 1
        if kind == "unanswerable":
            errors.append(f"{where}: kind 'unanswerable' but answers given")
        if kind == "yesno" and not set(map(norm, answers)) <= {"oui", "non"}:
            errors.append(f"{where}: yesno answers must be 'oui' or 'non', got {answers}")
        for a in answers:
            if len(a.split()) > SEEDS_FR_MAX_ANSWER_WORDS:
                errors.append(f"{where}: answer too long: {a!r}")
        if not isinstance(src, str) or not src:
            errors.append(f"{where}: answered item needs a source")
            continue
        if not isinstance(also, list) or not all(isinstance(f, str) for f in also) or src in also:
            errors.append(f"{where}: also must be a list of other seed file names")
            continue
        per_source[src] += 1
        if texts is None:
            continue
        missing = [f for f in [src, *also] if f not in texts]
        if missing:
            errors.append(f"{where}: seed file(s) {missing} not found under {SEEDS_FR}")
            continue
        if kind == "yesno":
            continue  # the evidence is in the source, but "oui"/"non" is not a span of it
        hits = [a for a in answers if norm(a) in texts[src]]
        if not hits:
            errors.append(f"{where}: no answer of {answers} found in the repaired text of {src}")
            continue
        # Warn when the most specific answer found also occurs in a seed the item does not name.
        best = max(hits, key=len)
        if len(best) < 4 or re.fullmatch(r"[\d.,:]+", best):
            continue  # short numbers collide by chance
        pat = re.compile(r"(?<!\w)" + re.escape(norm(best)) + r"(?!\w)")
        others = [f for f, t in texts.items() if f != src and f not in also and pat.search(t)]
        if others:
            warnings.append(f"{where}: answer {best!r} also appears in {others}")

    if len(qa) < SEEDS_FR_MIN_QA:
        errors.append(f"{SEEDS_FR_QA.name}: only {len(qa)} questions, need {SEEDS_FR_MIN_QA}")
    if unanswerable < SEEDS_FR_MIN_UNANSWERABLE:
        errors.append(f"{SEEDS_FR_QA.name}: only {unanswerable} unanswerable items, need {SEEDS_FR_MIN_UNANSWERABLE}")
    for name in texts or ():
        if per_source[name] < 1:
            errors.append(f"{SEEDS_FR_QA.name}: no question on seed {name}")

    print(f"French seed QA ({SEEDS_FR_QA.name}): {len(qa)} lines ({answered} answered, {unanswerable} unanswerable)")
    for name in sorted(set(per_source) | set(texts or ())):
        words = f"{len(texts[name].split()):5d} words, " if texts and name in texts else ""
        print(f"  {name:35s} {words}{per_source[name]} questions")
    print("  kinds: " + ", ".join(f"{k} {c}" for k, c in sorted(per_kind.items())))
    print(f"French few-shot lines: {fewshot}")


if __name__ == "__main__":
    sys.exit(main())
