"""Rich tables for what the commands print."""

from rich.console import Console
from rich.table import Table


def make_console(**kw):
    """A console at least 120 columns wide when output is piped, so tables do not wrap."""
    console = Console(**kw)
    if not console.is_terminal:
        console = Console(width=max(console.width, 120), **kw)
    return console


def human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def layer_table(summary, title):
    table = Table(title=title, title_justify="left", header_style="bold")
    for name, justify in (("#", "right"), ("layer", "left"), ("filters / window", "left"),
                          ("activation", "left"), ("output h×w×c", "right"), ("params", "right"),
                          ("MACs", "right"), ("values", "right"), ("RF", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_row("", "input", "", "", "×".join(map(str, summary["input_shape"])), "", "", "", "")
    for r in summary["layers"]:
        rf = r["receptive_field"]
        table.add_row(str(r["index"]), r["type"], r["config"],
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
        f"parameters      {s['total_params']:,} trainable"
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
