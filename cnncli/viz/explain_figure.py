"""One picture per explained image: the input, the Grad-CAM heatmap over it, the class
probabilities, the feature maps of the conv layers, and the first layer's filters."""

import numpy as np

from .figure import MUTED, TRAIN, VAL, new_figure, styled
from .grids import show_image, show_overlay

MAPS_PER_LAYER = 16   # the most active feature maps of each conv layer
FILTERS_SHOWN = 32


def strongest(maps, limit=MAPS_PER_LAYER):
    """(h, w, C) -> (indices of the `limit` channels with the largest mean, strongest first)."""
    return np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:limit]


def filter_images(weight):
    """Conv weights (F, C, fh, fw), C 1 or 3 -> (F, fh, fw, C) in [0, 1], 0.5 = a zero weight,
    one scale for all filters (so a weak filter looks faint)."""
    w = np.transpose(np.asarray(weight, np.float64), (0, 2, 3, 1))
    if w.shape[-1] not in (1, 3):
        w = w.mean(axis=-1, keepdims=True)
    top = np.abs(w).max()
    return 0.5 + 0.5 * w / top if top > 0 else np.full_like(w, 0.5)


def draw_explanation(image, heatmap, peak, heading, probs, classes, explained, feature_maps, filters,
                     title):
    """image uint8 (H, W, c); heatmap (H, W) in [0, 1]; peak (y, x); probs (K,);
    feature_maps [(label, (h, w, C))]; filters (F, C, fh, fw) or None -> a Figure."""
    n_maps = len(feature_maps)
    cols = MAPS_PER_LAYER
    has_filters = filters is not None
    heights = [3.2] + [0.25, 0.72] * n_maps + ([0.25, 0.72 * (1 + (len(filters) > cols))] if has_filters else [])
    fig = new_figure(11, sum(heights) + 0.6)
    with styled():
        outer = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.05)
        top = outer[0].subgridspec(1, 4, width_ratios=[1, 1, 1, 1.35], wspace=0.25)
        ax = fig.add_subplot(top[0])
        show_image(ax, image)
        ax.set_title("input")
        ax = fig.add_subplot(top[1])
        show_overlay(ax, image, heatmap, peak)
        ax.set_title(heading)
        ax = fig.add_subplot(top[2])
        im = ax.imshow(heatmap, cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
        ax.set_axis_off()
        ax.set_title("heatmap alone")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, ticks=[0, 0.5, 1])
        ax = fig.add_subplot(top[3])
        _probabilities(ax, probs, classes, explained)
        row = 1
        for label, maps in feature_maps:
            _label_row(fig, outer[row], label)
            _maps_row(fig, outer[row + 1], maps, cols)
            row += 2
        if has_filters:
            shown = filter_images(filters[:FILTERS_SHOWN])
            _label_row(fig, outer[row], f"first conv layer's {len(filters)} filters"
                       + (f" (the first {len(shown)})" if len(filters) > len(shown) else "")
                       + ": each is a sensor that lights up on the pattern it shows (grey = 0, "
                         "brighter = positive weight)")
            _filters_rows(fig, outer[row + 1], shown, cols)
        fig.suptitle(title, fontweight="bold", fontsize=11)
    return fig


def _probabilities(ax, probs, classes, explained, limit=8):
    order = np.argsort(-probs, kind="stable")[:limit][::-1]
    colours = [VAL if k == explained else TRAIN for k in order]
    ax.barh(range(len(order)), probs[order], color=colours, height=0.6)
    ax.set_yticks(range(len(order)), [classes[k] for k in order])
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    for y, k in enumerate(order):
        ax.text(min(probs[k] + 0.02, 0.78), y, f"{probs[k]:.1%}", va="center", fontsize=8)
    ax.set_title("class probabilities" + (f" (top {limit})" if len(probs) > limit else ""))
    ax.grid(axis="y", visible=False)


def _label_row(fig, cell, text):
    ax = fig.add_subplot(cell)
    ax.set_axis_off()
    ax.text(0, 0.1, text, fontsize=8.5, color=MUTED, transform=ax.transAxes, va="bottom")


def mosaic(tiles, cols, rows=1):
    """Equal-sized tiles (h, w) or (h, w, 3) -> one image of rows x cols tiles with blank (NaN)
    gaps and blank tiles where there are fewer: one axes per row instead of one per tile, which
    draws about three times faster."""
    h, w = tiles[0].shape[:2]
    gap = max(1, w // 8)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap) + tiles[0].shape[2:], np.nan)
    for k, t in enumerate(tiles[:rows * cols]):
        r, c = divmod(k, cols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return out


def _maps_row(fig, cell, maps, cols):
    """Up to `cols` feature maps of a layer, one colour scale for the row (the smallest value is
    black-purple, the largest yellow)."""
    import matplotlib

    idx = strongest(maps, cols)
    shown = maps[..., idx].astype(np.float64)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    ax = fig.add_subplot(cell)
    ax.imshow(mosaic([shown[..., j] for j in range(len(idx))], cols), cmap=cmap,
              vmin=min(0.0, float(shown.min())), vmax=float(shown.max()) or 1.0)
    ax.set_axis_off()


def _filters_rows(fig, cell, shown, cols):
    rows = 1 + (len(shown) > cols)
    tiles = [np.repeat(f, 3, axis=-1) if f.shape[-1] == 1 else f for f in shown]
    image = mosaic(tiles, cols, rows)
    image[np.isnan(image)] = 1.0   # white gaps
    ax = fig.add_subplot(cell)
    ax.imshow(image)
    ax.set_axis_off()
