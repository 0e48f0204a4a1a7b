"""Image grids: thumbnails with captions (the most confident mistakes), and Grad-CAM overlays."""

import math

import numpy as np

from .figure import BAD, new_figure, styled

HEAT_ALPHA = (0.15, 0.7)  # the heatmap's opacity over the image, where it is 0 and where it is 1


def show_image(ax, image):
    """uint8 (h, w, 1 or 3) -> drawn without axes; grey images in grey."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_axis_off()


def show_overlay(ax, image, heatmap, peak=None):
    """The image with the heatmap (values in [0, 1], same h x w) laid over it in 'jet', more
    opaque where it is hotter (so the image shows where the network does not look), and the
    heatmap's peak marked with a cross."""
    import matplotlib

    show_image(ax, image)
    rgba = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))
    rgba[..., 3] = HEAT_ALPHA[0] + (HEAT_ALPHA[1] - HEAT_ALPHA[0]) * np.clip(heatmap, 0, 1)
    ax.imshow(rgba, interpolation="bilinear")
    if peak is not None:
        ax.plot(peak[1], peak[0], marker="+", color="white", markersize=12, markeredgewidth=2)
        ax.plot(peak[1], peak[0], marker="+", color="black", markersize=12, markeredgewidth=0.8)
    ax.set_axis_off()


def draw_thumbnails(images, captions, title, cols=8, empty_text="nothing to show"):
    """uint8 images (N, h, w, c) with a caption each -> a Figure, cols thumbnails a row."""
    n = len(images)
    if n == 0:
        fig = new_figure(6, 1.2)
        with styled():
            ax = fig.add_subplot()
            ax.set_axis_off()
            ax.text(0.5, 0.5, empty_text, ha="center", va="center", fontsize=12, fontweight="bold")
        return fig
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    # wide enough for the title too: a few thumbnails under a long title cut it at both edges
    fig = new_figure(max(1.35 * cols + 0.3, 0.095 * len(title) + 0.5), 1.75 * rows + 0.5)
    with styled():
        for i in range(n):
            ax = fig.add_subplot(rows, cols, i + 1)
            show_image(ax, images[i])
            ax.set_title(captions[i], fontsize=7.5, fontweight="normal", color=BAD, linespacing=1.15)
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig


def mistake_caption(classes, true, pred, prob):
    return f"true: {classes[true]}\npred: {classes[pred]} {prob:.0%}"


def most_confident_mistakes(labels, probs, limit=24):
    """-> indices of the wrong predictions, the most confident first (at most limit)."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order][:limit]


def draw_mistakes(images, labels, probs, classes, limit=24, cols=8):
    """mistakes.png: the most confident wrong predictions with true class, predicted class and
    its probability."""
    idx = most_confident_mistakes(labels, probs, limit)
    pred = probs.argmax(axis=1)
    captions = [mistake_caption(classes, labels[i], pred[i], probs[i, pred[i]]) for i in idx]
    wrong = int((pred != labels).sum())
    title = (f"the {len(idx)} most confident mistakes of {wrong}" if wrong > len(idx) else
             f"all {wrong} mistakes, the most confident first") + f" ({len(labels)} images)"
    return draw_thumbnails(np.asarray(images)[idx] if len(idx) else [], captions, title, cols,
                           empty_text=f"no mistakes on {len(labels)} images")


def draw_suspects(images, captions, title, cols=8):
    """audit.png: the images whose label audit doubts most, each with its given and suggested class."""
    return draw_thumbnails(images if len(images) else [], captions, title, cols,
                           empty_text="no label suspects")


def draw_cam_rows(rows, title):
    """Grad-CAM for a few images: rows of (image, [(heading, heatmap, peak)...]) -> a Figure,
    the image then one overlay per heading."""
    cols = 1 + max((len(r[1]) for r in rows), default=1)
    fig = new_figure(1.9 * cols + 0.2, 2.05 * max(len(rows), 1) + 0.5)
    with styled():
        grid = fig.add_gridspec(max(len(rows), 1), cols)
        for r, (image, overlays) in enumerate(rows):
            ax = fig.add_subplot(grid[r, 0])
            show_image(ax, image)
            ax.set_title("input", fontsize=8, fontweight="normal")
            for c, (heading, heatmap, peak) in enumerate(overlays, start=1):
                ax = fig.add_subplot(grid[r, c])
                show_overlay(ax, image, heatmap, peak)
                ax.set_title(heading, fontsize=8, fontweight="normal")
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig
