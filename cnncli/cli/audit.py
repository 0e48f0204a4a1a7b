"""`cnncli audit`: the Typer command (registered by app.py), over commands/audit.py."""

import json
from pathlib import Path
from typing import List, Optional

import typer

SET_HELP = "With --config: override a config value, e.g. --set train.epochs=5 (repeatable; YAML-typed)."


def audit(
    data: Path = typer.Argument(..., metavar="DATA", help="A class folder (DATA/<class>/<image>), a folder of "
                                "train/val/test class folders, or a label file (.csv, .tsv, .jsonl)."),
    out: Path = typer.Option(..., "--out", help="Folder for audit.csv and audit.png (created if missing)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Out-of-fold probabilities from this "
                                              "network's penultimate features (trained here, or pretrained) and "
                                              "k softmax regressions on them."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Out-of-fold probabilities from k "
                                               "trainings from scratch with this training config (slow)."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
    folds: int = typer.Option(5, "--folds", min=2, help="k: each image is scored by a model that did not see it."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the fold assignment."),
    tiny: Optional[int] = typer.Option(None, "--tiny", min=1, help="Flag images whose shorter side is under this "
                                       "many pixels (default: half the smaller of the model's input side and the median image's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="'{path: P, label: L, split: S}'",
                                          help="A label file's column names, as data.columns in a training "
                                          "config (default: --config's data.columns, else path, label, split)."),
):
    """Find labels that are probably wrong, and copies across splits. Also unreadable and tiny
    images, and small classes; writes audit.csv and audit.png, moves or deletes nothing."""
    from ..commands.audit import audit as run_audit
    from ..config import parse_columns

    def training(f, k):
        typer.echo(f"training {f + 1} of {k} (on every fold but fold {f + 1}) ...", err=True)

    summary = run_audit(data, out, checkpoint, config_file, overrides, folds, seed, tiny, progress=training,
                        columns=columns and parse_columns(columns))
    rows = summary.pop("rows")
    summary.pop("ranking")
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    c = summary["counts"]
    typer.echo(f"{summary['images']:,} images ({summary['readable']:,} readable), {len(summary['classes'])} classes; "
               f"probabilities: {summary['source']}")
    typer.echo(f"label suspects {c['label']}, duplicates {c['duplicate']}, unreadable {c['unreadable']}, "
               f"tiny {c['tiny']}, small classes {c['imbalance']}")
    for r in [r for r in rows if r["issue"] == "label"][:5]:
        typer.echo(f"  {r['path']}: labelled {r['given']}, looks like {r['suggested']} (margin {r['score']:.2f})")
    for r in [r for r in rows if r["issue"] == "duplicate"][:3]:
        typer.echo(f"  {r['path']} = {r['other']} ({r['detail']})")
    secs = ", ".join(f"{k} {v:.1f}s" for k, v in summary["seconds"].items())
    typer.echo(f"wrote {summary['csv']} ({len(rows)} rows, most suspect first) and {summary['png']} ({secs})")
