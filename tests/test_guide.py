"""docs/guide.md is executable: its Python runs, its figures exist, its commands exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks(language: str | None = None) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if language is None or lang == language]


def _command_tree():
    from attnlab.cli import _register, app

    _register()
    return typer.main.get_command(app)


def _is_group(command) -> bool:
    # typer vendors its own copy of click, so test by shape rather than by class.
    return hasattr(command, "commands")


def _attnlab_invocations() -> list[list[str]]:
    """Every `attnlab ...` command line in the guide's code blocks (comments and prompts removed)."""
    invocations = []
    for body in _blocks():
        for line in body.splitlines():
            line = line.split(" #", 1)[0].strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                words = part.split()
                if words and Path(words[0]).name == "attnlab":
                    invocations.append(shlex.split(part)[1:])
    return invocations


def test_guide_has_python_snippets_and_commands():
    assert len(_blocks("python")) >= 8
    assert len(_attnlab_invocations()) >= 10


def test_every_python_snippet_in_the_guide_runs():
    """The snippets run in order, as one session (like a notebook), and their asserts hold."""
    namespace: dict = {"__name__": "guide"}
    for index, snippet in enumerate(_blocks("python")):
        try:
            exec(compile(snippet, f"guide.md python block {index}", "exec"), namespace)
        except Exception as error:  # name the block that broke
            raise AssertionError(f"python block {index} of docs/guide.md failed:\n{snippet}") from error


def test_every_figure_the_guide_links_exists():
    text = GUIDE.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert len(links) >= 8
    missing = [link for link in links if not (GUIDE.parent / link).is_file()]
    assert not missing, f"guide links figures that do not exist: {missing}"


def test_every_figure_in_the_guide_folder_is_linked():
    text = GUIDE.read_text(encoding="utf-8")
    pngs = sorted((GUIDE.parent / "figures" / "guide").glob("*.png"))
    unused = [p.name for p in pngs if f"figures/guide/{p.name}" not in text]
    assert not unused, f"figures generated but not shown in the guide: {unused}"


def test_every_attnlab_command_in_the_guide_is_a_real_subcommand():
    root = _command_tree()
    for argv in _attnlab_invocations():
        command, path = root, ["attnlab"]
        for word in argv:
            if not _is_group(command) or word.startswith("-"):
                break
            sub = command.commands.get(word)
            assert sub is not None, f"`{' '.join(path)} {word}` is not a command; guide line: attnlab {shlex.join(argv)}"
            command, path = sub, path + [word]
        assert not _is_group(command), f"`{' '.join(path)}` needs a subcommand"
        # Options must exist on the command they are given to.
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in argv[len(path) - 1:]:
            if word.startswith("--"):
                option = word.split("=", 1)[0]
                assert option in known, f"`{' '.join(path)}` has no option {option}"
