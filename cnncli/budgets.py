"""Rules shared by the kernels and by `inspect`'s memory estimate. This module imports nothing,
so inspect can apply them without loading numba: one rule, one place."""

# A conv layer keeps its whole batch's im2col columns from forward to backward when they take at
# most this many bytes; bigger layers recompute them per chunk in backward.
KEEP_COLUMNS_BYTES = 32 << 20


def is_pointwise(size, stride, pads):
    """A 1x1, stride-1, unpadded convolution: its im2col columns are the input itself."""
    return tuple(size) == (1, 1) and tuple(stride) == (1, 1) and not any(pads)


def keeps_columns(images, positions, depth, pointwise, itemsize=4):
    """Does a conv layer keep its batch's columns (images x positions rows, depth wide)?"""
    return not pointwise and images * positions * depth * itemsize <= KEEP_COLUMNS_BYTES


def uses_winograd(size, stride, pads, groups, channels, filters, out_hw):
    """Does a conv layer run Winograd F(4x4, 3x3)? 3x3, stride 1, ungrouped, padding of at most 1
    on each side, at least 32 channels in and out, an output map of at least 8 x 8, and at least 3/4
    of the 4 x 4 output tiles inside the map. Below these the transforms and the cut edge tiles cost
    more than the 4x fewer multiplications save. Measured (training step / inference of one layer,
    batch 64, against im2col): 32x32 32->32 1.22x / 1.38x, 8x8 128->128 1.89x / 1.81x; but 32x32
    16->16 0.92x / 0.99x, 7x7 32->32 0.88x / 1.03x, 10x10 32->32 (69% of the tiles used) 0.90x /
    1.11x, 2x2 256->256 0.21x. CNNCLI_WINOGRAD=0 turns it off (for comparisons)."""
    import os

    oh, ow = out_hw
    used = oh * ow / (16 * -(-oh // 4) * -(-ow // 4))
    return (os.environ.get("CNNCLI_WINOGRAD", "1") != "0" and tuple(size) == (3, 3) and tuple(stride) == (1, 1)
            and groups == 1 and max(pads) <= 1 and channels >= 32 and filters >= 32 and min(oh, ow) >= 8
            and used >= 0.75)
