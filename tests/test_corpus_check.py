"""corpora/check_corpus.py: the bundled QA sets' answers are verbatim in their sources, and a broken one is caught."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import QA_FILE, ROOT, SHARED

SCRIPT = ROOT / "corpora" / "check_corpus.py"


@pytest.fixture
def check_corpus():
    spec = importlib.util.spec_from_file_location("check_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundled_corpus_and_both_qa_sets_pass_their_checks():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("OK")
    if (SHARED / "seeds-fr").is_dir():  # CI has ../shared: the French answers are checked against the seeds too
        assert "French answers not checked" not in done.stdout
        french = len((ROOT / "corpora" / "seeds-fr-qa.jsonl").read_text(encoding="utf-8").splitlines())
        assert f"French seed QA (seeds-fr-qa.jsonl): {french} lines" in done.stdout


def test_a_misquoted_answer_a_repeated_question_and_bad_few_shot_examples_fail_the_check(check_corpus, tmp_path, capsys):
    rows = [json.loads(line) for line in QA_FILE.read_text(encoding="utf-8").splitlines()]
    line = next(n for n, row in enumerate(rows, 1) if row["kind"] == "name")
    rows[line - 1]["answers"] = ["Zebedee Quarrington"]
    rows.append(dict(rows[0], question=rows[0]["question"].upper()))  # the same question, differently cased
    check_corpus.QA = tmp_path / "vellmar-qa.jsonl"
    check_corpus.QA.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    uncited = json.loads(check_corpus.FEWSHOT_FR.read_text(encoding="utf-8").splitlines()[0])
    uncited["answer"] = uncited["answer"].removesuffix(" [1]")
    misquoted = dict(uncited, answer="Zebedee [1]")
    check_corpus.FEWSHOT_FR = tmp_path / "fewshot-fr.jsonl"
    check_corpus.FEWSHOT_FR.write_text("".join(json.dumps(row) + "\n" for row in (uncited, misquoted, uncited, uncited)), encoding="utf-8")

    assert check_corpus.main() == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ERROR:")]
    assert errors == [
        f"ERROR: vellmar-qa.jsonl:{line}: no answer of ['Zebedee Quarrington'] found in {rows[line - 1]['source']}",
        f"ERROR: vellmar-qa.jsonl:{len(rows)}: duplicate question",
        f"ERROR: fewshot-fr.jsonl:1: answer {uncited['answer']!r} must be a short span followed by ' [1]'",
        "ERROR: fewshot-fr.jsonl:2: answer 'Zebedee' is not a span of its context",
        f"ERROR: fewshot-fr.jsonl:3: answer {uncited['answer']!r} must be a short span followed by ' [1]'",
        f"ERROR: fewshot-fr.jsonl:4: answer {uncited['answer']!r} must be a short span followed by ' [1]'",
    ]
