"""Shared fixtures: real models and a real index of the bundled corpus, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test that reaches for the network fails instead of hanging

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpora" / "vellmar"
QA_FILE = ROOT / "corpora" / "vellmar-qa.jsonl"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def config():
    from rag import Config

    return Config()


@pytest.fixture(scope="session")
def embedder(config):
    from rag.embed import load_embedder

    return load_embedder(config)


@pytest.fixture(scope="session")
def vellmar_index(tmp_path_factory, config, embedder):
    from rag import ingest

    folder = tmp_path_factory.mktemp("vellmar-index")
    ingest([CORPUS], folder, config, embedder=embedder)
    return folder


@pytest.fixture(scope="session")
def generator(config):
    from rag import Generator

    return Generator.load(config.override({"max_new_tokens": 24}))
