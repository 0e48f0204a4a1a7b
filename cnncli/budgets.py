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


def uses_winograd(size, stride, pads, groups, channels, filters):
    """Does a conv layer run Winograd F(2x2, 3x3)? 3x3, stride 1, ungrouped, padding of at most 1
    on each side, and at least 32 channels in and out: below that the input and output transforms
    cost about what the 2.25x fewer multiplications save (measured: see the commit that added it).
    CNNCLI_WINOGRAD=0 turns it off (for comparisons)."""
    import os

    return (os.environ.get("CNNCLI_WINOGRAD", "1") != "0" and tuple(size) == (3, 3) and tuple(stride) == (1, 1)
            and groups == 1 and max(pads) <= 1 and channels >= 32 and filters >= 32)
