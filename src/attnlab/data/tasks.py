"""`load_task(spec)`: the one entry point from a task name (or a corpus path) to a `TaskData`.

    >>> load_task("reverse", seed=1, train_lengths=(1, 8), test_lengths=(9, 12))
    >>> load_task("toy")                                   # built-in English→French corpus
    >>> load_task("fra-eng", src_lang="fr", tgt_lang="en", max_pairs=20000)
    >>> load_task("path/to/pairs.tsv", tokenizer="word")

Options that the chosen task does not know raise `ValueError` naming them, so a typo in a CLI
flag or a config file never passes silently.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from attnlab.data.example import TaskData
from attnlab.data.corpus import CORPUS_LANGUAGES, load_corpus
from attnlab.data.synthetic import SYNTHETIC_TASKS, load_synthetic
from attnlab.data.toy import load_toy

KNOWN_CORPORA = tuple(CORPUS_LANGUAGES)
TASKS = SYNTHETIC_TASKS + ("toy",) + KNOWN_CORPORA


def _check_options(loader, spec: str, options: dict) -> None:
    accepted = [name for name, p in inspect.signature(loader).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "seed"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"option {', '.join(unknown)}: not accepted by task {spec!r}; "
            f"allowed: {', '.join(accepted)}"
        )


def load_task(spec: str, *, seed: int = 0, **options) -> TaskData:
    """Build the task named by `spec`: one of copy, reverse, sort, add, toy, fra-eng, multi30k,
    or a path to a parallel corpus (a .tsv/.txt file, or a directory of line-aligned files)."""

    spec = str(spec)
    if spec in SYNTHETIC_TASKS:
        _check_options(load_synthetic, spec, options)
        return load_synthetic(spec, seed=seed, **options)
    if spec == "toy":
        _check_options(load_toy, spec, options)
        return load_toy(seed=seed, **options)
    if spec in KNOWN_CORPORA or Path(spec).exists():
        _check_options(load_corpus, spec, options)
        return load_corpus(spec, seed=seed, **options)
    raise ValueError(
        f"task: {spec!r} is neither one of {', '.join(TASKS)} nor an existing file or directory"
    )
