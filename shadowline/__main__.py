"""`python -m shadowline` runs the CLI (worker subprocesses use this)."""

from shadowline.cli.main import run

run()
