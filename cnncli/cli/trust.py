"""The command line of calibration and "none of these": `cnncli calibrate`, and what `evaluate`
prints of them. app.py registers `calibrate` (this module imports nothing of app.py)."""

from pathlib import Path
from typing import Optional

import typer

from ..errors import CnnError

REJECT_HELP = ("Print 'unknown' instead of a class when unsure: auto (the threshold that rejects --reject-rate "
               "of the validation images the checkpoint was calibrated on) or a probability P (reject under P).")
RATE_HELP = "The share of known images --reject auto (and evaluate --unknown) accepts to reject."


def calibrate(
    checkpoint_file: Path = typer.Argument(..., metavar="CHECKPOINT", help="A best.npz or last.npz."),
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled validation images: a class folder or a label "
                                "file (.csv, .tsv, .jsonl). Never the test images."),
    split: Optional[str] = typer.Option(None, "--split", help="Only a label file's rows of this split (val)."),
):
    """Calibrate confidence on validation images. Fits the temperature and the unknown-image scores and
    rewrites the checkpoint (weights untouched)."""
    from ..commands.calibrate import calibrate as run_calibrate, describe, training_warning
    from ..data.folder import SPLITS

    if split is not None and split.lower() not in SPLITS:
        raise CnnError(f"--split must be train, val or test, got {split!r}")
    split = split and SPLITS[split.lower()]
    meta = run_calibrate(checkpoint_file, data, split)
    warning = training_warning(data, split)
    if warning:
        typer.echo(warning, err=True)
    typer.echo(describe(checkpoint_file, meta))


def print_trust(report, err=False):
    """evaluate's lines on calibration and, with --unknown, on unknown images (none for multi-label)."""
    if "calibration" not in report:
        return
    c = report["calibration"]
    fitted = f"fitted on {c['fitted_on']}" if c["fitted_on"] else "not calibrated: cnncli calibrate CHECKPOINT VAL_DATA"
    typer.echo(f"calibration: temperature {c['temperature']:.3f} ({fitted}); ECE {c['ece'][0]:.2%} -> {c['ece'][1]:.2%}, "
               f"NLL {c['nll'][0]:.4f} -> {c['nll'][1]:.4f}", err=err)
    u = report.get("unknown")
    if u:
        a = u["unknown_auroc"]
        typer.echo(f"unknown: {u['images']} images in {u['folder']}: AUROC probability {a['probability']:.3f}, "
                   f"distance {a['distance']:.3f}; at the {u['score']} threshold for {u['rate']:.0%} false rejections "
                   f"on validation: caught {u['caught']:.1%} of unknowns, rejected {u['false_rejection']:.1%} of "
                   "these known images", err=err)
