"""The command line of `cnncli pretrained list|get` (ImageNet-trained networks). app.py registers
them (this module imports nothing of app.py)."""

import json
from pathlib import Path
from typing import Optional

import typer


def listing(as_json: bool = typer.Option(False, "--json", help="One JSON object per line per network.")):
    """List the pretrained networks. For each: parameters, ImageNet top-1 as published, input size,
    licence, and whether its weights are installed."""
    from ..commands.pretrained import networks

    rows = networks()
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    from .render import print_networks
    print_networks(rows)


def get(
    name: str = typer.Argument(..., metavar="NAME", help="A network from `cnncli pretrained list`."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="The folder to write model.npz and model.yaml into."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Read the weights from this PyTorch "
                                           "state_dict file instead of the installed package."),
    force: bool = typer.Option(False, "--force", help="Replace model.npz and model.yaml in OUT_DIR."),
):
    """Write a pretrained network as a checkpoint. OUT_DIR/model.npz holds the weights, class names
    and preprocessing; OUT_DIR/model.yaml the architecture."""
    from ..commands.pretrained import get as run_get

    info = run_get(name, out_dir, weights, force)
    typer.echo(f"wrote {info['checkpoint']} ({info['parameters']:,} parameters, {info['classes']:,} classes) "
               f"and {info['architecture']}")
    typer.echo(f"preprocessing: {info['note']}")
    typer.echo(f"next: cnncli predict {info['checkpoint']} IMAGE...")
