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
    from . import explain_cmds  # noqa: F401  (experiment explain / heads)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    Usage errors that click finds (an unknown option, a missing value) and errors
    raised by attnlab for bad input (ValueError and friends) both become one
    ``error:`` line and exit status 2 here.
    """
    _register()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="attnlab", standalone_mode=False)
    except typer.Exit as done:  # fail() and --help end this way; the message is already printed
        return done.exit_code
    except typer.Abort:
        echo_error("interrupted")
        return 130
    except SystemExit as done:
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
    except Exception as error:  # click's usage errors share no base class with attnlab's across typer versions
        if not _is_usage_error(error):
            raise
        return _report_usage_error(error)
    return result if isinstance(result, int) else 0


def _is_usage_error(error: BaseException) -> bool:
    """A click usage error (an unknown option, a bad value), from click itself or typer's copy of it."""
    return hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int)


def _report_usage_error(error) -> int:
    """One ``error:`` line, naming the --help to read; ``attnlab`` alone shows the help."""
    context = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError" and context is not None:
        print(context.get_help())
        return 0
    path = context.command_path if context is not None else "attnlab"
    echo_error(f"{' '.join(error.format_message().split())} (see '{path} --help')")
    return EXIT_BAD_INPUT


def run() -> None:
    sys.exit(main())
