"""curves.png: loss and accuracy (training and validation) and the learning rate, against epoch,
drawn from the rows of metrics.csv."""

from .figure import MUTED, TRAIN, VAL, new_figure, save_png, styled


def _column(history, key):
    """-> (epochs, values) of the rows where key has a value."""
    pts = [(r["epoch"], r[key]) for r in history if r.get(key) not in (None, "")]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def draw_curves(history, title="training curves", best_epoch=None):
    """history: metrics.csv rows (dicts: epoch, train_loss, train_acc, val_loss, val_acc, lr)
    -> a Figure with three panels: loss, accuracy, learning rate."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

    fig = new_figure(11, 3.4, layout=None)  # fixed margins: a third faster than constrained layout
    with styled():
        axes = fig.subplots(1, 3, gridspec_kw=dict(left=0.05, right=0.985, bottom=0.14, top=0.82, wspace=0.22))
        marker = "o" if len(history) <= 30 else None
        for ax, key, name in ((axes[0], "loss", "loss (cross-entropy)"), (axes[1], "acc", "accuracy")):
            for split, colour, label in (("train", TRAIN, "training"), ("val", VAL, "validation")):
                x, y = _column(history, f"{split}_{key}")
                if x:
                    ax.plot(x, y, color=colour, marker=marker, markersize=3.5, linewidth=1.6, label=label)
            ax.set_title(name)
            if best_epoch is not None:
                ax.axvline(best_epoch, color=MUTED, linestyle=":", linewidth=1.2, label=f"best (epoch {best_epoch})")
            ax.legend(loc="upper right" if key == "loss" else "lower right")
        axes[0].set_ylim(bottom=0)
        axes[1].yaxis.set_major_formatter(PercentFormatter(1.0))
        x, y = _column(history, "lr")
        axes[2].plot(x, y, color=MUTED, marker=marker, markersize=3.5, linewidth=1.6)
        axes[2].set_title("learning rate (at each epoch's end)")
        axes[2].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[2].set_ylim(bottom=0)
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if history:
                ax.set_xlim(0.5, max(history[-1]["epoch"], 2) + 0.5)
        if best_epoch is not None:
            axes[2].axvline(best_epoch, color=MUTED, linestyle=":", linewidth=1.2)
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig


def write_curves(path, history, title="training curves", best_epoch=None):
    """Draw and write curves.png atomically -> its bytes."""
    return save_png(draw_curves(history, title, best_epoch), path, "curves")
