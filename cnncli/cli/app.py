"""Typer app. Each command parses its options and calls one importable function; imports happen
inside the command so `cnncli --help` and `cnncli inspect` never load numba."""

import functools
import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import CnnError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Train convolutional image classifiers on Numba-compiled kernels.")

def command(fn):
    """Register a command whose CnnError becomes one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
    return app.command()(wrapper)


SET_HELP = "Override a config value, e.g. --set train.lr=0.001 (repeatable; YAML-typed)."


@command
def inspect(
    file: Path = typer.Argument(..., help="An architecture file, a training config, or a checkpoint."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1,
                                             help="Also estimate training memory at this batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    resolved: bool = typer.Option(False, "--resolved", help="Print the resolved config (defaults filled in) as YAML."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
):
    """Show every layer's output shape, parameters and cost, without training."""
    from .. import config
    from ..summary import summarize

    cfg = config.load(file, overrides)
    arch = cfg if isinstance(cfg, config.Architecture) else cfg.model
    if resolved:
        import yaml
        typer.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)
        return
    opt = momentum = None
    if isinstance(cfg, config.RunConfig):
        opt, momentum = cfg.train.optimizer, cfg.train.momentum
        batch_size = batch_size or cfg.train.batch_size
    summary = summarize(arch, batch_size, opt or "adam", momentum if momentum is not None else 0.9)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from .render import print_summary
    print_summary(summary, f"{file}")


@command
def init(
    directory: Path = typer.Argument(..., help="Folder to write model.yaml and train.yaml into."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist."),
):
    """Write a commented starter architecture and training config."""
    from ..starter import write_starter

    for path in write_starter(directory, force):
        typer.echo(f"wrote {path}")
    typer.echo(f"next: cnncli inspect {directory / 'train.yaml'}")


@command
def version():
    """Print the cnncli version."""
    from .. import __version__
    typer.echo(__version__)


def run():
    app()
