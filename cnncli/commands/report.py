"""`cnncli report RUN_DIR`: one self-contained report.html for a training run: final metrics,
the curves, the confusion matrix and per-class scores of best.npz on the validation images, the
most confident mistakes and Grad-CAM for a few of them, the layer table and the config."""

import csv
import time
from pathlib import Path

import numpy as np
import yaml

from ..errors import CnnError
from ..files import write_text_atomic

CAM_MISTAKES = 6   # mistakes shown with Grad-CAM of the predicted and of the true class


def read_metrics(path):
    """metrics.csv -> rows as dicts, numbers as numbers and empty cells as None."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise CnnError(f"cannot read {path} ({e.strerror}): is this a run folder?") from None
    out = []
    for r in rows:
        try:
            out.append({k: (None if v in ("", None) else int(v) if k == "epoch" else float(v)) for k, v in r.items()})
        except ValueError:
            raise CnnError(f"{path}: a row is not numbers ({r}): the file is damaged") from None
    return out


def run_config(run_dir):
    """-> (config.yaml's text, RunConfig) of a run folder."""
    from .. import config

    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise CnnError(f"{run_dir}: no such run folder (give the output folder of `cnncli train`)")
    if not path.exists():
        raise CnnError(f"{run_dir} has no config.yaml: give the output folder of `cnncli train`")
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise CnnError(f"{path}: not a training config")
    return text, config.parse_run(raw, str(path), run_dir)


def checkpoint_of(run_dir):
    for name in ("best.npz", "last.npz"):
        if (run_dir / name).exists():
            return run_dir / name
    raise CnnError(f"{run_dir} has no best.npz or last.npz: no epoch finished yet")


def score_validation(ckpt, cfg, data):
    """The images to judge the checkpoint on: `data`, else the run's validation folder, else the
    training label file's val rows, else the images that data.val_split held out of the training
    folder or of the label file's train rows (the same split as training's).
    -> (Scored, description)."""
    from ..data.dataset import stratified_split
    from .evaluate import score_folder

    from ..data.folder import test_beside

    cache = cfg.data.cache_dir
    if data is not None:
        return score_folder(ckpt, data, cache), f"{data}"
    test = test_beside(cfg.data.train) if cfg.data.train else None
    if test is not None:
        return score_folder(ckpt, test, cache), f"{test} (the test folder beside the training folder: images " \
            "training never saw, nor chose best.npz on)"
    if cfg.data.val:
        return score_folder(ckpt, cfg.data.val, cache), f"{cfg.data.val} (the run's validation folder)"
    if not cfg.data.train:
        raise CnnError("the run's config names no data: give the images to evaluate with --data DIR")
    rows = _split_rows(cfg)   # a label file's split column: training took its val rows, else its train rows
    if "val" in rows:
        return (score_folder(ckpt, cfg.data.train, cache, split="val"),
                f"{cfg.data.train}: its val rows (best.npz was chosen on them, so this figure flatters the model: "
                "a separate test folder, --data DIR, gives the honest one)")
    split = cfg.data.val_split

    def held_out(labels):
        return stratified_split(labels, split, cfg.train.seed)[1]
    scored = score_folder(ckpt, cfg.data.train, cache, select=held_out, split="train" if rows else None)
    return scored, (f"{cfg.data.train}: the {len(scored.labels)} images data.val_split {split} held out. They come "
                    "from the same source as the training images, and best.npz was chosen on them, so this figure "
                    "flatters the model: a separate test folder (--data DIR) gives the honest one")


def _split_rows(cfg):
    """The splits in data.train's split column (a label file's), else an empty set."""
    import dataclasses

    from ..data.labels import is_label_file, read_table

    if not is_label_file(cfg.data.train):
        return set()
    table = read_table(cfg.data.train, dataclasses.asdict(cfg.data.columns))
    return {r.split for r in table.rows} if table.has_split else set()


def build_report(run_dir, data=None):
    """Write run_dir/report.html -> (its path, seconds taken)."""
    from .evaluate import add_calibration, summarize_scores
    from ..model.summary import layer_table
    from ..viz import html
    from ..viz.confusion import draw_confusion
    from ..viz.curves import draw_curves
    from ..viz.figure import png_bytes
    from ..viz.grids import draw_mistakes

    start = time.perf_counter()
    run_dir = Path(run_dir)
    text, cfg = run_config(run_dir)
    history = read_metrics(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else []
    ckpt = checkpoint_of(run_dir)
    from . import report_multilabel
    if report_multilabel.is_multilabel(cfg):
        return _multilabel_report(run_dir, text, cfg, history, ckpt, data, start)
    scored, where = score_validation(ckpt, cfg, data)
    rep = add_calibration(summarize_scores(scored, ckpt), scored)
    classes = rep["classes"]
    meta = scored.loaded.meta
    best_epoch = meta.get("epoch")
    sections = [("Final metrics", _metrics(html, history, rep, ckpt, best_epoch, where))]
    curves = (html.image(png_bytes(draw_curves(history, f"{run_dir}", best_epoch if ckpt.name == "best.npz" else None)),
                         "training curves", "curves") if history else '<p class="note">no epoch recorded yet</p>')
    sections.append(("Training curves", curves))
    sections.append(("Confusion matrix", html.image(png_bytes(draw_confusion(
        rep["confusion"], classes, f"{ckpt.name} on {rep['images']} images, accuracy {rep['accuracy']:.1%}")),
        "confusion matrix", "confusion")))
    sections.append(("Per class", html.table(
        ["class", "precision", "recall", "F1", "support"],
        [[c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", c["support"]]
         for c in rep["per_class"]], numeric=(1, 2, 3, 4), id_="per-class")))
    sections.append(("Calibration", _calibration(html, rep)))
    sections.append(("Most confident mistakes", html.image(png_bytes(draw_mistakes(
        scored.images, scored.labels, scored.probs, classes)), "most confident mistakes", "mistakes")))
    sections.append(("What the network looked at in its mistakes", _cams(html, scored, classes)))
    summary = layer_table(cfg.model)
    sections.append(("Layers", _layers(html, summary)))
    sections.append(("Config", f"<pre>{html.esc(text)}</pre>"))
    page = html.page(f"cnncli report: {run_dir}",
                     f"{ckpt.name} (epoch {best_epoch}) evaluated on {where}; written "
                     f"{time.strftime('%Y-%m-%d %H:%M')}", sections)
    out = run_dir / "report.html"
    write_text_atomic(out, page, "report")
    return out, time.perf_counter() - start


def _multilabel_report(run_dir, text, cfg, history, ckpt, data, start):
    from . import report_multilabel
    from .evaluate import summarize_scores
    from ..model.summary import layer_table
    from ..viz import html
    from ..viz.curves import draw_curves
    from ..viz.figure import png_bytes

    scored, where = report_multilabel.score_validation(ckpt, cfg, data)
    rep = summarize_scores(scored, ckpt)
    best_epoch = scored.loaded.meta.get("epoch")
    sections = report_multilabel.sections(html, rep, ckpt, best_epoch, where)
    if history:
        sections.insert(1, ("Training curves", html.image(png_bytes(draw_curves(
            history, f"{run_dir}", best_epoch if ckpt.name == "best.npz" else None)), "training curves", "curves")))
    sections += [("Layers", _layers(html, layer_table(cfg.model))), ("Config", f"<pre>{html.esc(text)}</pre>")]
    page = html.page(f"cnncli report: {run_dir}", f"{ckpt.name} (epoch {best_epoch}) evaluated on {where}; written "
                     f"{time.strftime('%Y-%m-%d %H:%M')}", sections)
    out = run_dir / "report.html"
    write_text_atomic(out, page, "report")
    return out, time.perf_counter() - start


def _metrics(html, history, rep, ckpt, best_epoch, where):
    last = history[-1] if history else {}
    items = [(f"{rep['accuracy']:.1%}", f"accuracy of {ckpt.name}"), (f"{rep['loss']:.4f}", "loss (cross-entropy)")]
    if rep["top_k"] < len(rep["classes"]):    # top-k of all the classes is 100% by definition
        items.append((f"{rep['top_k_accuracy']:.1%}", f"top-{rep['top_k']} accuracy"))
    items += [(f"{rep['images']:,}", "images"), (f"{best_epoch}", f"epoch of {ckpt.name}")]
    rows = [[k, "" if last.get(k) is None else (f"{last[k]:.4g}" if isinstance(last[k], float) else last[k])]
            for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s")]
    total = sum(r.get("seconds") or 0 for r in history)
    return (html.cards(items) + f'<p class="note">{html.esc(ckpt.name)} scored on {html.esc(where)}. '
            f"The last epoch as training recorded it ({len(history)} epochs, {total:.1f} s of training):</p>"
            + html.table(["metric", "value"], rows, numeric=(1,), id_="last-epoch"))


def _calibration(html, rep):
    """The reliability diagram before and after the checkpoint's temperature, and what it was fitted on."""
    from ..viz.figure import png_bytes
    from ..viz.reliability import draw_reliability

    c = rep["calibration"]
    fitted = (f"fitted on {html.esc(c['fitted_on'])}" if c["fitted_on"] else
              "none fitted: cnncli calibrate CHECKPOINT VAL_DATA fits one")
    return (f'<p class="note">Temperature {c["temperature"]:.3f} ({fitted}): ECE {c["ece"][0]:.2%} &rarr; '
            f'{c["ece"][1]:.2%}, NLL {c["nll"][0]:.4f} &rarr; {c["nll"][1]:.4f} (15 equal-width bins of the '
            "max-probability).</p>" + html.image(png_bytes(draw_reliability(c, "reliability")),
                                                 "reliability diagram", "reliability"))


def _cams(html, scored, classes):
    from ..model.gradcam import grad_cam, peak
    from ..kernels.augment import prepare_batch
    from ..viz.figure import png_bytes
    from ..viz.grids import draw_cam_rows, most_confident_mistakes

    idx = most_confident_mistakes(scored.labels, scored.probs, CAM_MISTAKES)
    if len(idx) == 0:
        return '<p class="note">no mistakes to explain</p>'
    loaded = scored.loaded
    images = np.asarray(scored.images[idx] if isinstance(scored.images, np.ndarray) else [scored.images[i] for i in idx])
    x = prepare_batch(images, loaded.mean, loaded.std)
    pred, true = scored.probs[idx].argmax(axis=1), scored.labels[idx]
    as_pred = grad_cam(loaded.model, x, classes=pred)
    as_true = grad_cam(loaded.model, x, layer=as_pred.layer, classes=true)
    rows = [(images[k], [(f"why '{classes[pred[k]]}' ({scored.probs[i, pred[k]]:.0%})", as_pred.heatmaps[k],
                          peak(as_pred.heatmaps[k])),
                         (f"evidence for '{classes[true[k]]}'", as_true.heatmaps[k], peak(as_true.heatmaps[k]))])
            for k, i in enumerate(idx)]
    layer = loaded.model.layers[as_pred.layer]
    note = (f'<p class="note">Grad-CAM at layers[{as_pred.layer}] ({html.esc(layer.kind)}, '
            f"{'x'.join(map(str, layer.out_shape))}): red is where the score of the named class comes from.</p>")
    return note + html.image(png_bytes(draw_cam_rows(rows, "Grad-CAM of the most confident mistakes")),
                             "Grad-CAM of mistakes", "cams")


def _layers(html, s):
    rows = [["", "input", "", "", "x".join(map(str, s["input_shape"])), "", ""]]
    for r in s["layers"]:
        rows.append([r["index"], r["type"], ",".join(map(str, r["from"])), r["config"],
                     "x".join(map(str, r["output_shape"])), f"{r['params']:,}", f"{r['macs']:,}" if r["macs"] else ""])
    return (html.table(["#", "layer", "from", "filters / window", "output h x w x c", "params", "MACs"], rows,
                       numeric=(0, 5, 6), id_="layers")
            + f'<p class="note">{s["total_params"]:,} parameters; {s["total_macs"]:,} multiply-adds per image</p>')
