from rag.cli import main
from rag.cli_common import run_cli

run_cli(main)
