"""What every script in ``benchmarks/`` shares: its common flags, a log line, and how it reports.

Each script is a front-end: it parses its flags, calls a benchmark of this package and reports::

    parser = script_parser("Forward + backward of attention")      # --quick, --json PATH, --threads N
    args = parser.parse_args()
    set_threads(args.threads)
    return finish(attention_benchmark([32, 128], log=log_to_stderr), args.json)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping

from ..files import atomic_write_text
from .timing import BenchResult, write_json

__all__ = ["ScriptArgumentParser", "script_parser", "log_to_stderr", "finish", "write_results"]


class ScriptArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser that reports bad input as attnlab's commands do: one line on stderr,
    ``error: ...``, and exit status 2 (argparse's own prints its usage first)."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def script_parser(description: str) -> ScriptArgumentParser:
    """An argument parser with the flags every benchmark script takes:
    ``--quick`` (tiny shapes, one repeat), ``--json PATH``, ``--threads N`` (default 2)."""
    parser = ScriptArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one repeat (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH")
    parser.add_argument("--threads", type=int, default=2, metavar="N", help="torch intra-op threads (default 2)")
    return parser


def log_to_stderr(line: str) -> None:
    """A benchmark's progress line, on stderr (stdout holds the table)."""
    print(line, file=sys.stderr, flush=True)


def finish(result: BenchResult, json_path: str | None) -> int:
    """Print what each column measures, write the JSON to ``json_path`` if given, and return exit status 0."""
    print()
    for name, text in result.description.items():
        print(f"  {name}: {text}")
    if json_path:
        print(f"wrote {write_json(json_path, result)}")
    return 0


def write_results(stem: str, results: BenchResult | Mapping[str, Any], text: str) -> int:
    """Print the Markdown ``text``, write ``STEM.json`` and ``STEM.md`` (each atomically), and return 0."""
    print()
    print(text)
    write_json(f"{stem}.json", results)
    atomic_write_text(f"{stem}.md", text)
    print(f"wrote {stem}.json and {stem}.md")
    return 0
