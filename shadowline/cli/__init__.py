"""The ``shadowline`` command line. Each sub-command group lives in its own module."""

from shadowline.cli.main import app, main

__all__ = ["app", "main"]
