"""What the reliability scripts share: running attnlab as a process, snapshots of a tree, Markdown tables.

    >>> result = cli(["info", "/nonexistent"])      # Result(code=2, stdout='', stderr='error: ...', seconds=3.1)
    >>> table(["case", "verdict"], [["info of nothing", verdict("info", judge_refusal(result))]])
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
wrong: list[str] = []  # one entry per case that lost data or behaved wrongly


@dataclass
class Result:
    code: int | None  # None: still running at the deadline (then killed)
    stdout: str
    stderr: str
    seconds: float


def note(message: str) -> None:
    print(f"[reliability] {message}", file=sys.stderr, flush=True)


def cli(args: list[str], *, cwd: Path | None = None, stdin: str | None = None, timeout: float = 300) -> Result:
    """``attnlab ARGS`` as a user runs it: a new process, bounded by ``timeout``."""
    started = time.perf_counter()
    try:
        done = subprocess.run([PYTHON, "-m", "attnlab", *args], cwd=cwd, input=stdin if stdin is not None else "",
                              capture_output=True, text=True, timeout=timeout, env=ENV)
        return Result(done.returncode, done.stdout, done.stderr, time.perf_counter() - started)
    except subprocess.TimeoutExpired as late:
        return Result(None, str(late.stdout or ""), str(late.stderr or ""), time.perf_counter() - started)


def forked(args: list[str], *, cwd: Path, stdin: str | None = None, timeout: float = 120) -> Result:
    """``attnlab ARGS`` in a forked child of this process (attnlab already imported): a process of its own,
    with real file descriptors and exit status, without the interpreter start-up."""
    from attnlab.cli import main

    capture = Path(tempfile.mkdtemp(prefix="case-"))
    (capture / "in").write_text(stdin or "")
    sys.stdout.flush(), sys.stderr.flush()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            for fd, name, mode in ((0, "in", os.O_RDONLY), (1, "out", os.O_WRONLY | os.O_CREAT),
                                   (2, "err", os.O_WRONLY | os.O_CREAT)):
                os.dup2(os.open(capture / name, mode, 0o644), fd)
            os.chdir(cwd)
            code = main(args)
        except BaseException:  # an exception main() let through is a traceback, as in a real process
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
    deadline, status = started + timeout, None
    while time.perf_counter() < deadline:
        finished, raw = os.waitpid(pid, os.WNOHANG)
        if finished:
            status = os.waitstatus_to_exitcode(raw)
            break
        time.sleep(0.01)
    if status is None:
        os.kill(pid, signal.SIGKILL), os.waitpid(pid, 0)
    read = lambda name: (capture / name).read_text(errors="replace") if (capture / name).exists() else ""  # noqa: E731
    result = Result(status, read("out"), read("err"), time.perf_counter() - started)
    shutil.rmtree(capture, ignore_errors=True)
    return result


def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its mode, and for files the SHA-256 of the content."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        found[str(path.relative_to(root))] = (info.st_mode, digest)
    return found


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12] if Path(path).is_file() else "missing"


def message_of(stderr: str) -> str:
    """The line a user reads: attnlab's own ``error:`` line, or the text in click's usage-error box."""
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[0]
    boxed = [line.strip("│ ").strip() for line in lines if line.startswith("│")]
    return "usage: " + " ".join(boxed) if boxed else (lines[-1] if lines else "")


def cell(text: str, width: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(header: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(cell(value) for value in row) + " |")
    print()


def verdict(case: str, problems: list[str]) -> str:
    if problems:
        wrong.append(f"{case}: {'; '.join(problems)}")
        return "**WRONG**: " + "; ".join(problems)
    return "ok"


def judge_refusal(result: Result, expected_code: int = 2) -> list[str]:
    problems = []
    if result.code is None:
        problems.append(f"still running after {result.seconds:.0f} s")
    elif result.code != expected_code:
        problems.append(f"exit {result.code}, expected {expected_code}")
    if "Traceback" in result.stderr:
        problems.append("traceback")
    if not message_of(result.stderr):
        problems.append("no message")
    return problems
