"""A training step's shards 1.. in worker processes (parallel/processes.py): the same bits as the
thread shards, step after step, with batchnorm, dropout, frozen layers and replaced arrays; a
worker that fails or dies fails the step with its own error, and the next step starts fresh ones."""

import os
import signal
import threading

import numpy as np
import pytest

from cnncli.engine.losses import Loss
from cnncli.engine.mixed import Mixed
from cnncli.kernels.parallel import n_threads
from cnncli.model import Model
from cnncli.parallel import processes

NET = [("conv", {"filters": 8, "size": 3, "padding": "same", "activation": "relu"}),
       ("batchnorm", {}),
       ("maxpool", {"size": 2}),
       ("conv", {"filters": 16, "size": 3, "padding": 1, "activation": "leaky_relu"}),   # winograd
       ("batchnorm", {}), ("avgpool", {"size": 2}), ("flatten", {}),
       ("dense", {"units": 12, "activation": "tanh"}), ("dropout", {"rate": 0.4}),
       ("dense", {"units": 3, "activation": "softmax"})]


@pytest.fixture(autouse=True)
def _workers_possible(monkeypatch):
    if n_threads() < 2:
        pytest.skip("shards need 2 or more threads (CNNCLI_THREADS)")
    monkeypatch.delenv("CNNCLI_SHARD_PROCESSES", raising=False)
    if not processes.available():
        pytest.skip("no worker processes here (not Linux, or under an MPI launcher)")


def _steps(model, batches, loss=Loss("softmax", smoothing=0.1), lr=0.05):
    """Training steps (gradients, then plain SGD in place) -> [(loss, probabilities, grads, state)]."""
    out = []
    for x, y in batches:
        value, probs = model.gradients(x, y, loss)
        grads = {k: g.copy() for k, _, g in model.named_params()}
        for _, p, g in model.trainable_params():
            p -= lr * g
        out.append((value, probs, grads, model.state_dict()))
    return out


def _same(a, b):
    for (va, pa, ga, sa), (vb, pb, gb, sb) in zip(a, b, strict=True):
        assert va == vb
        assert np.array_equal(pa, pb)
        for k in ga:
            assert np.array_equal(ga[k], gb[k]), k
        for k in sa:
            assert np.array_equal(sa[k], sb[k]), k   # running statistics too


def _threads(monkeypatch, fn):
    monkeypatch.setenv("CNNCLI_SHARD_PROCESSES", "0")
    try:
        return fn()
    finally:
        monkeypatch.delenv("CNNCLI_SHARD_PROCESSES")


def _batches(rng, sizes):
    return [(rng.standard_normal((n, 12, 12, 3)).astype(np.float32), np.arange(n) % 3) for n in sizes]


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("frozen", [(), (0, 1)])
def test_worker_processes_give_the_thread_shards_bits(rng, monkeypatch, frozen):
    """Batch sizes 11 (the first step: threads), 9 (the workers start), 16 (a larger part: new
    workers), 16, with batchnorm's whole-batch statistics, dropout masks and the optimizer's
    in-place updates."""
    batches = _batches(rng, [11, 9, 16, 16])
    procs = Model((12, 12, 3), NET, seed=5)
    procs.freeze(frozen)
    held = [a for layer in procs.layers for a in (*layer.params.values(), *layer.buffers.values())]
    a = _steps(procs, batches)
    # the model's arrays are the ones it had: an EMA holding them sees the steps
    now = [a for layer in procs.layers for a in (*layer.params.values(), *layer.buffers.values())]
    assert len(now) == len(held) and all(a is b for a, b in zip(now, held))
    assert procs.shards.workers is not None and len(procs.shards.workers.pids()) == n_threads() - 1
    threads = Model((12, 12, 3), NET, seed=5)
    threads.freeze(frozen)
    b = _threads(monkeypatch, lambda: _steps(threads, batches))
    assert threads.shards.workers is None
    _same(a, b)
    assert any(np.abs(g).sum() > 0 for g in a[-1][2].values())


@pytest.mark.parametrize("kind", ["weighted mixed labels", "another loss between steps"])
def test_each_worker_takes_its_part_of_the_loss_as_a_thread_does(rng, monkeypatch, kind):
    """A worker takes its shard's part of the loss itself, with the labels and the whole batch's
    normaliser from the training process: class weights with mixed labels, and a loss given in
    place of another between steps of the same workers (sent to them again), give the thread
    shards' bits."""
    batches = _batches(rng, [11, 16, 16, 16])      # the workers start at the second step, and stay
    if kind == "weighted mixed labels":
        batches = [(x, Mixed(y, (y + 1) % 3, rng.uniform(0, 1, len(y)).astype(np.float32))) for x, y in batches]
        losses = [Loss("softmax", 0.1, [1.0, 2.5, 0.4])] * 4
    else:
        other = Loss("softmax", 0.2, [0.5, 1.0, 3.0])
        losses = [Loss("softmax"), Loss("softmax"), other, other]

    def run(model):
        return [step for (x, y), loss in zip(batches, losses) for step in _steps(model, [(x, y)], loss)]

    procs = Model((12, 12, 3), NET, seed=2)
    a = run(procs)
    assert procs.shards.workers is not None and len(procs.shards.workers.pids()) == n_threads() - 1
    b = _threads(monkeypatch, lambda: run(Model((12, 12, 3), NET, seed=2)))
    _same(a, b)


def test_arrays_the_model_was_given_between_steps_reach_the_workers(rng, monkeypatch):
    """A checkpoint loaded in place, a parameter array replaced, a layer's dicts made anew."""
    batches = _batches(rng, [10, 10, 10, 10])
    other = Model((12, 12, 3), NET, seed=9)

    def run(m):
        out = _steps(m, batches[:1])
        m.load_state_dict(other.state_dict())
        out += _steps(m, batches[1:2])
        m.layers[3].params["weight"] = other.layers[3].params["weight"] * 0.5
        out += _steps(m, batches[2:3])
        m.layers[7].init_params(np.random.default_rng(3), m.dtype, "tanh")   # new dicts
        return out + _steps(m, batches[3:])

    a = run(Model((12, 12, 3), NET, seed=5))
    b = _threads(monkeypatch, lambda: run(Model((12, 12, 3), NET, seed=5)))
    _same(a, b)


@pytest.mark.parametrize("where", ["training process", "worker"])
def test_a_failing_shard_fails_the_step_with_its_own_error_and_the_next_step_runs(rng, monkeypatch, where):
    """Within seconds (the step runs in a thread of its own: a hang fails the test)."""
    from cnncli.layers.batchnorm import BatchNorm

    m = Model((12, 12, 3), NET, seed=0)
    (x, y), = _batches(rng, [9])
    for _ in range(2):                       # the workers are forked (at the second step) before ...
        m.gradients(x, y, Loss("softmax"))   # ... the layer turns flaky ...
    real, me = BatchNorm.backward, os.getpid()
    first = m.shards.workers.pids()

    def flaky(self, *args, **kwargs):
        if (os.getpid() == me) == (where == "training process"):
            raise RuntimeError("boom")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BatchNorm, "backward", flaky)
    m.shards.workers.stop()                  # ... so: new ones, which have it
    outcome = []

    def step():
        try:
            m.gradients(x, y, Loss("softmax"))
            outcome.append(None)
        except BaseException as e:   # noqa: BLE001 -- handed to the test's thread below
            outcome.append(e)

    runner = threading.Thread(target=step, daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the step hung"
    assert isinstance(outcome[0], RuntimeError) and "boom" in str(outcome[0])
    assert m.shards.workers.pids() == [] and not any(map(_alive, first))
    monkeypatch.setattr(BatchNorm, "backward", real)
    value, _ = m.gradients(x, y, Loss("softmax"))
    assert np.isfinite(value) and len(m.shards.workers.pids()) == n_threads() - 1


def test_a_killed_worker_fails_one_step_with_a_clear_error_then_training_goes_on(rng, monkeypatch):
    import copy

    batches = _batches(rng, [10, 10, 10, 10])
    m = Model((12, 12, 3), NET, seed=5)
    _steps(m, batches[:2])
    pid = m.shards.workers.pids()[0]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(processes.WorkerError, match="worker process ended unexpectedly.*CNNCLI_SHARD_PROCESSES=0"):
        m.gradients(*batches[2], Loss("softmax", smoothing=0.1))
    assert not _alive(pid)        # ended and reaped
    t = Model((12, 12, 3), NET, seed=0)      # where m stands now (the failed step drew its dropout masks)
    t.load_state_dict(m.state_dict())
    t.rngs = copy.deepcopy(m.rngs)
    a = _steps(m, batches[2:])
    b = _threads(monkeypatch, lambda: _steps(t, batches[2:]))
    _same(a, b)


def test_freezing_and_dropping_the_model_end_its_workers(rng):
    m = Model((12, 12, 3), NET, seed=5)
    _steps(m, _batches(rng, [8, 8]))
    before = m.shards.workers.pids()
    m.freeze([0, 1])                         # new shards: the old ones' workers are ended
    assert before and not any(map(_alive, before))
    _steps(m, _batches(rng, [8, 8]))
    after = m.shards.workers.pids()
    assert after and set(after).isdisjoint(before)
    del m
    import gc

    gc.collect()
    assert not any(map(_alive, after))


def test_switched_off_or_under_an_mpi_launcher_the_shards_are_threads(monkeypatch):
    monkeypatch.setenv("CNNCLI_SHARD_PROCESSES", "0")
    assert not processes.available()
    monkeypatch.delenv("CNNCLI_SHARD_PROCESSES")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    assert not processes.available()


def test_workers_hold_none_of_the_training_process_pipes(rng):
    """A helper reading a pipe until EOF (the curves.png helper) must see it when the training
    process closes its end, not wait on a copy a worker inherited."""
    r, w = os.pipe()
    try:
        m = Model((12, 12, 3), NET, seed=5)
        _steps(m, _batches(rng, [8, 8]))
        pid = m.shards.workers.pids()[0]
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert f"pipe:[{os.fstat(w).st_ino}]" not in held
        os.close(w)
        w = None
        assert os.read(r, 1) == b""          # EOF at once
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_a_training_run_gives_the_same_weights_with_worker_processes_or_threads(tmp_path, monkeypatch):
    """The whole of `cnncli train` (augmentation, dropout, Adam, cosine schedule, validation, best
    and last checkpoints): the same bits either way."""
    from cnncli.commands.train import train
    from cnncli.engine.progress import QuietReporter

    from .test_train import assert_same_weights, weights, write_config

    steps, real = [], processes.Workers.gradients
    monkeypatch.setattr(processes.Workers, "gradients", lambda self, *a: steps.append(1) or real(self, *a))
    a = train(write_config(tmp_path, "processes"), reporter=QuietReporter())
    assert len(steps) > 5                    # the steps ran in worker processes
    b = _threads(monkeypatch, lambda: train(write_config(tmp_path, "threads"), reporter=QuietReporter()))
    for name in ("last.npz", "best.npz"):
        assert_same_weights(weights(a.output, name), weights(b.output, name))
    rows = [(r.output / "metrics.csv").read_text().splitlines() for r in (a, b)]
    assert [r.rsplit(",", 3)[0] for r in rows[0]] == [r.rsplit(",", 3)[0] for r in rows[1]]


def _forked_children():
    """This process's children that are forks of it (same command line): shard workers."""
    me = open("/proc/self/cmdline", "rb").read()
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    out = []
    for pid in pids:
        try:
            if open(f"/proc/{pid}/cmdline", "rb").read() == me:
                out.append(pid)
        except FileNotFoundError:
            pass
    return out


def test_a_worker_killed_mid_run_stops_training_with_one_line_saying_how_to_go_on(tmp_path):
    """As when the kernel's out-of-memory killer picks the worker: a CnnError (the CLI's one line,
    exit 2, no traceback) naming what happened and the resume command; last.npz of the last
    finished epoch is intact, and resuming trains to the end."""
    from cnncli.commands.train import train
    from cnncli.engine.progress import QuietReporter
    from cnncli.errors import CnnError

    from .test_train import weights, write_config

    class KillWorkerAt(QuietReporter):
        def epoch_start(self, epoch, epochs, n_batches, start_batch):
            super().epoch_start(epoch, epochs, n_batches, start_batch)
            self.epoch = epoch

        def batch(self, done, loss, acc, images_per_s):
            if (self.epoch, done) == (1, 2):
                killed = _forked_children()
                assert killed, "no worker process to kill"
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)

    cfg = write_config(tmp_path, "run")
    with pytest.raises(CnnError) as e:
        train(cfg, reporter=KillWorkerAt())
    msg = str(e.value)
    assert "worker process ended unexpectedly" in msg and "in epoch 2 at batch 3" in msg, msg
    assert "last.npz (after epoch 1) is intact" in msg and "cnncli train --resume" in msg, msg
    kept = weights(tmp_path / "run")
    res = train(resume=tmp_path / "run", reporter=QuietReporter())
    assert res.state.epoch == 3 and res.state.finished == "epochs"
    assert set(weights(res.output)) == set(kept)
