"""Shared scaffolding for the scripts in ``benchmarks/``: the helpers live in
:mod:`attnlab.benchmarking` (so ``attnlab bench`` uses the same code); this
adds the command-line flags every script takes."""

from __future__ import annotations

import argparse

from attnlab.benchmarking import *  # noqa: F401,F403  (re-exported for the scripts)
from attnlab.benchmarking import BenchResult, set_threads, write_json


def argument_parser(description: str) -> argparse.ArgumentParser:
    """``--quick`` (tiny shapes, 1 repeat), ``--json PATH``, ``--threads N`` (default 2)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one repeat (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH")
    parser.add_argument("--threads", type=int, default=2, metavar="N", help="torch intra-op threads (default 2)")
    return parser


def apply_threads(args: argparse.Namespace) -> int:
    return set_threads(args.threads)


def finish(result: BenchResult, args: argparse.Namespace) -> int:
    """Print what each column measures, write the JSON if asked, and return the exit status."""
    print()
    for name, text in result.description.items():
        print(f"  {name}: {text}")
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0


def write_results(out: str, results: dict, text: str) -> int:
    """Print the Markdown table and write OUT.json and OUT.md atomically (temp file + rename)."""
    from attnlab.files import atomic_write_text

    print()
    print(text)
    write_json(f"{out}.json", results)
    atomic_write_text(f"{out}.md", text)
    print(f"wrote {out}.json and {out}.md")
    return 0
