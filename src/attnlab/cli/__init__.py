"""The ``attnlab`` command line (typer).

Every command has ``--help`` with an example. Bad input gives one line on
stderr starting with ``error:`` and exit status 2; nothing already written is
touched.
"""

from __future__ import annotations

import sys

import typer

from .common import EXIT_BAD_INPUT, echo_error

app = typer.Typer(
    name="attnlab",
    help="attnlab: a laboratory for Transformers and attention.\n\n"
         "Start with `attnlab demo`; see `attnlab COMMAND --help` for examples.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


def _register() -> None:
    # Importing a command module registers its commands on `app` (in this order in --help).
    from . import data_cmds, run_cmds, train_cmds, experiment_cmds, bench_cmds  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    typer/click report usage errors themselves (exit status 2); errors raised
    by attnlab for bad input (ValueError and friends) become one line here.
    """
    _register()
    try:
        app(args=argv, prog_name="attnlab")
    except SystemExit as done:  # click's standalone mode always ends this way
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_BAD_INPUT)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as error:
        echo_error(str(error))
        return EXIT_BAD_INPUT
    except OSError as error:  # the machine, not the input: a full disk, a file-size limit, an I/O error
        echo_error(f"{error.strerror or error}" + (f": {error.filename}" if error.filename else ""))
        return 1
    except KeyboardInterrupt:
        echo_error("interrupted")
        return 130
    return 0


def run() -> None:
    sys.exit(main())
