"""Each thread runs its share of the batch through the whole network: one hand-off for forward and
one for backward per step, instead of one or more per layer (a hand-off costs ~49 us on the
2-core machine the benchmarks run on; LeNet-5's step made ~10 of them).

A shard is a copy of the model whose layers share the parameters and running statistics but keep
their own gradients, caches and workspaces. Inside a shard's thread the kernels split nothing
further (parallel.serial). Between forward and backward the logits of all shards are joined and
the loss runs once on the whole batch, on the calling thread: label smoothing, class weights,
mixed labels and the process-wide loss of MPI training see the batch exactly as without shards.
The shards' parameter gradients are then added in shard order (bit-identical reruns for a given
thread count); dropout masks are drawn for the whole batch before the split, as one thread
would draw them.

In training on Linux, shards 1.. run in worker processes (processes.py) from the second step on:
two threads of one process take turns at the interpreter lock between kernels.

Batchnorm's batch statistics span the shards: its sums go through a ThreadTotal, where the
shards meet (one barrier per sum; a batchnorm layer makes three per step against five thread
hand-offs layer by layer), and one shard updates the running statistics. Training with batchnorm
synchronised over processes (MPI) runs layer by layer. Inference reads running statistics.
"""

import contextlib
import copy
import threading

import numpy as np

from . import processes

# Networks of more multiply-adds per image (forward) than this run layer by layer: each layer's
# work then dwarfs a hand-off, and shards would hold a second set of gradients, workspaces and
# malloc arenas. Measured, ResNet-18 at 224 (1.81 G), batch 16, 2 threads, on a loaded machine:
# peak RSS 1,288 MiB by shards against 929 MiB layer by layer, a step 8.3-8.6 s against 6.5-6.8 s.
# The 28-32 pixel networks (LeNet-5 0.4 M to ResNet-20 41 M) stay on shards.
SHARD_MAX_MACS = 100_000_000


class Shards:
    def __init__(self, model):
        self.model = model
        self._copies = []
        self.macs = sum(layer.macs() for layer in model.layers)   # per image, forward
        self.workers = None     # processes.Workers: a training step's shards 1.. in processes, where available

    def stop(self):
        """End the worker processes, if any (the model is about to drop these shards)."""
        if self.workers is not None:
            self.workers.stop()

    def usable(self, n, ctx):
        """Split a batch of n images this way? More than one thread and image, a network of at
        most SHARD_MAX_MACS per image, and in training no batchnorm sums over processes
        (ctx.reduce: MPI's, which runs layer by layer)."""
        from ..kernels.parallel import n_threads   # here: importing the kernels loads numba

        if n_threads() < 2 or n < 2 or self.macs > SHARD_MAX_MACS:
            return False
        return not ctx.training or ctx.reduce is None

    def _shards(self, parts, training):
        """`parts` copies of the model, each layer's parameters, buffers and settings shared with
        the model's (re-pointed every call: the model may have been given new arrays). Training:
        shard 0 adds into the model's own gradients, the others into gradients of their own, made
        once (and again if the shapes change) and summed after. Inference touches no gradients."""
        model = self.model
        while len(self._copies) < parts:
            shard = copy.copy(model)
            shard.layers = [copy.copy(layer) for layer in model.layers]
            shard._plans = {}         # the model's kept inference plans are the model's alone
            for layer in shard.layers:
                layer.forget()        # a copy made after a step holds that step's workspaces: not its own
                if self._copies:      # shards after the first: gradients of their own
                    layer.grads = {n: np.zeros_like(g) for n, g in layer.grads.items()}
            self._copies.append(shard)
        for k, shard in enumerate(self._copies[:parts]):
            for mine, theirs in zip(shard.layers, model.layers):
                mine.params, mine.buffers = theirs.params, theirs.buffers
                if not training:
                    continue
                if k == 0:
                    mine.grads = theirs.grads
                elif any(n not in mine.grads or mine.grads[n].shape != g.shape for n, g in theirs.grads.items()):
                    mine.grads = {n: np.zeros_like(g) for n, g in theirs.grads.items()}
        return self._copies[:parts]

    def forward(self, x, plan=None):
        """Inference logits of x (N, H, W, C), each thread running its images through all layers."""
        from ..kernels.parallel import chunks, n_threads, run_chunks, serial

        pieces = chunks(len(x), n_threads())
        shards = self._shards(len(pieces), training=False)
        index = {lo: k for k, (lo, _) in enumerate(pieces)}

        def part(lo, hi):
            with serial():
                return shards[index[lo]].forward(x[lo:hi], plan=plan)

        logits = np.concatenate(run_chunks(len(x), part))
        for layer in self.model.layers + [layer for shard in shards for layer in shard.layers]:
            layer.forget()    # inference keeps nothing alive, the training workspaces included
        return logits

    def gradients(self, x, labels, loss, diverged, ctx, plan=None):
        """Model.gradients by shards -> (loss, probabilities). Each shard takes its part of the
        loss (with the whole batch's normaliser: losses.py) and goes on to its backward without
        waiting for the others' logits (processes.shard_step); diverged(value) raises after,
        before the shards' gradients are added. plan: the model's frozen_plan(). ctx: the step's
        Context; each shard gets its own, with its slice of the batch's random draws (dropout
        masks, drawn for the whole batch as one thread would), the Winograd tiles computed once
        for all, and batchnorm's sums over the shards."""
        from ..kernels.parallel import chunks, n_threads, run_chunks, serial

        model = self.model
        pieces = chunks(len(x), n_threads())
        shards = self._shards(len(pieces), training=True)
        index = {lo: k for k, (lo, _) in enumerate(pieces)}
        sums = ThreadTotal(len(shards))
        try:
            layers = model.layers
            # frozen layers run in inference mode: they draw nothing, as on one thread
            draws = {i: layers[i].draw((len(x),) + layers[i].in_shape, model.dtype, ctx.rngs[i])
                     for i in model.random_layers() if i not in ctx.frozen}
            masks = [{i: None if d is None else d[lo:hi] for i, d in draws.items()} for lo, hi in pieces]
            if processes.available():
                if self.workers is not None:
                    return self.workers.gradients(model, shards, pieces, x, loss, labels, diverged, ctx, masks, plan)
                # the first step runs in threads: it compiles the kernels, which workers forked
                # after it then have (forked during it, each would compile them again)
                self.workers = processes.Workers()
            tiles = model.step_tiles()
            ctxs = [ctx.but(masks=masks[k], tiles=tiles, reduce=sums.shard(k), keeps_running=k == 0)
                    for k in range(len(pieces))]
            for shard in shards[1:]:      # shard 0's are the model's own, zeroed already
                shard.zero_grad()

            whole = loss.total(labels)

            def step(lo, hi):
                k = index[lo]
                with serial(), sums.guard():
                    return processes.shard_step(shards[k], x[lo:hi], labels[lo:hi], loss, whole, ctxs[k], plan)

            value, probs = processes.joined(run_chunks(len(x), step), loss, labels)
            diverged(value)
            for i, layer in enumerate(model.layers):
                for name, g in layer.grads.items():
                    for shard in shards[1:]:  # onto shard 0's, in shard order: the same bits every run
                        g += shard.layers[i].grads[name]
            return value, probs
        finally:   # nothing of this step stays behind, even when it failed (Diverged, Ctrl-C) ...
            for shard in shards:
                for layer in shard.layers:
                    layer.forget(workspace=False)     # ... but the conv workspaces, reused next step


class ThreadTotal:
    """Sums float64 arrays over the shards of one step: shard k calls shard(k)(values) and gets
    the sum of all shards' values, added in shard order (the same bits in every shard and every
    run). One barrier per sum: the slots alternate between two sets, and a shard cannot write a
    set again before every shard has passed the barrier after reading it."""

    def __init__(self, parts):
        self.barrier = threading.Barrier(parts)
        self.slots = [[None] * parts, [None] * parts]
        self.calls = [0] * parts

    def shard(self, k):
        def total(values):
            slots = self.slots[self.calls[k] % 2]
            self.calls[k] += 1
            slots[k] = np.asarray(values, np.float64)
            self.barrier.wait()
            out = slots[0].copy()
            for v in slots[1:]:
                out += v
            return out
        return total

    @contextlib.contextmanager
    def guard(self):
        """A shard that fails breaks the barrier, so the others stop waiting (and fail too)."""
        try:
            yield
        except BaseException:
            self.barrier.abort()
            raise
