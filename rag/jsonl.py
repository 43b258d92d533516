"""Read a JSONL file record by record; a bad line is a ``ValueError`` naming the file and line.

    >>> read_jsonl("qa.jsonl", lambda row: row["question"], 'an object with "question"')  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Record = TypeVar("Record")


def read_jsonl(path: str | Path, parse: Callable[[dict], Record], expected: str) -> list[Record]:
    """``parse`` each non-blank line's object; it may raise KeyError, TypeError or ValueError on bad content."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(parse(json.loads(line)))
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{number}: expected {expected} ({type(error).__name__}: {error})") from error
    if not records:
        raise ValueError(f"{path} holds no records")
    return records
