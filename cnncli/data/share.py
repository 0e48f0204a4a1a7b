"""One process's share of every batch, for data-parallel training over several processes.

Batch b of the epoch covers positions [start, stop) of the epoch's order; process r of n takes
the r-th of n near-equal pieces of it (the uneven last batch included), so `train.batch_size`
stays the batch of the whole job. The epoch's plan (order, flips, crops, brightness) is drawn
from the same generator on every process and each takes its slice: what an image sees does not
depend on the number of processes.
"""

from .batches import Batches


def piece(start, stop, rank, size):
    """[start, stop) cut into `size` near-equal pieces -> the rank-th (the rule of kernels.parallel.chunks)."""
    n = stop - start
    return start + n * rank // size, start + n * (rank + 1) // size


class Share(Batches):
    """The same batches as `batches` (same count, same plan), each cut down to this process's piece."""

    def __init__(self, batches, rank, size):
        super().__init__(batches.images, batches.labels, batches.indices, batches.mean, batches.std,
                         batches.batch_size, batches.augment)
        self.rank, self.size = rank, size

    def span(self, b):
        return piece(*super().span(b), self.rank, self.size)
