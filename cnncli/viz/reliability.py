"""reliability.png: accuracy against confidence in 15 equal-width bins of the max-probability,
before and after the checkpoint's temperature; a calibrated model's bars meet the diagonal. Each
bar's foot shows how many images it stands on."""

from .figure import BAD, GOOD, MUTED, new_figure, styled


def draw_reliability(cal, title="reliability"):
    """cal: evaluate's 'calibration' ({'temperature', 'ece', 'bins': [before, after]}) -> a Figure."""
    fig = new_figure(7.4, 3.6)
    with styled():
        axes = fig.subplots(1, 2, sharey=True)
        names = ("before: temperature 1", f"after: temperature {cal['temperature']:.3g}")
        for ax, name, bins, e in zip(axes, names, cal["bins"], cal["ece"]):
            full = [b for b in bins if b["count"]]
            width = bins[0]["hi"] - bins[0]["lo"]
            ax.bar([b["lo"] for b in full], [b["accuracy"] for b in full], width=width, align="edge",
                   color=GOOD, alpha=0.75, edgecolor="white", label="accuracy")
            ax.bar([b["lo"] for b in full], [abs(b["confidence"] - b["accuracy"]) for b in full], width=width,
                   bottom=[min(b["accuracy"], b["confidence"]) for b in full], align="edge", color="none",
                   hatch="///", edgecolor=BAD, label="gap to mean confidence")
            for b in full:   # how many images each bar stands on
                ax.text(b["lo"] + width / 2, 0.02, str(b["count"]), ha="center", va="bottom", fontsize=6,
                        color="white" if b["accuracy"] > 0.08 else MUTED)
            ax.plot([0, 1], [0, 1], "--", color=MUTED, lw=1)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("confidence (max probability)")
            ax.set_title(f"{name}\nECE {e:.2%}, {sum(b['count'] for b in bins)} images")
        axes[0].set_ylabel("accuracy")
        axes[0].legend(loc="upper left")
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig
