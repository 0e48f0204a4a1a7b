"""Rich tables for what the commands print."""

from rich.console import Console
from rich.table import Table


PIPED_WIDTH = 1000  # piped or redirected output is never cut to a terminal's width


class PipeConsole(Console):
    """A console whose closed pipe is a BrokenPipeError, which the CLI ends with exit status 0
    (rich's own answer is SystemExit(1): `cnncli evaluate ... | head -1` failed)."""

    def on_broken_pipe(self):
        self.quiet = True
        raise BrokenPipeError


def make_console(**kw):
    """A console for tables: as wide as the table needs when output is piped, so no cell is cut
    to '…' in a file or a pipe; the terminal's width on a terminal."""
    console = PipeConsole(**kw)
    if not console.is_terminal:
        console = PipeConsole(width=PIPED_WIDTH, **kw)
    return console


def human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def from_cell(row):
    """The layers a row reads; blank for the default, the previous layer (or the input for the first)."""
    src = row["from"]
    default = ["input"] if row["index"] == 0 else [row["index"] - 1]
    return "" if src == default else ",".join(map(str, src))


def layer_table(summary, title):
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in (("#", "right"), ("layer", "left"), ("from", "right"), ("filters / window", "left"),
                          ("activation", "left"), ("output h×w×c", "right"), ("params", "right"),
                          ("MACs", "right"), ("values", "right"), ("RF", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_row("", "input", "", "", "", "×".join(map(str, summary["input_shape"])), "", "", "", "")
    for r in summary["layers"]:
        rf = r["receptive_field"]
        table.add_row(str(r["index"]), r["type"] + (" (frozen)" if r.get("frozen") else ""), from_cell(r), r["config"],
                      "" if r["activation"] == "linear" else r["activation"],
                      "×".join(map(str, r["output_shape"])), f"{r['params']:,}",
                      human(r["macs"]) if r["macs"] else "", f"{r['activation_size']:,}",
                      f"{rf[0]}×{rf[1]}" if rf else "all")
    return table


def print_summary(summary, title, console=None):
    console = console or make_console()
    console.print(layer_table(summary, title))
    s = summary
    lines = [
        (f"parameters      {s['total_params']:,} trainable" if s["trainable_params"] == s["total_params"] else
         f"parameters      {s['trainable_params']:,} trainable of {s['total_params']:,} (train.freeze holds the "
         f"rest fixed)")
        + (f" + {s['non_trainable_params']:,} running statistics" if s["non_trainable_params"] else ""),
        f"model size      {s['model_mb']:.2f} MB (float32)",
        f"multiply-adds   {s['total_macs']:,} per image ({human(s['total_macs'])}); "
        f"training ≈ 3× that, ×2 for FLOPs",
        f"output          {s['classes']} classes, {s['output']}",
    ]
    if "train_memory_mb" in s:
        lines.append(f"training memory ≈ {s['train_memory_mb']:.0f} MB at batch size {s['batch_size']} "
                     "(weights, gradients, optimizer state, activations; an estimate)")
    for line in lines:
        console.print(line, highlight=False)


def print_predictions(results, fmt):
    import csv
    import json
    import sys

    if fmt == "json":
        for r in results:
            print(json.dumps(r))
        return
    if any("scores" in r for r in results):
        return print_label_predictions(results, fmt)
    k = max((len(r["top"]) for r in results if "top" in r), default=0)
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        decided = any("decision" in r for r in results)   # predict --reject: a last column
        w.writerow(["path"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "prob")] + ["error"]
                   + ["decision"] * decided)
        for r in results:
            cells = [x for t in r.get("top", []) for x in (t["class"], f"{t['prob']:.6f}")]
            w.writerow([r["path"]] + cells + [""] * (2 * k - len(cells)) + [r.get("error", "")]
                       + [r.get("decision", "")] * decided)
        return
    if not any("top" in r for r in results):
        return
    table = Table(header_style="bold")
    table.add_column("image", overflow="fold")
    decided = any("decision" in r for r in results)
    if decided:
        table.add_column("decision")
    for i in range(1, k + 1):
        table.add_column(f"#{i}")
    for r in results:
        if "top" in r:  # failures go to stderr, once (cli.predict)
            table.add_row(r["path"], *([r["decision"]] if decided else []),
                          *[f"{t['class']} {t['prob']:.1%}" for t in r["top"]])
    make_console().print(table)


def print_label_predictions(results, fmt):
    """Multi-label predictions: a table of the labels over their thresholds, or CSV of every score."""
    import csv
    import sys

    names = list(next(r["scores"] for r in results if "scores" in r))
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["path", "labels"] + names + ["error"])
        for r in results:
            scores = [f"{r['scores'][c]:.6f}" for c in names] if "scores" in r else [""] * len(names)
            w.writerow([r["path"], "|".join(r.get("labels", []))] + scores + [r.get("error", "")])
        return
    table = Table(header_style="bold")
    table.add_column("image", overflow="fold")
    table.add_column("labels over their thresholds")
    for r in results:
        if "scores" in r:
            table.add_row(r["path"], ", ".join(f"{c} {r['scores'][c]:.1%}" for c in r["labels"]) or "(none)")
    make_console().print(table)


def print_label_evaluation(rep):
    console = make_console()
    m = "n/a" if rep["map"] is None else f"{rep['map']:.4f}"
    console.print(f"{rep['images']} images in {rep['data']}: mAP {m} over {rep['map_labels']} labels, exact match "
                  f"{rep['exact_match']:.2%}, Hamming accuracy {rep['hamming_accuracy']:.2%}, loss {rep['loss']:.4f}",
                  highlight=False)
    if rep["no_positive"]:
        console.print(f"left out of mAP (no positive image): {', '.join(rep['no_positive'])}", highlight=False)
    table = Table(title="per label (at the checkpoint's thresholds)", title_justify="left", header_style="bold")
    for name in ("label", "precision", "recall", "F1", "AP", "support", "threshold"):
        table.add_column(name, justify="left" if name == "label" else "right")
    for c in rep["per_label"]:
        table.add_row(c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                      "-" if c["ap"] is None else f"{c['ap']:.3f}", str(c["support"]), f"{c['threshold']:.3f}")
    console.print(table)
    if rep["skipped"]:
        console.print(f"skipped {len(rep['skipped'])} unreadable file(s), first: "
                      f"{rep['skipped'][0]['path']}: {rep['skipped'][0]['reason']}", highlight=False)


def print_evaluation(rep):
    if rep.get("multilabel"):
        return print_label_evaluation(rep)
    console = make_console()
    console.print(f"{rep['images']} images in {rep['data']}: accuracy {rep['accuracy']:.2%}, "
                  f"top-{rep['top_k']} {rep['top_k_accuracy']:.2%}, loss {rep['loss']:.4f}", highlight=False)
    if rep.get("tta"):
        console.print(f"test-time augmentation: {rep['tta']}", highlight=False)
    table = Table(title="per class", title_justify="left", header_style="bold")
    for name in ("class", "precision", "recall", "F1", "support"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for c in rep["per_class"]:
        table.add_row(c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    console.print(table)
    conf = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left",
                 header_style="bold")
    conf.add_column("true \\ predicted")
    for name in rep["classes"]:
        conf.add_column(name, justify="right")
    for name, row in zip(rep["classes"], rep["confusion"]):
        conf.add_row(name, *[str(v) for v in row])
    console.print(conf)
    if rep.get("converted"):
        console.print(f"converted: {rep['converted']}", highlight=False)
    if rep["skipped"]:
        console.print(f"skipped {len(rep['skipped'])} unreadable file(s), first: "
                      f"{rep['skipped'][0]['path']}: {rep['skipped'][0]['reason']}", highlight=False)


def print_checkpoint(path, as_json=False, batch_size=None):
    import json

    from ..model.checkpoint import CheckpointError, load
    from ..config import ConfigError, parse_architecture
    from ..model.summary import layer_table

    _, meta = load(path)
    try:
        arch = parse_architecture(meta["architecture"], f"{path} (architecture)")
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    summary = layer_table(arch, batch_size)
    info = {"classes": meta["classes"], "epoch": meta.get("epoch"), "metrics": meta.get("metrics"),
            "preprocessing": meta["preprocessing"], "cnncli_version": meta.get("cnncli_version"),
            "format_version": meta.get("format_version"), "calibration": meta.get("calibration")}
    if as_json:
        print(json.dumps({**summary, "checkpoint": info}, indent=2))
        return
    console = make_console()
    print_summary(summary, str(path), console)
    pre = meta["preprocessing"]
    names = meta["classes"]
    shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:10]) + f", ... ({len(names) - 10:,} more)"
    console.print(f"classes         {len(names):,}: {shown}", highlight=False)
    console.print(f"epoch           {meta.get('epoch')}  (saved by cnncli {meta.get('cnncli_version')}, "
                  f"format {meta.get('format_version')})", highlight=False)
    m = meta.get("metrics") or {}
    if m:
        console.print("metrics         " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in m.items() if v is not None), highlight=False)
    console.print(f"preprocessing   {pre.get('resize_rule', pre.get('resize'))}; mean "
                  f"{[round(v, 4) for v in pre['mean']]}, std {[round(v, 4) for v in pre['std']]}", highlight=False)
    c = meta.get("calibration")
    if c:
        console.print(f"calibration     temperature {c['temperature']:.4g}, fitted on {c.get('data')} "
                      f"({c.get('images')} images); unknown score: {c.get('unknown_score')}", highlight=False)


def print_import(imported, yaml_path, ckpt_path):
    """What `cnncli import` did: operators seen, layers made, what was folded away, parameters."""
    import typer

    def counts(c):
        return ", ".join(f"{k} {n}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    src, model, pre = imported.source, imported.structure, imported.meta["preprocessing"]
    h, w, c = src.shape
    typer.echo(f"read {sum(imported.operators.values())} nodes (opset {src.opset}): {counts(imported.operators)}")
    typer.echo(f"made {len(model.layers)} layers: {counts(imported.layers)}")
    if imported.folded:
        typer.echo(f"folded away: {counts(imported.folded)}")
    head = "its own" if src.head_found else "added (the graph's output is taken as logits)"
    buffers = sum(layer.n_buffers() for layer in model.layers)
    typer.echo(f"input {h}x{w}x{c}, {model.n_classes} classes ({', '.join(imported.meta['classes'][:4])}"
               f"{', ...' if model.n_classes > 4 else ''}); {src.head} head {head}")
    typer.echo(f"parameters: {model.n_params():,} trainable + {buffers:,} batchnorm statistics"
               f"; preprocessing: x = (pixel / 255 - mean) "
               f"/ std, mean {_short(pre['mean'])}, std {_short(pre['std'])}")
    typer.echo(f"wrote {yaml_path} and {ckpt_path} in {imported.seconds:.1f}s")


def _short(values):
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def print_networks(rows):
    table = Table(header_style="bold")
    for col, justify in (("name", "left"), ("parameters", "right"), ("ImageNet top-1", "right"),
                         ("input", "left"), ("licence", "left"), ("weights", "left")):
        table.add_column(col, justify=justify)
    for r in rows:
        h, w, c = r["input"]
        table.add_row(r["name"], f"{r['parameters']:,}", f"{r['imagenet_top1']:.1f}% (published)", f"{h}x{w}x{c}",
                      r["licence"], "installed" if r["installed"] else "pip install 'cnncli[pretrained]'")
    make_console().print(table)
