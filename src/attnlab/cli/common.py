"""What every command shares: error reporting, task options, run-directory safety."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

__all__ = ["fail", "echo_error", "check_writable_dir", "EXIT_BAD_INPUT"]

EXIT_BAD_INPUT = 2


def echo_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def fail(message: str) -> "typer.Exit":
    """Report bad input in one line and leave with exit status 2."""
    echo_error(message)
    raise typer.Exit(EXIT_BAD_INPUT)


def check_writable_dir(path: Path, what: str = "output directory") -> None:
    """Fail early (before any work) when ``path`` cannot be created or written."""
    path = Path(path)
    probe_parent = path
    while not probe_parent.exists():
        probe_parent = probe_parent.parent
    if not probe_parent.is_dir():
        fail(f"{what} {path}: {probe_parent} is not a directory")
    if not os.access(probe_parent, os.W_OK | os.X_OK):
        fail(f"{what} {path} is not writable (no write permission on {probe_parent})")
