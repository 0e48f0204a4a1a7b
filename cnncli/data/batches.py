"""Float32 batches from the uint8 cache: shuffling, augmentation, normalisation, prefetching.

All randomness of an epoch (order, and every augmentation's draws: data/augment.py) is drawn up
front from the epoch's generator, so a batch depends only on (seed, epoch, batch index): a resumed
run sees exactly the batches the uninterrupted run would have. The last, smaller batch is kept; a
last batch of one image is merged into the one before it.
"""

import queue
import threading

import numpy as np

from . import cache


def channel_stats(images, indices, chunk_values=1 << 22):
    """Per-channel mean and std of pixel / 255 over the given uint8 images, from exact counts of
    each level (np.bincount): mean = sum_v n_v v / N, std = sqrt(sum_v n_v v^2 / N - mean^2), v =
    level / 255. Read in chunks of about chunk_values values (27 images of 224 x 224 x 3), each
    chunk's memory-mapped pages released after it."""
    c = images.shape[-1]
    chunk = max(1, chunk_values // max(1, int(np.prod(images.shape[1:]))))
    counts = np.zeros((c, 256), np.int64)
    for start in range(0, len(indices), chunk):
        block = images[np.sort(indices[start:start + chunk])].reshape(-1, c)
        cache.release(images)
        for k in range(c):
            counts[k] += np.bincount(block[:, k], minlength=256)
    level = np.arange(256) / 255.0
    count = max(int(counts[0].sum()), 1)
    mean = counts @ level / count
    std = np.sqrt(np.maximum(counts @ (level * level) / count - mean * mean, 0.0))
    return mean, np.maximum(std, 1e-3)


# Larger caches keep the prefetch thread even with nothing to augment: their pages may have to
# come from disk (a cache larger than RAM), a wait the thread hides behind the step (not measured).
IN_LINE_MAX_BYTES = 1 << 30


class Batches:
    def __init__(self, images, labels, indices, mean, std, batch_size, augment=None):
        self.images, self.labels = images, labels
        self.indices = np.asarray(indices, np.int64)
        self.mean, self.std = mean, std
        self.batch_size = batch_size
        self.augment = augment  # config.Augment or None

    def __len__(self):
        """Batches per epoch. A last batch of a single image joins the one before it: batchnorm
        after a dense layer would see one value per unit and output only its bias."""
        n, size = len(self.indices), self.batch_size
        full = -(-n // size)
        return full - 1 if n % size == 1 and full > 1 else full

    def plan(self, rng=None, shuffle=True):
        """The epoch's order and augmentation, drawn from rng (None: in order, no augmentation)."""
        from .augment import ORIGINAL, draw

        n = len(self.indices)
        order = self.indices[rng.permutation(n)] if rng is not None and shuffle else self.indices
        if rng is None or self.augment is None:
            return order, dict.fromkeys(ORIGINAL)
        h, w = self.images.shape[1:3]
        return order, draw(self.augment, rng, n, h, w)

    def span(self, b):
        """Batch b's positions in the epoch's order: (start, stop)."""
        last = b == len(self) - 1
        return b * self.batch_size, len(self.indices) if last else (b + 1) * self.batch_size

    def make(self, order, p, b):
        """Batch b of the plan -> (x float32 (B, h, w, c), labels: ints, or Mixed with mixup / cutmix)."""
        from .augment import apply

        sl = slice(*self.span(b))
        idx = order[sl]
        sorted_idx = np.argsort(idx, kind="stable")  # read the memory map in file order
        src = np.empty((len(idx),) + self.images.shape[1:], np.uint8)
        src[sorted_idx] = self.images[idx[sorted_idx]]
        self._drop_pages()
        size = self.augment.cutout.size if self.augment is not None else 0
        return apply(src, self.labels[idx], self.mean, self.std, p, sl, size)

    def _drop_pages(self):
        """After a batch is read, the cache's pages leave this process's RSS (it holds a batch of
        a large cache, not all it has read); a cache of at most cache.RESIDENT_BYTES stays."""
        if self.images.nbytes > cache.RESIDENT_BYTES:
            cache.release(self.images)

    def epoch(self, rng=None, start=0, prefetch=2, shuffle=True):
        """Yield (x float32 (B, h, w, c), y int64 (B,) or Mixed) from batch `start` on, one batch ahead
        (made on a thread) when the batches are augmented."""
        order, p = self.plan(rng, shuffle)
        n_batches = len(self)
        if all(v is None for v in p.values()) and self.images.nbytes <= IN_LINE_MAX_BYTES:
            # Nothing to augment (validation, prediction, training without augmentation, cached
            # features): a gather and a normalising pass, 0.3 ms for 64 digits of 28x28, 1.4 ms for
            # 16 images of 224x224x3, cost the step less in line than a prefetch thread beside it
            # costs in interpreter-lock turns and CPU. LeNet-5, `cnncli train` on the digits without
            # augmentation, 2 rounds each: 10.9-11.5k images/s with the thread, 12.1-12.5k in line.
            prefetch = 0
        if prefetch <= 0:
            for b in range(start, n_batches):
                yield self.make(order, p, b)
            return
        q = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def work():
            try:
                for b in range(start, n_batches):
                    if stop.is_set():
                        return
                    q.put(self.make(order, p, b))
            except BaseException as e:  # handed to the consumer
                q.put(e)
            q.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.01)


class FeatureBatches(Batches):
    """Batches of cached float32 features (engine/features.py) in place of images: the same order
    and batch cuts as the image batches they stand for; nothing to normalise (done before the
    frozen layers) and nothing to augment (the cache is used only without augmentation)."""

    def __init__(self, features, labels, indices, batch_size):
        super().__init__(features, labels, indices, None, None, batch_size)

    def make(self, order, p, b):
        """Batch b of the plan -> (x float32 (B, *feature shape), labels)."""
        idx = order[slice(*self.span(b))]
        sorted_idx = np.argsort(idx, kind="stable")  # read the memory map in file order
        x = np.empty((len(idx),) + self.images.shape[1:], np.float32)
        x[sorted_idx] = self.images[idx[sorted_idx]]
        self._drop_pages()
        return x, self.labels[idx]
