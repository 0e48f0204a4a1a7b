"""confusion.png: the confusion matrix twice, as counts and row-normalised (each true class's
row as fractions of its images: the diagonal is that class's recall)."""

import numpy as np

from .figure import new_figure, styled

ANNOTATE_UP_TO = 20   # classes; beyond that the numbers would not fit in the cells


def row_normalised(confusion):
    """Counts (K, K) -> each row divided by its sum (a class without images stays 0)."""
    c = np.asarray(confusion, np.float64)
    total = c.sum(axis=1, keepdims=True)
    return np.divide(c, total, out=np.zeros_like(c), where=total > 0)


def draw_confusion(confusion, classes, title="confusion matrix"):
    """(K, K) counts, rows the true class, columns the prediction -> a Figure with two panels."""
    counts = np.asarray(confusion, np.int64)
    k = len(classes)
    cell = 0.45 if k <= 10 else max(0.12, 4.5 / k)
    side = max(2.6, cell * k + 1.2)
    fig = new_figure(2 * side + 0.6, side + 0.9)
    with styled():
        axes = fig.subplots(1, 2)
        for ax, values, name, fmt in ((axes[0], counts, "counts\n(rows: true class)", "{:d}"),
                                      (axes[1], row_normalised(counts), "row-normalised\n(diagonal = recall)",
                                       "{:.0%}")):
            top = values.max() if values.size and values.max() > 0 else 1
            ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
            ax.grid(False)
            ax.set_title(name)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            step = max(1, k // 40)
            ticks = list(range(0, k, step))
            ax.set_xticks(ticks, [classes[i] for i in ticks], rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
            ax.set_yticks(ticks, [classes[i] for i in ticks])
            if k <= ANNOTATE_UP_TO:
                for i in range(k):
                    for j in range(k):
                        v = values[i, j]
                        ax.text(j, i, fmt.format(v.item()), ha="center", va="center", fontsize=8 if k <= 10 else 6,
                                color="white" if v > 0.55 * top else "#222222")
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig
