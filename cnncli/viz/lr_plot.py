"""lr_find.png: the loss against the learning rate (log scale), raw and smoothed, with the
suggested rate and the valley it was taken from."""

from .figure import MUTED, TRAIN, VAL, new_figure, styled


def draw_lr_find(result, title):
    fig = new_figure(7.5, 4.2)
    with styled():
        ax = fig.add_subplot()
        lrs, smoothed = result["lrs"], result["smoothed"]
        ax.plot(lrs, result["losses"], color=TRAIN, alpha=0.3, linewidth=1, label="loss of each step")
        ax.plot(lrs, smoothed, color=TRAIN, linewidth=2, label="smoothed loss")
        lo, hi = result["valley"]
        ax.axvspan(lo, hi, color=MUTED, alpha=0.12, label="the longest valley")
        s = result["suggestion"]
        k = lrs.index(s)
        ax.plot([s], [smoothed[k]], marker="o", color=VAL, markersize=8, linestyle="none",
                label=f"suggested rate {s:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        top = max(smoothed[:max(3, len(smoothed) // 3)]) * 1.6   # keep the blow-up from flattening the rest
        ax.set_ylim(min(min(result["losses"]), min(smoothed)) * 0.9, max(top, max(smoothed[:k + 1]) * 1.1))
        ax.legend(loc="upper left")
        note = "stopped when the loss diverged" if result["stopped"] == "diverged" else "reached the end of the range"
        ax.set_title(f"{title}\n{result['steps']} steps, {note}", fontsize=9.5)
    return fig
