"""`cnncli explain`: what a checkpoint looks at. For each image, Grad-CAM of the predicted (or a
named) class at one layer, and one PNG with the input, the heatmap over it, the feature maps of
the conv layers and the first layer's filters."""

from pathlib import Path

import numpy as np

from ..data.cache import decode_files
from ..errors import CnnError
from ..files import output_folder
from ..engine.multilabel_metrics import present_labels
from ..model.checkpoint import thresholds_of
from ..model.checkpoint import temperature
from ..model.gradcam import check_layer, default_layer, grad_cam, is_spatial, peak
from .predict import collect, load

MAX_CONV_ROWS = 6   # feature-map rows in a picture; deeper nets show this many, evenly spaced


def conv_layers(model):
    """Indices of the conv layers whose output is a spatial map."""
    return [i for i, layer in enumerate(model.layers) if layer.has_filters and is_spatial(layer)]


def shown_conv_layers(model, limit=MAX_CONV_ROWS):
    """At most `limit` conv layers, the first and the last among them, evenly spaced."""
    convs = conv_layers(model)
    if len(convs) <= limit:
        return convs
    picks = np.round(np.linspace(0, len(convs) - 1, limit)).astype(int)
    return [convs[k] for k in sorted(set(picks.tolist()))]


def class_index(classes, name, where="--class"):
    if name is None:
        return None
    if name not in classes:
        raise CnnError(f"{where} {name!r} is not one of the checkpoint's classes: {', '.join(classes)}")
    return classes.index(name)


def layer_label(model, i):
    layer = model.layers[i]
    return f"layers[{i}] {layer.kind} {'x'.join(map(str, layer.out_shape))}"


def output_names(files):
    """One PNG name per image: its file name's stem, made unique with -2, -3... in order."""
    seen, names = {}, []
    for f in files:
        stem = Path(f).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}-{seen[stem]}.png")
    return names


def explain(ckpt_path, paths, out, class_name=None, layer=None, batch_size=32, workers=None, draw=True):
    """-> [{"path", "prediction": {class, prob}, "explained": {class, prob}, "layer", "peak":
    {y, x, y_fraction, x_fraction}, "png"}] or {"path", "error"}: the paths that matched nothing
    first, then every image in the order found. Writes out/<stem>.png per image when draw."""
    from ..kernels.augment import prepare_batch

    loaded = load(ckpt_path)
    model, classes = loaded.model, loaded.classes
    target = class_index(classes, class_name)
    layer = default_layer(model) if layer is None else check_layer(model, layer)
    files, missing = collect(paths)
    results = [{"path": p, "error": r} for p, r in missing]
    images, ok = [], []
    for i, item in decode_files(files, loaded.shape, loaded.resize, workers, None):
        if isinstance(item, str):
            results.append({"path": str(files[i]), "error": item})
        else:
            images.append(item[0])   # (array, what it was before conversion)
            ok.append(i)
    out = output_folder(out) if draw and images else Path(out)
    shown = shown_conv_layers(model)
    names = output_names([files[i] for i in ok])
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size])
        x = prepare_batch(batch, loaded.mean, loaded.std)
        wanted = None if target is None else np.full(len(batch), target)
        e = grad_cam(model, x, layer, wanted, keep=shown, temperature=temperature(loaded.meta))
        for k in range(len(batch)):
            n = start + k
            probs = e.probs[k]
            pred, cls = int(probs.argmax()), int(e.classes[k])
            y, x_ = peak(e.heatmaps[k])
            h, w = e.heatmaps.shape[1:]
            result = {"path": str(files[ok[n]]),
                      "prediction": {"class": classes[pred], "prob": float(probs[pred])},
                      "explained": {"class": classes[cls], "prob": float(probs[cls])},
                      "layer": layer,
                      "peak": {"y": y, "x": x_, "y_fraction": (y + 0.5) / h, "x_fraction": (x_ + 0.5) / w}}
            if model.head == "multilabel":   # every label over its threshold: what --class can name
                result["labels"] = present_labels(classes, thresholds_of(loaded.meta, len(classes)), probs[None])[0]["labels"]
            if draw:
                result["png"] = str(out / names[n])
                _draw(result, batch[k], e, k, model, classes, shown)
            results.append(result)
    order = {str(f): n for n, f in enumerate(files)}
    results.sort(key=lambda r: order.get(r["path"], -1))
    return results


def _draw(result, image, e, k, model, classes, shown):
    from ..viz.explain_figure import MAPS_PER_LAYER, draw_explanation
    from ..viz.figure import save_png

    pred, expl = result["prediction"], result["explained"]
    heading = f"Grad-CAM: why '{expl['class']}'"
    title = (f"{Path(result['path']).name}: predicted {pred['class']} ({pred['prob']:.1%}); heatmap from "
             f"{layer_label(model, e.layer)}")
    maps = [(f"feature maps of {layer_label(model, i)} ({min(MAPS_PER_LAYER, model.layers[i].out_shape[2])} most active of "
             f"{model.layers[i].out_shape[2]}, one colour scale per row)", e.maps[i][k]) for i in shown]
    convs = conv_layers(model)
    filters = model.layers[convs[0]].export()["weight"] if convs else None
    y, x = result["peak"]["y"], result["peak"]["x"]
    fig = draw_explanation(image, e.heatmaps[k], (y, x), heading, e.probs[k], classes,
                           classes.index(expl["class"]), maps, filters, title)
    save_png(fig, result["png"], "explanation")
