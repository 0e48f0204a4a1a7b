"""Typer app. Imports only what a command needs, when it runs, so --help stays fast."""

import sys

import typer

from ..errors import CnnError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train convolutional image classifiers on Numba-compiled kernels.")


def fail(message):
    """Print one line to stderr and exit 2 (bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def version():
    """Print the cnncli version."""
    from .. import __version__
    typer.echo(__version__)


def run():
    try:
        app()
    except CnnError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
