"""Helpers that keep the suite's proofs sharp: each makes a test fail when its claim is false.

- :func:`check_bad_input` — the whole bad-input contract of the command line: exit status 2,
  exactly one line on stderr starting with ``error:``, no traceback, nothing written or changed.
- :func:`require_reference` — an independent reference (HuggingFace, sentence-transformers, the
  MiniLM checkpoint) may be absent on a user's machine (the test skips), never in CI (it fails).
- :func:`randomized` — parameters far from their default initialisation, so that a swapped or
  forgotten bias or LayerNorm cannot hide behind zeros and ones.

>>> check_bad_input(lambda: run(["train", "--steps", "-3"]), "--steps", watch=[tmp_path])
>>> transformers = require_reference("transformers")
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Callable, Iterable

import pytest
import torch

EXIT_BAD_INPUT = 2


def tree_state(path: Path) -> dict[str, str] | None:
    """Every entry under ``path`` → its kind and content digest; None when ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_file():
        return {".": "file " + hashlib.sha256(path.read_bytes()).hexdigest()}
    state = {}
    for entry in sorted(path.rglob("*")):
        name = str(entry.relative_to(path))
        state[name] = "dir" if entry.is_dir() else "file " + hashlib.sha256(entry.read_bytes()).hexdigest()
    return state


def check_bad_input(run: Callable[[], tuple[int, str]], message: str, *, watch: Iterable[Path] = ()) -> str:
    """Run ``run() -> (exit status, stderr)`` and assert the bad-input contract; return the error line.

    The contract: exit status 2; stderr is exactly one line, ``error: ...`` containing ``message``;
    no traceback; every path in ``watch`` (a directory or file, existing or not) is left exactly as
    it was: nothing created, written, changed or removed under it.
    """
    watched = [Path(p) for p in watch]
    before = {p: tree_state(p) for p in watched}
    code, err = run()
    assert code == EXIT_BAD_INPUT, f"exit status {code}, expected {EXIT_BAD_INPUT}; stderr: {err!r}"
    assert "Traceback" not in err, f"a traceback on stderr: {err!r}"
    lines = err.split("\n")
    assert len(lines) == 2 and lines[1] == "", f"stderr must be exactly one line, got {err!r}"
    line = lines[0]
    assert line.startswith("error: "), f"the line must start with 'error: ', got {line!r}"
    assert message in line, f"{message!r} not in {line!r}"
    for path in watched:
        assert tree_state(path) == before[path], f"bad input wrote, changed or removed files under {path}"
    return line


def require_reference(module: str):
    """Import an independent reference implementation a proof compares against.

    On a user's machine without the optional extra the test skips; in CI (``CI=true``) the
    references are installed (``.[dev]``), so a missing one is a failure, as a missing Chromium is.
    """
    if os.environ.get("CI", "").strip().lower() not in ("true", "1", "yes"):
        return pytest.importorskip(module, reason=f"the reference {module!r} is not installed "
                                                  "(pip install -e '.[dev]'); CI requires it")
    try:
        return importlib.import_module(module)
    except ImportError as missing:
        pytest.fail(f"CI=true but the reference {module!r} cannot be imported ({missing}): "
                    "install the dev extra, pip install -e '.[dev]'", pytrace=False)


@torch.no_grad()
def randomized(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Draw every parameter of ``module`` afresh from N(0, std²) (torch's global generator); return it.

    At torch's default initialisation every bias is 0 and every LayerNorm weight 1, so copying
    them wrongly (swapped q/k/v chunks, norm1 for norm2) changes nothing a test could see.
    Two calls draw different values, so a parameter a loader forgets keeps a value of its own.
    """
    for parameter in module.parameters():
        parameter.normal_(0.0, std)
    return module


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``attnlab ARGS`` in this process: (exit status, stdout, stderr)."""
    from attnlab.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def status_and_stderr(capsys, *args) -> tuple[int, str]:
    """What the bad-input contract judges: ``attnlab ARGS``'s exit status and stderr."""
    code, _, err = run_cli(capsys, *args)
    return code, err
