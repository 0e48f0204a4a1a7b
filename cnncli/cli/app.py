"""Typer app. Each command parses its options and calls one importable function; imports happen
inside the command so `cnncli --help` and `cnncli inspect` never load numba."""

import functools
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from ..errors import CnnError
from . import pretrained, trust

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, context_settings={"max_content_width": 120},  # no '...' cuts
                  help="Train convolutional image classifiers on Numba-compiled kernels.")


def _print_version(value: bool):
    if value:
        from .. import __version__
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the cnncli version and exit.")):
    """Train convolutional image classifiers on Numba-compiled kernels."""


def one_line(e):
    return str(e).replace("\r", "\\r").replace("\n", "\\n")


def command(fn=None, *, on=None, name=None, **settings):
    """Register a command (on `app`, or as `name` in the group `on`) whose CnnError becomes one line
    on stderr and exit status 2. settings: Click context settings (`@command(allow_extra_args=True)`)."""
    if fn is None:
        return lambda f: command(f, on=on, name=name, **settings)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # what print() left in the buffer meets a closed pipe here, not at exit
            return result
        except CnnError as e:  # one line, whatever a file or folder name holds
            from ..parallel.world import speaks
            if speaks(e):  # in a job of several processes, rank 0 says what all of them found
                typer.echo("error: " + one_line(e), err=True)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, KeyboardInterrupt, SystemExit):
            raise
        except BrokenPipeError:  # the reader went away (`cnncli predict ... | head`): stop quietly
            from ..engine.progress import silence
            silence(sys.stdout)
            raise typer.Exit(0) from None
        except Exception as e:  # a bug of ours: say so in one line; CNNCLI_DEBUG=1 shows the traceback
            if os.environ.get("CNNCLI_DEBUG"):
                raise
            typer.echo(f"internal error: {e.__class__.__name__}: {one_line(e)} (a bug in cnncli: please "
                       "report it; set CNNCLI_DEBUG=1 to see the traceback)", err=True)
            raise typer.Exit(1) from None
    return (on or app).command(name, context_settings=settings or None)(wrapper)


TTA_HELP = ("Test-time augmentation: average the probabilities over the image, its mirror image (unless "
            "trained with augment.flip off) and 4 shifts of side/16 pixels (at least 1).")
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
    """Show each layer's shape, parameters and cost. Nothing is trained or compiled."""
    from .. import config
    from ..model.summary import layer_table

    if file.suffix == ".npz":
        from .render import print_checkpoint
        return print_checkpoint(file, as_json, batch_size)
    cfg = config.load(file, overrides)
    arch = cfg if isinstance(cfg, config.Architecture) else cfg.model
    if resolved:
        typer.echo(config.resolved_yaml(cfg.to_dict()), nl=False)
        return
    opt = momentum = freeze = None
    if isinstance(cfg, config.RunConfig):
        opt, momentum, freeze = cfg.train.optimizer, cfg.train.momentum, cfg.train.freeze
        batch_size = batch_size or cfg.train.batch_size
    summary = layer_table(arch, batch_size, opt or "adam", momentum if momentum is not None else 0.9, freeze)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from .render import print_summary
    print_summary(summary, f"{file}")


@command
def train(
    config_file: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="A training config (YAML)."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder exactly where it stopped."),
    force: bool = typer.Option(False, "--force", help="Start over in an output folder that already holds a run."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint's weights (same architecture)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
    processes: Optional[int] = typer.Option(None, "--processes", "-n", min=1, help=(
        "Train on N processes of this machine, each on its share of every batch (starts mpiexec; "
        "needs pip install 'cnncli[mpi]'). Under mpiexec or srun, leave it out.")),
):
    """Train a network on a folder of images. One sub-folder per class."""
    from ..parallel.world import Ending, speaks
    from ..engine.progress import make_reporter
    from ..engine.trainer import Interrupted
    from ..commands.train import train as run_training

    if processes and processes > 1:
        from ..parallel.launch import launch
        args = [str(config_file)] if config_file is not None else []
        args += [f"--set={o}" for o in overrides] + (["--resume", str(resume)] if resume is not None else [])
        args += (["--force"] if force else []) + (["--init", str(init)] if init else []) + (["--quiet"] if quiet else [])
        raise typer.Exit(launch(processes, args, lambda: resume or _run_folder(config_file, overrides)))
    reporter = make_reporter(quiet)
    try:
        with Ending():  # under MPI: what one process alone met ends the whole job
            run_training(config_file, overrides, force=force, resume=resume, init=init, reporter=reporter)
    except Interrupted as e:
        reporter.close()
        if not e.quiet and speaks(e):
            typer.echo(str(e), err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the epoch loop
        reporter.close()
        if speaks():
            typer.echo("interrupted; checkpoints already written are intact", err=True)
        raise typer.Exit(130) from None


def _run_folder(config_file, overrides):
    from .. import config
    return config.load_run(config_file, overrides).output


@command
def predict(
    checkpoint_file: Path = typer.Argument(..., metavar="CHECKPOINT", help="A best.npz or last.npz."),
    paths: List[str] = typer.Argument(..., metavar="IMAGES...", help="Image files, folders (recursive), globs "
                                      "or label files (.csv, .tsv, .jsonl: their path column)."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line per image."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV: path, class_1, prob_1, ..., error."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    reject: Optional[str] = typer.Option(None, "--reject", metavar="auto|P", help=trust.REJECT_HELP),
    reject_rate: float = typer.Option(0.05, "--reject-rate", help=trust.RATE_HELP),
):
    """Classify images with a trained checkpoint. Its classes and preprocessing travel with it."""
    from ..commands.predict import predict as run_predict
    from .render import print_predictions

    results = run_predict(checkpoint_file, paths, top_k, batch_size, tta=tta, reject=reject, reject_rate=reject_rate)
    fmt = "json" if as_json else "csv" if as_csv else "table"
    print_predictions(results, fmt)
    failed = [r for r in results if "error" in r]
    if fmt == "table":  # the table lists what was classified; each failure is one line on stderr
        converted = [r for r in results if r.get("converted")]
        if converted:
            typer.echo(f"note: {len(converted)} image(s) converted to the model's input (e.g. "
                       f"{converted[0]['path']}: {converted[0]['converted']}); --json shows each", err=True)
        for r in failed:
            typer.echo(f"error: {r['path']}: {r['error']}", err=True)
    elif failed:        # --json / --csv carry each failure in its record; stderr says how many
        typer.echo(f"error: {len(failed)} of {len(results)} image(s) could not be read; see their "
                   f"'error' {'field' if as_json else 'column'}", err=True)
    if failed:
        raise typer.Exit(1)


@command
def evaluate(
    checkpoint_file: Path = typer.Argument(..., metavar="CHECKPOINT", help="A best.npz or last.npz."),
    data_dir: Path = typer.Argument(..., metavar="DATA", help="A labelled folder (DATA/<class>/<image>) or a "
                                    "label file (.csv, .tsv, .jsonl: path and label columns)."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="k for top-k accuracy."),
    split: Optional[str] = typer.Option(None, "--split", help="Only a label file's rows of this split "
                                        "(train, val or test)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write confusion.png, confusion.csv, "
                                       "per_class.csv, mistakes.png and reliability.png into this folder."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    unknown: Optional[Path] = typer.Option(None, "--unknown", help="Images of classes the model never saw: "
                                           "how well each unknown score tells them apart (AUROC)."),
    reject_rate: float = typer.Option(0.05, "--reject-rate", help=trust.RATE_HELP),
):
    """Score a checkpoint on a labelled folder or label file. Accuracy, per-class scores, confusion matrix."""
    from ..commands.evaluate import add_calibration, score_folder, summarize_scores, write_reliability
    from .render import print_evaluation

    from ..data.folder import SPLITS

    if split is not None and split.lower() not in SPLITS:
        raise CnnError(f"--split must be train, val or test, got {split!r}")
    scored = score_folder(checkpoint_file, data_dir, tta=tta, split=split and SPLITS[split.lower()])
    report = add_calibration(summarize_scores(scored, checkpoint_file, top_k), scored, unknown, reject_rate)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_evaluation(report)
        trust.print_trust(report)
    if out is not None:
        from ..commands.evaluate import write_evaluation
        written = write_evaluation(scored, report, out)
        written += [write_reliability(report, out)] if "calibration" in report else []
        typer.echo(f"wrote {', '.join(p.name for p in written)} to {out}", err=as_json)


command(trust.calibrate)


@command
def explain(
    checkpoint_file: Path = typer.Argument(..., metavar="CHECKPOINT", help="A best.npz or last.npz."),
    paths: List[str] = typer.Argument(..., metavar="IMAGE...", help="Image files, folders (recursive) or globs."),
    out: Path = typer.Option(..., "--out", help="Folder for one PNG per image (created if missing)."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Explain this class instead of the predicted one."),
    layer: Optional[int] = typer.Option(None, "--layer", help="Grad-CAM at this layer index (default: the last "
                                        "conv-like layer with a spatial output; see `cnncli inspect`)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image: prediction, heatmap peak, PNG."),
):
    """Show what the network looks at. Grad-CAM heatmap, feature maps and first-layer filters."""
    from ..commands.explain import explain as run_explain

    results = run_explain(checkpoint_file, paths, out, class_name, layer)
    for r in results:
        if "error" in r:
            typer.echo(f"error: {r['path']}: {r['error']}", err=True)
        elif as_json:
            typer.echo(json.dumps(r))
        else:
            pk, p, e = r["peak"], r["prediction"], r["explained"]
            why = "" if e["class"] == p["class"] else f"; heatmap of {e['class']} ({e['prob']:.1%})"
            why += f"; labels over their thresholds: {', '.join(r['labels']) or 'none'}" if "labels" in r else ""
            typer.echo(f"{r['path']}: {p['class']} ({p['prob']:.1%}){why}; peak at x={pk['x']} y={pk['y']} "
                       f"(layer {r['layer']}) -> {r['png']}")
    if any("error" in r for r in results):
        raise typer.Exit(1)


@command
def report(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="The output folder of `cnncli train`."),
    data: Optional[Path] = typer.Option(None, "--data", help="Images to evaluate on (default: the run's "
                                        "validation folder, the training label file's val rows, or the images "
                                        "data.val_split held out)."),
):
    """Write a run's report.html. Curves, metrics, confusion matrix, mistakes, Grad-CAM, layers, config."""
    from ..commands.report import build_report

    path, seconds = build_report(run_dir, data)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e3:,.0f} kB) in {seconds:.1f}s")


@command
def lr_find(
    config_file: Path = typer.Argument(..., metavar="CONFIG", help="A training config (YAML)."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
    out: Path = typer.Option(Path("lr_find.png"), "--out", help="Where to write the plot."),
    start: float = typer.Option(1e-7, "--start-lr", help="The sweep's first learning rate."),
    end: float = typer.Option(10.0, "--end-lr", help="The sweep's last learning rate."),
    steps: int = typer.Option(100, "--steps", help="Training steps in the sweep (one rate each)."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep as JSON."),
):
    """Sweep the learning rate and suggest one. The model as train starts it (train.init and train.freeze honoured); writes only the plot."""
    from ..commands.lr_find import lr_find as run_lr_find

    result = run_lr_find(config_file, overrides, out, start, end, steps)
    if as_json:
        typer.echo(json.dumps(result))
        return
    lo, hi = result["valley"]
    stop = (f"stopped at {result['lrs'][-1]:.2g}: the loss diverged" if result["stopped"] == "diverged"
            else f"reached {result['lrs'][-1]:.2g}")
    typer.echo(f"swept {result['steps']} steps from {result['lrs'][0]:.2g} ({stop})")
    typer.echo(f"suggested learning rate: {result['suggestion']:.2g}  (half-way along the longest stretch where "
               f"the loss kept falling, {lo:.2g} to {hi:.2g}); set it with --set train.lr={result['suggestion']:.2g}")
    typer.echo(f"wrote {out}")
    if result["frozen"]:
        typer.echo(result["frozen"], err=True)
    if result["init"]:
        typer.echo(f"the sweep started from train.init's weights, {result['init']}", err=True)
    for note in result["notes"]:
        typer.echo(note, err=True)


@command
def synth(
    directory: Path = typer.Argument(..., help="Folder to write train/<class>/*.png and val/<class>/*.png into."),
    per_class: int = typer.Option(600, "--per-class", min=1, help="Training images per class."),
    val_per_class: int = typer.Option(100, "--val-per-class", min=0, help="Validation images per class."),
    size: int = typer.Option(32, "--size", min=8, help="Image side in pixels."),
    classes: int = typer.Option(4, "--classes", min=2, max=6, help="Number of shape classes (2-6)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: the same seed writes the same images."),
    test_per_class: int = typer.Option(0, "--test-per-class", min=0, help="Test images per class (test/)."),
    hard: bool = typer.Option(False, "--hard", help="A harder set for comparing recipes on small data: "
                              "rotated shapes, clutter, gradients, colour casts and noise."),
):
    """Write a synthetic data set of coloured shapes. Circles, squares, triangles, crosses..."""
    from ..data.synthetic import write_shapes

    counts = write_shapes(directory, per_class, size, classes, seed, val_per_class, test_per_class, hard)
    typer.echo(f"wrote {', '.join(f'{n} {k}' for k, n in counts.items())} images to {directory}")


@command
def split(
    data: Path = typer.Argument(..., metavar="DATA", help="A class folder (DATA/<class>/<image>) or a label file."),
    out: Path = typer.Option(..., "--out", help="The label file to write (.csv: path, label, split)."),
    val: float = typer.Option(0.1, "--val", help="Share of each class (multi-label: of each label) for validation."),
    test: float = typer.Option(0.0, "--test", help="Share of each class (multi-label: of each label) for testing."),
    seed: int = typer.Option(0, "--seed", min=0, help="The same seed gives the same rows."),
    group: Optional[str] = typer.Option(None, "--group", help="A label file's column: rows with the same "
                                        "value (one subject) stay in one split."),
    group_by_folder: bool = typer.Option(False, "--group-by-folder", help="Images in the same folder stay in one split."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    separator: str = typer.Option("|", "--label-separator", help="Between the labels of one cell (dog|cat)."),
    columns: Optional[str] = typer.Option(None, "--columns", metavar="'{path: P, label: L}'",
                                          help="A label file's column names, as data.columns in a training config."),
):
    """Split images into train / val / test, stratified per label. Writes a label file to train from."""
    from ..commands.split import split as run_split
    from ..config import parse_columns

    counts, classes, notes, per_label = run_split(data, out, val, test, seed, group, group_by_folder, force,
                                                  columns and parse_columns(columns), separator)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    what = f"{classes} labels, multi-label, stratified per label" if per_label else f"{classes} classes"
    typer.echo(f"wrote {out}: {', '.join(f'{n:,} {k}' for k, n in counts.items())} images, {what} (seed {seed})")
    if per_label:
        width = max(len("label"), *(len(x) for x in per_label))
        typer.echo(f"  {'label':<{width}}  {'train':>7}  {'val':>7}  {'test':>7}")
        for x, n in per_label.items():
            typer.echo(f"  {x:<{width}}  {n['train']:>7,}  {n['val']:>7,}  {n['test']:>7,}")
    typer.echo(f"next: set data.train: {out} in a training config (its val rows validate; evaluate "
               f"--split test scores the test rows)")


@command
def init(
    directory: Path = typer.Argument(..., help="Folder to write model.yaml and train.yaml into."),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist."),
    data: Optional[Path] = typer.Option(None, "--data", help="Fit the configs to this folder of images "
                                        "(class sub-folders, or train/ and val/ splits) or label file "
                                        "(.csv, .tsv, .jsonl; single- or multi-label)."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="NAME", help="With --data: fine-tune "
                                             "this pretrained network (cnncli pretrained list) on the folder."),
):
    """Write a starter architecture and training config. With --data, fitted to your images."""
    from ..commands.init import write_fitted, write_starter

    if pretrained is not None:
        if data is None:
            raise CnnError(f"--pretrained {pretrained} fits a config to a folder of images: add --data FOLDER")
        from ..commands.init_pretrained import write_pretrained
        written, why = write_pretrained(directory, data, pretrained, force)
        for line in why:
            typer.echo(line)
    elif data is None:
        written = write_starter(directory, force)
    else:
        from ..data.labels import is_label_file
        if is_label_file(data):
            from ..commands.init_labels import write_fitted_labels as write_fitted
        written, why = write_fitted(directory, data, force)
        for line in why:
            typer.echo(line)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: cnncli {'train' if data else 'inspect'} {directory / 'train.yaml'}")


@command(allow_extra_args=True)
def export(
    ctx: typer.Context,
    checkpoint_file: Path = typer.Argument(..., metavar="CHECKPOINT", help="A best.npz or last.npz."),
    out: Path = typer.Argument(..., metavar="OUT.onnx", help="The ONNX file to write."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset to write (default 17; 13 or newer)."),
    logits: bool = typer.Option(False, "--logits", help="Output the scores before the softmax / sigmoid "
                                "(named 'logits') instead of class probabilities."),
    run_check: bool = typer.Option(False, "--check", help="Run the file in ONNX Runtime on random inputs and "
                                   "compare with cnncli; exit 1 if they differ by more than 1e-5."),
    check_images: List[str] = typer.Option([], "--check-images", metavar="PATH...", help="Also compare on "
                                           "these image files, folders or globs, read as predict reads them "
                                           "(implies --check)."),
):
    """Write the checkpoint as one ONNX file. Pixels in [0, 1] in, class probabilities out; class
    names and preprocessing in its metadata."""
    from ..export import DEFAULT_OPSET, check, export as run_export, find_images, require_runtime

    if ctx.args and not check_images:
        raise CnnError(f"unexpected argument {ctx.args[0]!r}: export takes CHECKPOINT and OUT.onnx; "
                       "image paths go after --check-images")
    images = [*check_images, *ctx.args]
    if run_check or images:  # what --check needs, before anything is written
        require_runtime()
        find_images(images)
    info = run_export(checkpoint_file, out, DEFAULT_OPSET if opset is None else opset, logits)
    c, h, w = info.input_shape
    typer.echo(f"wrote {info.path} ({info.bytes / 1e6:.1f} MB, opset {info.opset}): pixels N×{c}×{h}×{w} "
               f"in [0, 1] → {info.output} N×{info.width}; {info.nodes} nodes: {', '.join(info.operators)}")
    if not (run_check or images):
        return
    report = check(checkpoint_file, out, images)
    limit = f"{report.tolerance:g}" + (f" × {report.scale:.3g}, the largest logit" if report.scale > 1 else "")
    inputs = f"{report.random} random inputs" + (f" and {report.images} images" if report.images else "")
    typer.echo(f"ONNX Runtime {report.runtime} against cnncli on {inputs}: largest difference "
               f"{report.max_diff:.2g} (limit {limit})")
    for path, reason in report.skipped:   # as predict lists them: each once, on stderr
        typer.echo(f"skipped {path}: {reason}", err=True)
    if not report.ok:
        typer.echo(f"error: {out} differs from cnncli by {report.max_diff:.2g}, over the limit: a bug in "
                   "cnncli's exporter, please report it (the file is left for inspection)", err=True)
        raise typer.Exit(1)


@command(name="import")
def import_(
    model_file: Path = typer.Argument(..., metavar="MODEL.onnx", help="An ONNX image classifier."),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="Folder for model.yaml and model.npz (created if missing)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Class names, one per line (default: the "
                                           "model's metadata, else class_0, class_1, ...)."),
    input_size: Optional[Tuple[int, int, int]] = typer.Option(None, "--input", metavar="H W C", help="The input "
                                                               "size, where the graph leaves it dynamic."),
    mean: Optional[List[float]] = typer.Option(None, "--mean", help="What the graph's input expects: x = (pixel / 255 "
                                               "- mean) / std; one number, or one per channel (repeat). Default 0."),
    std: Optional[List[float]] = typer.Option(None, "--std", help="See --mean. Default 1."),
    run_check: bool = typer.Option(False, "--check", help="Run the file in ONNX Runtime on random inputs and compare "
                                   "with cnncli; exit 1 if they differ by more than 1e-4 of the output's scale."),
    force: bool = typer.Option(False, "--force", help="Replace model.yaml and model.npz in OUT_DIR."),
):
    """Read an ONNX classifier into a cnncli model. Writes OUT_DIR/model.yaml and OUT_DIR/model.npz."""
    from ..onnx_import import compare, import_onnx
    from .render import print_import

    if run_check:
        from ..export import require_runtime
        require_runtime()
    imported, yaml_path, ckpt_path = import_onnx(model_file, out_dir, classes, input_size, mean or None,
                                                 std or None, force)
    print_import(imported, yaml_path, ckpt_path)
    if not run_check:
        return
    checked = compare(imported, model_file)
    typer.echo(f"ONNX Runtime {checked.runtime} against cnncli on {checked.inputs} random inputs: largest "
               f"difference {checked.max_diff:.2g} (limit {checked.tolerance:g}"
               + (f" x {checked.scale:.3g}, the largest output)" if checked.scale > 1 else ")"))
    if not checked.ok:
        typer.echo(f"error: the imported model differs from {model_file} by {checked.max_diff:.2g}, over the "
                   "limit (the files are left for inspection)", err=True)
        raise typer.Exit(1)


from .audit import audit  # noqa: E402  (its own file: app.py stays under the 500-line limit)
command(audit)

pretrained_app = typer.Typer(no_args_is_help=True, context_settings={"max_content_width": 120},
                              help="ImageNet-trained networks (pip install 'cnncli[pretrained]').")
app.add_typer(pretrained_app, name="pretrained")


command(pretrained.listing, on=pretrained_app, name="list")
command(pretrained.get, on=pretrained_app, name="get")


def run():
    app()
