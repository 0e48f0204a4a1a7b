"""Numbers shared by the kernels and by `inspect`'s memory estimate (this module imports nothing,
so inspect can read them without loading numba)."""

# A conv layer keeps its whole batch's im2col columns from forward to backward when they take at
# most this many bytes; bigger layers recompute them per chunk in backward.
KEEP_COLUMNS_BYTES = 32 << 20
