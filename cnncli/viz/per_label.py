"""per_label.png: a multi-label evaluation's AP and F1 per label as bars (a label with no
positive image has no AP: its bar is left out and its name marked)."""

import numpy as np

from .figure import TRAIN, VAL, new_figure, styled


def draw_per_label(per_label, title="per label"):
    """[{label, ap (or None), f1, support}] -> a Figure of horizontal bars, one pair per label."""
    names = [f"{c['label']} ({c['support']})" + ("" if c["ap"] is not None else " no positive") for c in per_label]
    ap = np.array([np.nan if c["ap"] is None else c["ap"] for c in per_label])
    f1 = np.array([c["f1"] for c in per_label])
    k = len(per_label)
    fig = new_figure(6.0, 0.9 + 0.32 * k)
    with styled():
        ax = fig.subplots()
        y = np.arange(k)
        ax.barh(y - 0.2, np.nan_to_num(ap), 0.4, color=TRAIN, label="AP")
        ax.barh(y + 0.2, f1, 0.4, color=VAL, label="F1 at the threshold")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("score (label name: positive images)")
        ax.set_title(title)
        fig.legend(loc="outside lower center", ncols=2)
    return fig
