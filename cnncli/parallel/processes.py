"""A training step's shards after the first, in worker processes (Linux): threads.py's shards,
each in a process of its own, because Python threads lose to the interpreter lock.

Between its kernels a shard runs Python, which needs the interpreter lock; two threads of one
process take turns at it, and on a virtual machine each turn wakes a sleeping CPU. Measured on
the 2-core Xeon guest, one 32-image training pass of LeNet-5: 2.8 ms alone, 4.2-4.3 ms each in
two threads of one process, 3.2 ms each in two processes (ResNet-20: 122, 144-155 and 123-125).

The workers are forked from the training process at its second step with shards (the first
runs in threads and compiles the kernels, which the workers then inherit), so they hold the
model as it is then. Before each step the model's parameters and buffers (batchnorm's
running statistics) are copied into shared memory that the workers' shards read: the model's own
arrays stay where they are (the optimizer, EMA and a warm-up net hold them), at the cost of one
copy of the parameters a step (LeNet-5: 62 k values). Each worker's gradients, and its part of
the batch, are shared memory too; its labels (and the loss, when it is another), its part of the
loss and its probabilities, dropout masks and batchnorm's sums go by pipe. A worker takes its
part of the loss itself and goes on to its backward (shard_step): sending its logits for the
training process to take the loss over the whole batch, and waiting for dL/dlogits, kept the
training process waiting 144 us and the worker 240 us of a 2.9 ms LeNet-5 step (batch 64);
training images/s went up 3-4% (bench_trees, session 17). Shard k's work and the order of every
sum are the threads' (threads.ThreadTotal's order for batchnorm, shard order for the
gradients), so a step gives the same bits either way. The
workers are started again when what they copied changes (the layers, their arrays' shapes, the
frozen layers, a larger part of the batch) and after a step that failed anywhere. They end with
the model's shards (freeze makes new ones), with the process, or at EOF on their pipe.

Not where fork() is unsafe or missing (macOS, Windows), under an MPI launcher (forking an MPI
process is not supported), or with CNNCLI_SHARD_PROCESSES=0: there the shards are threads.
"""

import mmap
import os
import signal
import sys
import time
import weakref
from multiprocessing import Pipe

import numpy as np

from .single import launched


# A process waiting for the other's message polls its pipe this long before it sleeps in recv():
# a sleeping process's virtual CPU halts, and waking it costs more than the wait (ResNet-20,
# batch 64: 63 batchnorm sums a step, 24-26 ms of each process's 160-169 ms step spent in them).
SPIN_SECONDS = 0.001
# A worker waiting for its next step polls this long, yielding its core to any other runnable
# thread (the prefetch thread, the curves helper) at each turn: a worker that slept between steps
# ran its step 20-30% slower than the training process ran the same work, its Python as much as
# its kernels (why, not measured: its virtual CPU halted, the caches refilled after?). LeNet-5,
# batch 64: 4.3-4.6 -> 3.6-3.7 ms a step, the worker's forward 1.42 -> 1.15 ms against the
# training process's 1.12 -> 1.09.
BETWEEN_STEPS_SPIN_SECONDS = 0.005


def available():
    """Processes for the shards here? Linux, no MPI launcher, not switched off."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork") and launched() is None
            and os.environ.get("CNNCLI_SHARD_PROCESSES", "1") != "0")


def shared(a):
    """A copy of array a in memory that forked processes share (anonymous, MAP_SHARED)."""
    buf = mmap.mmap(-1, max(a.nbytes, 1))
    out = np.frombuffer(buf, a.dtype, a.size).reshape(a.shape)
    out[...] = a
    return out


class WorkerError(RuntimeError):
    """A shard's worker process ended or answered out of turn."""


class Workers:
    """The worker processes of one model's shards 1..T-1, and the shared arrays they use."""

    def __init__(self):
        self._procs = []      # [(pid, connection)], shard 1 first
        self._key = None
        self._copies = []     # [(layer index, "params" or "buffers", name, shared copy)]
        self._grads = []      # per worker: [(layer index, name, shared gradient)]
        self._x = []          # per worker: its part of the batch (capacity rows)
        self._loss = None     # the loss the workers hold (sent again when another is given)
        self._finalizer = weakref.finalize(self, _stop, self._procs)

    def stop(self):
        _stop(self._procs)
        self._key = None

    def pids(self):
        """The running workers' process ids, shard 1 first."""
        return [pid for pid, _ in self._procs]

    def gradients(self, model, shards, pieces, x, loss, labels, diverged, ctx, masks, plan):
        """threads.Shards.gradients' step with shards[1:] in the workers -> (loss, probabilities).
        ctx: the step's Context; masks: each shard's dropout masks. Each process transforms its
        own Winograd filters (the threads share one set), after the workers have their orders."""
        from ..kernels.parallel import serial

        try:
            self._ready(model, shards, pieces, x, ctx.frozen)
            whole = loss.total(labels)
            new_loss = None if loss is self._loss else loss    # the workers keep the one they were sent
            for (lo, hi), xb, (_, conn), m in zip(pieces[1:], self._x, self._procs, masks[1:]):
                xb[:hi - lo] = x[lo:hi]
                conn.send(("forward", hi - lo, m, np.geterr(), new_loss, labels[lo:hi], whole))
            self._loss = loss
            lo, hi = pieces[0]
            ctx = ctx.but(masks=masks[0], tiles=model.step_tiles(), reduce=self._total, keeps_running=True)
            with serial():
                parts = [shard_step(shards[0], x[lo:hi], labels[lo:hi], loss, whole, ctx, plan)]
            parts += [_expect(conn, "done")[1:] for _, conn in self._procs]
            value, probs = joined(parts, loss, labels)
            diverged(value)
            for grads in self._grads:     # onto the model's, in shard order (as threads.py adds them)
                for i, name, g in grads:
                    model.layers[i].grads[name] += g
            return value, probs
        except BaseException:
            self.stop()                   # a worker may be mid-step: the next step starts fresh ones
            raise

    def _total(self, values):
        """Batchnorm's sum over the shards, shard 0's side: threads.ThreadTotal's order."""
        out = np.asarray(values, np.float64).copy()
        for _, conn in self._procs:
            out += _expect(conn, "sum")[1]
        for _, conn in self._procs:
            conn.send(("total", out))
        return out

    def _ready(self, model, shards, pieces, x, frozen):
        """Start the workers if none run or what they copied has changed; copy the model's
        parameters and buffers into the workers' shared copies (the optimizer has just changed
        them). The model's own arrays are never replaced: others hold them (EMA, a warm-up net)."""
        capacity = max(hi - lo for lo, hi in pieces[1:])
        key = (len(pieces), tuple(map(id, model.layers)), frozen, x.shape[1:],
               tuple((kind, n, a.shape, a.dtype) for layer in model.layers for kind in ("params", "buffers", "grads")
                     for n, a in getattr(layer, kind).items()))
        if self._key is not None and self._key[:-1] == key and self._key[-1] >= capacity:
            for i, kind, name, a in self._copies:
                a[...] = getattr(model.layers[i], kind)[name]
            return
        self.stop()
        self._loss = None
        self._copies = [(i, kind, name, shared(a)) for i, layer in enumerate(model.layers)
                        for kind in ("params", "buffers") for name, a in getattr(layer, kind).items()]
        self._grads, self._x = [], []
        for shard in shards[1:]:
            grads = []
            for i, layer in enumerate(shard.layers):
                layer.grads = {n: shared(g) for n, g in layer.grads.items()}
                grads += [(i, n, g) for n, g in layer.grads.items()]
            self._grads.append(grads)
            self._x.append(shared(np.zeros((capacity,) + x.shape[1:], model.dtype)))
        self._start(shards)
        self._key = key + (capacity,)

    def _start(self, shards):
        from numba.core.compiler_lock import global_compiler_lock

        with global_compiler_lock:   # no thread is compiling or loading a kernel as the process is copied
            for shard, xb in zip(shards[1:], self._x):
                mine, theirs = Pipe()
                pid = os.fork()
                if pid == 0:     # the worker: it never returns from here
                    code = 1
                    try:
                        _close_inherited(keep=theirs.fileno())
                        _serve(theirs, shard, xb, self._copies)
                        code = 0
                    finally:
                        os._exit(code)
                theirs.close()
                self._procs.append((pid, mine))


def shard_step(shard, x, labels, loss, whole, ctx, plan):
    """One shard's forward, its part of the loss (whole: the batch's normaliser, Loss.total) and
    backward, with no wait for the other shards' logits -> (the part's loss, its probabilities).
    In a thread, the training process, or a worker."""
    value, dlogits, probs = loss(shard.forward(x, ctx=ctx, plan=plan), labels, whole)
    shard.backward(np.ascontiguousarray(dlogits), ctx=ctx)
    return value, probs


def joined(parts, loss, labels):
    """The shards' [(part of the loss, probabilities)], in shard order -> the step's (loss,
    probabilities): the parts added in that order, the same bits in threads (threads.py) and processes."""
    value = 0.0
    for part, _ in parts:
        value += part
    probs = np.concatenate([p for _, p in parts])
    return loss.finish(value, probs, labels), probs


def _close_inherited(keep):
    """In a new worker: close every file descriptor but stdin, stdout, stderr and its pipe. It
    must not hold the training process's pipes open (a helper waiting for EOF on one, such as
    the curves.png helper, would wait forever), nor files and sockets it has no use for."""
    os.closerange(3, keep)
    os.closerange(keep + 1, max(os.sysconf("SC_OPEN_MAX"), keep + 1))


def _stop(procs):
    """End the workers (they hold nothing worth keeping: the gradients are the next step's)."""
    for pid, conn in procs:
        conn.close()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    procs.clear()


def _expect(conn, what):
    """The next message, which must be `what`; an error sent instead is raised here. Waits
    awake for up to SPIN_SECONDS first (see there)."""
    try:
        msg = _receive(conn, SPIN_SECONDS)
    except (EOFError, OSError):
        raise WorkerError("a shard's worker process ended unexpectedly (killed, or out of memory?); "
                          "CNNCLI_SHARD_PROCESSES=0 keeps the shards in threads") from None
    if msg[0] == "error":
        raise msg[1]
    if msg[0] != what:
        raise WorkerError(f"a shard's worker answered {msg[0]!r} where {what!r} was due")
    return msg


def _receive(conn, spin, relent=False):
    """conn.recv(), after polling for up to `spin` seconds (with os.sched_yield() between polls
    where relent: other threads that are ready to run get the core first)."""
    end = time.perf_counter() + spin
    while not conn.poll() and time.perf_counter() < end:
        if relent:
            os.sched_yield()
    return conn.recv()


def _serve(conn, shard, xb, copies):
    """A worker's loop: one step of its shard per "forward" message, until EOF. Its shard's
    layers read the shared copies of the parameters and buffers (in this process only)."""
    from ..kernels.parallel import serial

    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C is the training process's to handle
    for layer in shard.layers:
        layer.params, layer.buffers = dict(layer.params), dict(layer.buffers)
    for i, kind, name, a in copies:
        getattr(shard.layers[i], kind)[name] = a

    def total(values):
        conn.send(("sum", np.asarray(values, np.float64)))
        return _expect(conn, "total")[1]

    loss = None
    with serial():
        while True:
            try:
                msg = _receive(conn, BETWEEN_STEPS_SPIN_SECONDS, relent=True)
            except EOFError:
                return
            try:
                if msg[4] is not None:     # the loss, when the training process was given another
                    loss = msg[4]
                with np.errstate(**msg[3]):
                    _step(conn, shard, xb[:msg[1]], msg[2], total, loss, msg[5], msg[6])
            except BaseException as e:   # the training process raises it (the step fails there)
                try:
                    conn.send(("error", e))
                except Exception:
                    conn.send(("error", WorkerError(f"{type(e).__name__}: {e}")))
            finally:
                for layer in shard.layers:
                    layer.forget(workspace=False)


def _step(conn, shard, x, masks, total, loss, labels, whole):
    """The worker's shard_step -> ("done", the part's loss, its probabilities)."""
    ctx = shard.context(training=True).but(masks=masks, tiles=shard.step_tiles(), reduce=total, keeps_running=False)
    shard.zero_grad()
    conn.send(("done",) + shard_step(shard, x, labels, loss, whole, ctx, shard.frozen_plan()))
