"""Data-parallel training on MPI (mpi4py): single.Single's interface for several processes.

One step, on every process:  forward and backward on its share of the global batch, then ONE
all-reduce (sum) of a flat float32 buffer that every gradient array is a view of, followed by a
trailer:  [weight, loss, correct, images, interrupted, gone]. Each process's loss is the weighted
SUM over its share (ShareLoss), so  sum over processes / total weight W  is the gradient of the
whole batch's weighted mean (class weights included), the gradient one process would compute.
The summed flags make every process stop after the same batch; a non-finite summed loss makes
every process raise Diverged at the same batch, before any weight changes.

Batchnorm is synchronised: each layer's statistics are sums over all processes (2 small
all-reduces forward, 1 backward), so a network trains the same at any number of processes.

A process that is killed or crashes must not leave the others waiting: blocking MPI calls are
watched by a thread. It ends this process (rank 0 first says where the run stands) when Hydra
signals another process's failure (SIGUSR1, under `mpiexec -disable-auto-cleanup`, which
`--processes` uses) or when training waits longer than max(CNNCLI_PEER_TIMEOUT, 10 x the slowest
step) for the others, plus the time a slow disk takes to write a checkpoint where rank 0 writes
one (any launcher: srun, mpirun). Setup (decoding, broadcasts) waits without a limit.
"""

import math
import os
import select
import signal
import socket
import sys
import threading
import time

import numpy as np
import mpi4py

mpi4py.rc.thread_level = "funneled"  # only the main thread calls MPI (the watchdog only watches)
from mpi4py import MPI  # noqa: E402  (initialises MPI)

from .single import TRAILER, Agreed, ShareLoss, Single, cpus, threads_per_process  # noqa: E402
from ..errors import CnnError  # noqa: E402
from ..model import Diverged  # noqa: E402

PEER_TIMEOUT = float(os.environ.get("CNNCLI_PEER_TIMEOUT") or 20)  # seconds, at least, that training waits
SLOW_DISK = 10e6  # bytes/s: while rank 0 writes a checkpoint the others also wait size / SLOW_DISK
LOST_EXIT = 1
GONE = "another process of this job ended (killed or crashed: mpiexec names it)"
HINTS = {"cnncli": "install the same cnncli on every machine",
         "data": "every process needs the same data folder",
         "config": "give every process the same config and --set options"}


class Agreement(Agreed):
    """Leaving the block, the processes compare: a CnnError in any, or a fingerprint unlike rank
    0's, becomes the same one-line CnnError in all (naming the process), printed by rank 0."""

    def __init__(self, comm, limit):
        self.comm, self.limit = comm, limit

    def __exit__(self, kind, error, tb):
        if error is not None and not isinstance(error, CnnError):
            return False  # a bug or Ctrl-C in this process alone: the CLI ends the job
        c = self.comm
        reports = c.collective(lambda: c.comm.allgather((None if error is None else str(error), self.fingerprint)),
                               self.limit)
        message = c.first_failure([m for m, _ in reports]) or c.first_difference([f for _, f in reports])
        if message is None:
            return False
        raise c.everywhere(CnnError(message)) from None


class Mpi(Single):
    """Process `rank` of `size`, started by an MPI launcher."""

    @classmethod
    def start(cls):
        return cls(MPI.COMM_WORLD)

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.root = self.rank == 0
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)   # the processes of this machine
        mine = cpus()
        threads = threads_per_process(mine, local.allgather(sorted(mine)))
        local.Free()
        if threads is not None:  # read once by kernels.parallel, which nothing has used yet
            os.environ["CNNCLI_THREADS"] = str(threads)
        self.hosts = comm.allgather(socket.gethostname())
        self.stop = (False, False)
        self.slowest = 0.0       # seconds of the slowest step's own work so far
        self.flat = np.zeros(0, np.float32)
        self.waiting = None      # (since, limit) while in a blocking MPI call
        self.peer_gone = self.closing = False
        self.where = None
        self.share_loss = None
        self._watch()

    # --- the watchdog ---------------------------------------------------------------------
    def _watch(self):
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
            return
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.signal(signal.SIGUSR1, self._on_peer_failure)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)  # wakes the thread while main is inside MPI
        threading.Thread(target=self._watchdog, args=(read,), daemon=True, name="cnncli-watchdog").start()

    def _on_peer_failure(self, signum, frame):
        self.peer_gone = True

    def _watchdog(self, read):
        while True:
            if select.select([read], [], [], 0.25)[0] and signal.SIGUSR1 in os.read(read, 256):
                self.peer_gone = True
            waiting = self.waiting
            if waiting is None:
                continue
            since, limit = waiting
            if self.peer_gone:
                self.lost(GONE)
            elif limit and time.monotonic() - since > limit:
                self.lost(f"the other processes did not answer for {limit:.0f}s (one was killed, crashed or is stuck)")

    def lost(self, reason):
        """The job cannot go on: rank 0 says where the run stands; this process ends at once
        (MPI_Finalize would wait for the lost process forever)."""
        if self.closing:
            return
        self.closing = True
        if self.root:
            where = self.where() if self.where else "before training started; nothing was written"
            _say(f"error: {reason}, {where}")
        _flush()
        os._exit(LOST_EXIT)

    def end_now(self, code):
        """Called at exit after this process alone failed (it has said why): the others must not
        wait for it. Rank 0 ends the job (MPI_Abort). Another rank just ends, without
        MPI_Finalize: the launcher then ends the job, or tells rank 0 (SIGUSR1), or rank 0's
        next step times out, and rank 0 says where the run stands. Ctrl-C: every process got it."""
        _flush()
        if self.root and code != 130:
            self.comm.Abort(code)
        os._exit(code)

    def collective(self, call, limit):
        """call() (a blocking MPI call) under the watchdog's eye."""
        if self.peer_gone:
            self.lost(GONE)
        self.waiting = (time.monotonic(), limit)
        try:
            return call()
        except MPI.Exception:
            self.lost(GONE)
        finally:
            self.waiting = None

    def step_limit(self):
        return max(PEER_TIMEOUT, 10 * self.slowest)

    def write_limit(self):
        return self.step_limit() + 4 * self.flat.nbytes / SLOW_DISK  # weights, 2 optimizer slots, best.npz

    # --- one step ---------------------------------------------------------------------------
    def attach(self, model, where=None):
        """Every gradient becomes a view of one flat buffer (then the trailer); batchnorm sums
        over processes."""
        grads = [(layer, name) for layer in model.layers for name in layer.grads]
        n = sum(layer.grads[name].size for layer, name in grads)
        self.flat = np.zeros(n + len(TRAILER), model.dtype)  # also sizes the waits for checkpoints
        self.grads, self.trailer = self.flat[:n], self.flat[n:]
        at = 0
        for layer, name in grads:
            g = layer.grads[name]
            view = self.grads[at:at + g.size].reshape(g.shape)
            view[...] = g
            layer.grads[name] = view
            at += g.size
        # batch statistics (batchnorm) summed over the processes, passed to each step's layers
        self.reduce = self.total if any(layer.batch_statistics for layer in model.layers) else None
        self.where = where

    def total(self, values):
        """float64 values summed over all processes (synchronised batchnorm, inside a step)."""
        out = np.array(values, np.float64)
        self.collective(lambda: self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM), self.step_limit())
        return out

    def step(self, model, x, y, loss, optimizer, stop=(False, False), rngs=None):
        if self.share_loss is None or self.share_loss.loss is not loss:
            self.share_loss = ShareLoss(loss)
        self.started = time.monotonic()
        self.local_stop = stop
        if len(y):
            model.train_step(x, y, self.share_loss, optimizer, gradients_ready=self.gradients_ready, rngs=rngs,
                             reduce=self.reduce)
        else:  # a last batch smaller than the job: no image here, but every collective of the step
            self.share_loss.nothing()
            model.zero_grad()
            _empty_pass(model, model.context(training=True, rngs=rngs, reduce=self.reduce))
            self.gradients_ready(model)
            optimizer.step(model.trainable_params())
        return self.batch

    def gradients_ready(self, model):
        """The step's one all-reduce; then the gradient of the whole batch's weighted mean loss."""
        self.slowest = max(self.slowest, time.monotonic() - self.started)
        s = self.share_loss
        self.trailer[:] = (s.weight, s.value, s.correct, s.images, *self.local_stop)
        self.collective(lambda: self.comm.Allreduce(MPI.IN_PLACE, self.flat, op=MPI.SUM), self.step_limit())
        weight, value, correct, images, interrupted, gone = (float(v) for v in self.trailer)
        self.stop = (interrupted > 0, gone > 0)
        loss = value / weight if weight > 0 else math.nan
        self.batch = (loss, int(correct), int(images))
        if not math.isfinite(loss):
            raise Diverged(loss)
        self.grads /= self.grads.dtype.type(weight)

    def stopping(self, interrupted, gone):
        return self.stop

    # --- epochs, setup ----------------------------------------------------------------------
    def any(self, flag):
        out = np.array([1 if flag else 0], np.int64)
        self.collective(lambda: self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.MAX), self.step_limit())
        return bool(out[0])

    def agreement(self, limit=None):
        return Agreement(self, limit)

    def root_does(self, fn, *args):
        result = None
        with self.agreement(self.write_limit()):
            if self.root:
                result = fn(*args)
        return result

    def bcast(self, obj):
        return self.collective(lambda: self.comm.bcast(obj, root=0), None)

    def gather(self, obj):
        return self.collective(lambda: self.comm.gather(obj, root=0), self.step_limit())

    def average(self, loss, correct, n):
        sums = np.array([0.0 if loss is None else loss * n, correct, n], np.float64)
        self.collective(lambda: self.comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM), self.step_limit())
        return sums[0] / sums[2], sums[1] / sums[2]

    def share(self, data):
        from ..data.share import Share

        data.train = Share(data.train, self.rank, self.size)
        if data.val is not None:
            data.val = Share(data.val, self.rank, self.size)
        return data

    def seed(self, *key):
        return [*key, self.rank]

    def broadcast_model(self, model):
        arrays = self.bcast(model.state_dict() if self.root else None)
        if not self.root:
            model.load_state_dict(arrays)

    # --- messages ---------------------------------------------------------------------------
    def name(self, rank):
        return f"process {rank} of {self.size} (on {self.hosts[rank]})"

    def first_failure(self, messages):
        for rank, message in enumerate(messages):
            if message:
                return message if rank == 0 else f"{self.name(rank)}: {message}"
        return None

    def first_difference(self, prints):
        for rank, other in enumerate(prints[1:], start=1):
            found = _difference(prints[0], other)
            if found:
                key, ours, theirs = found
                hint = HINTS.get(key.split(".")[0], "start every process the same way")
                return (f"{self.name(rank)} has {key} = {_short(theirs)} where {self.name(0)} has "
                        f"{_short(ours)}: {hint}")
        return None


def _empty_pass(model, ctx):
    """A process without images in a batch joins each batchnorm's sums in the order a step makes
    them: forward front to back, backward back to front (with zero rows, so it adds nothing).
    Frozen batchnorms (train.freeze, train.freeze_batchnorm) run in inference mode in a step and
    sum nothing: left out."""
    norms = [layer for i, layer in enumerate(model.layers) if layer.batch_statistics and i not in model.still]
    for layer in norms:
        layer.forward(np.zeros((0,) + layer.in_shape, model.dtype), ctx)
    for layer in reversed(norms):
        layer.backward(np.zeros((0,) + layer.out_shape, model.dtype), ctx, need_dx=False)


def _difference(a, b, path=""):
    """The first dotted key where two nested values differ -> (key, a's, b's), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:  # in rank 0's order
            found = _difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _short(value, width=60):
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def _say(line):
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
    except (OSError, ValueError):
        pass


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
