"""Which algorithm runs a conv layer, and what it keeps: decided once, into a ConvPlan, when the
layer is built (layers/conv.py), and read by the layer, `inspect`'s memory estimate and the
kernels alike. This module imports nothing, so inspect can apply it without loading numba."""

from dataclasses import dataclass

# A conv layer keeps its whole batch's im2col columns from forward to backward when they take at
# most this many bytes; bigger layers recompute them per chunk in backward (an im2col pass, a few
# per cent of a backward whose GEMMs are this deep). At 32 MB ResNet-18 (224, batch 16) kept
# 112 MB of columns; at 8 MB 13 MB, and its peak RSS fell 802 -> 742 MiB. The 28-32 pixel
# networks at batch 64 on 2 threads (shards of 32) keep every column set they kept at 32 MB.
KEEP_COLUMNS_BYTES = 8 << 20


def is_pointwise(size, stride, pads):
    """A 1x1, stride-1, unpadded convolution: its im2col columns are the input itself."""
    return tuple(size) == (1, 1) and tuple(stride) == (1, 1) and not any(pads)


# First layers (1 to 3 channels) build their im2col columns transposed, from planar images
# (kernels/conv.py); at stride 1 each column row is one contiguous run of a padded plane, computed
# at every padded column ("wide": the fw - 1 extra outputs per row are dropped after the GEMM).
PLANAR_MAX_CHANNELS = 3


def planar_columns(channels, size, stride, pads):
    """-> (planar, wide): does the layer build its columns from planar images, and at stride 1
    as contiguous runs (every padded column computed)?"""
    planar = channels <= PLANAR_MAX_CHANNELS and not is_pointwise(size, stride, pads)
    return planar, planar and tuple(stride) == (1, 1)


# Wide layers (planar, stride 1) with at most this many filters convolve directly, in training
# and inference: each output row a sum of shifted rows of the padded planes, and each weight
# gradient a dot product of such rows with dz; no columns (kernels/conv.py).
# Forward, 32 images, one thread, ms direct / columns + GEMM (bias and ReLU included):
# LeNet-5's 28x28x1 5x5 -> 6 0.17 / 0.38; 32x32x3 3x3 -> 16 0.50-0.55 / 0.61; 64x64x3 3x3 -> 16
# 1.8-2.0 / 3.8; 128x128x1 5x5 -> 8 3.4 / 11.8; but 32x32x3 3x3 -> 32 1.08 / 0.77 and -> 64
# 2.0 / 1.7-1.8.
DIRECT_MAX_FILTERS = 16


def convolves_directly(channels, size, stride, pads, filters):
    """Does a conv layer convolve directly (no columns, no GEMM), in training and inference?"""
    return planar_columns(channels, size, stride, pads)[1] and filters <= DIRECT_MAX_FILTERS


def column_positions(channels, size, stride, pads, in_hw, out_hw):
    """Rows of the im2col matrix per image: the output positions, or out_h x padded width for
    wide planar columns."""
    oh, ow = out_hw
    wide = planar_columns(channels, size, stride, pads)[1]
    return oh * (in_hw[1] + pads[2] + pads[3]) if wide else oh * ow


def keeps_columns(images, positions, depth, pointwise, itemsize=4):
    """Does a conv layer keep its batch's columns (images x positions rows, depth wide)?"""
    return not pointwise and images * positions * depth * itemsize <= KEEP_COLUMNS_BYTES


@dataclass(frozen=True)
class ConvPlan:
    """How one conv layer runs. The column fields describe one group's im2col (the whole layer's
    when groups == 1; every group is alike).
      algorithm  "depthwise" (groups == channels: its own loops), "grouped" (im2col or direct per
                 group), "winograd" (F(4x4, 3x3)) or "im2col" (columns and one GEMM)
      direct     each group convolves directly: no columns, no GEMM (convolves_directly)
      pointwise  1x1, stride 1, unpadded: the columns are the input itself
      planar     columns built from planar images (1-3 channels); wide: at stride 1, every
                 padded column computed
      positions  column rows per image (column_positions)"""

    algorithm: str
    direct: bool
    pointwise: bool
    planar: bool
    wide: bool
    positions: int


def plan(channels, size, stride, pads, groups, filters, in_hw, out_hw):
    """-> the ConvPlan of a conv layer with this geometry (channels and filters of the whole layer)."""
    c, f = channels // groups, filters // groups
    planar, wide = planar_columns(c, size, stride, pads)
    if 1 < groups == channels:
        algorithm = "depthwise"
    elif groups > 1:
        algorithm = "grouped"
    else:
        algorithm = "winograd" if uses_winograd(size, stride, pads, groups, c, f, out_hw) else "im2col"
    direct = algorithm in ("im2col", "grouped") and convolves_directly(c, size, stride, pads, f)
    return ConvPlan(algorithm, direct, is_pointwise(size, stride, pads), planar, wide,
                    column_positions(c, size, stride, pads, in_hw, out_hw))


# Winograd's transformed filters U (36 x C x F float32) at most this big. Its backward holds U
# turned, and a dU (36 C F) per thread, transformed back in float64: a 512 -> 512 layer 38 MB each,
# +209 MB over the step's live arrays in ResNet-18's last stage (batch 16, tracemalloc), where
# 256 -> 256 stays at 9.4 MB (+80 MB).
WINOGRAD_MAX_FILTER_BYTES = 16 << 20


def uses_winograd(size, stride, pads, groups, channels, filters, out_hw):
    """Does a conv layer run Winograd F(4x4, 3x3)? 3x3, stride 1, ungrouped, padding of at most 1
    on each side, at least 16 channels in and out, and an output map of at least 6 x 6, or 16 x 16
    when either side has fewer than 32 channels. Below these the transforms and the cut edge tiles
    cost more than the 4x fewer multiplications save. Measured, one layer, batch 64, training step
    / inference against im2col: 32x32 32->32 1.58x / 1.77x, 8x8 128->128 2.28x / 2.47x, 6x6 64->64
    1.08x / 1.15x, 32x32 16->16 1.01x / 1.10x; but 5x5 32->32 0.65x / 0.74x, 2x2 256->256 0.25x,
    14x14 16->16 0.92x / 1.01x, 8x8 16->16 0.82x / 1.04x, 32x32 8->8 0.92x / 0.92x.
    And the transformed filters within WINOGRAD_MAX_FILTER_BYTES: measured, two layers and a
    head, batch 16, training step on a loaded 2-core machine, im2col against Winograd: 7x7
    512->512 531-570 / 1,223-1,226 ms, where 14x14 256->256 (9.4 MB of U) is 583 / 416 ms.
    CNNCLI_WINOGRAD=0 turns it off (for comparisons)."""
    import os

    narrow = min(channels, filters) < 32
    return (os.environ.get("CNNCLI_WINOGRAD", "1") != "0" and tuple(size) == (3, 3) and tuple(stride) == (1, 1)
            and groups == 1 and max(pads) <= 1 and min(channels, filters) >= 16
            and min(out_hw) >= (16 if narrow else 6) and 36 * channels * filters * 4 <= WINOGRAD_MAX_FILTER_BYTES)
