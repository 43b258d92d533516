"""Flags and error handling shared by every command-line entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rag.config import Config, load_config


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file of config keys (see rag/config.py for every key)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key; repeatable")


def config_from_args(args: argparse.Namespace, **flags) -> Config:
    """The config file and ``--set`` first, then dedicated flags that were actually given."""
    config = load_config(args.config, args.set)
    return config.override({key: value for key, value in flags.items() if value is not None})


def run_cli(main: Callable[[], int]) -> None:
    """Exit 2 with a one-line message on a user error, instead of a traceback."""
    from transformers.utils import logging as transformers_logging

    from rag.index import IndexStoreError

    # The splitter measures whole pages with the tokenizer, which warns they exceed the model window.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError, ImportError, IndexStoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
