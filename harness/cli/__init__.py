"""Command-line entry point. Each command lives in its own module of this package.

Errors a user can cause end in one line on stderr and exit status 2; anything unexpected ends in one
line too (exit 3), with the traceback shown only under ``--debug``.
"""

from __future__ import annotations

import sys

import click

from harness.cli import audit, board, demo, env, run, score, tasks  # noqa: F401  (registers the commands)
from harness.cli._group import cli
from harness.errors import USER_ERRORS


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="unlearn-harness", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except USER_ERRORS as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the harness never ends in a traceback
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True
        )
        sys.exit(3)
    sys.exit(0)
