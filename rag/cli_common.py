"""What every command-line entry point shares: flags declared from the dataclasses, config flags, errors, logging.

A flag that sets a dataclass field is declared once, with :func:`option`: its
default lives in the dataclass only (shown in ``--help``), and :func:`given`
collects the flags actually typed, so a flag never silently overrides a config
file or ``--set`` with a default.

    >>> parser = argparse.ArgumentParser()
    >>> option(parser, Config, "--k", type=int)
    >>> given(parser.parse_args(["--k", "8"]), Config)
    {'k': 8}
    >>> given(parser.parse_args([]), Config)
    {}
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable

from rag.config import Config, load_config, parse_assignments


def option(group, owner: type, *flags: str, help: str = "", field: str | None = None, base=None, **kwargs) -> None:
    """A flag for the field of dataclass ``owner`` named like the first flag (or ``field``).

    ``base`` is the instance the command starts from, when its defaults differ from the class's (shown in ``--help``).
    """
    name = field or flags[0].removeprefix("--").replace("-", "_")
    declared = {f.name: f for f in dataclasses.fields(owner)}
    if name not in declared:
        raise AssertionError(f"{owner.__name__} has no field {name}")  # a programming error, caught by any test run
    default = getattr(base, name) if base is not None else declared[name].default
    shown = f" (default {default})" if default not in (None, False, "", (), dataclasses.MISSING) and "const" not in kwargs else ""
    if "action" not in kwargs:
        kwargs.setdefault("metavar", name.upper())
    # dest names the owner too: rag.eval has its own k, embedder and generator besides Config's.
    group.add_argument(*flags, dest=f"{owner.__name__}.{name}", default=argparse.SUPPRESS, help=help + shown, **kwargs)


def given(args: argparse.Namespace, owner: type) -> dict:
    """The ``owner`` fields set by flags on this command line."""
    prefix = f"{owner.__name__}."
    return {key.removeprefix(prefix): value for key, value in vars(args).items() if key.startswith(prefix)}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file of config keys (see rag/config.py for every key)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key; repeatable")


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """``base``, the config file, ``--set``, then the Config flags given; a key set twice is an error."""
    flags = given(args, Config)
    twice = sorted(flags.keys() & parse_assignments(args.set).keys())
    if twice:
        raise ValueError(f"{', '.join(twice)} set both by a flag and by --set; give one")
    return load_config(args.config, args.set, base).override(flags)


def run_cli(main: Callable[[], int]) -> None:
    """Run ``main`` with progress reported through logging, exiting 2 with one line on a user error."""
    from tqdm.contrib.logging import logging_redirect_tqdm
    from transformers.utils import logging as transformers_logging

    from rag.index import IndexStoreError

    # The splitter measures whole pages with the tokenizer, which warns they exceed the model window.
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("rag").setLevel(logging.INFO)  # our progress lines; other libraries stay at warnings
    # pypdf warns about every object of a damaged PDF (thousands of lines); the file's one-line reason is enough.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            code = main()
    except (ValueError, OSError, ImportError, IndexStoreError) as error:  # OSError: a path that is missing, a folder, unreadable
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)
