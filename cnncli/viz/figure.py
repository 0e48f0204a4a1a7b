"""matplotlib on the Agg canvas, imported only when a picture is drawn.

Figures come from matplotlib.figure.Figure with an explicit FigureCanvasAgg, never from pyplot:
no global backend is chosen or changed (a notebook that imports cnncli keeps its own) and a
figure can be drawn on a background thread. One look for every picture: the colours and sizes
below."""

import io

from ..files import write_atomic

TRAIN, VAL = "#1f77b4", "#d95f02"   # blue for training, orange for validation, in every picture
GOOD, BAD = "#1a9850", "#d73027"    # a right and a wrong prediction
MUTED = "#777777"
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold", "axes.labelsize": 9,
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
         "legend.fontsize": 8, "legend.frameon": False, "figure.facecolor": "white",
         "savefig.facecolor": "white", "image.interpolation": "nearest"}


def new_figure(width, height, dpi=100, layout="constrained"):
    """A Figure (inches) on an Agg canvas. layout None: the caller places the axes (faster:
    constrained layout draws the figure an extra time to measure it)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def preload():
    """Import what drawing a figure needs (0.5 s of CPU), ahead of the first drawing."""
    import importlib

    for name in ("matplotlib.backends.backend_agg", "matplotlib.figure", "matplotlib.ticker"):
        importlib.import_module(name)


def styled():
    """with styled(): ... : the look above for the artists created inside (rcParams are read when
    an artist is made)."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def png_bytes(fig):
    buf = io.BytesIO()
    with styled():
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def save_png(fig, path, what="picture"):
    """Draw fig into path atomically (temporary file, fsync, rename) -> the PNG's bytes."""
    data = png_bytes(fig)
    write_atomic(path, lambda f: f.write(data), what)
    return data
