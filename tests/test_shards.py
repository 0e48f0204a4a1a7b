"""Shards: each thread runs its share of the batch through the whole network (parallel/threads.py). The
same step as layer by layer: loss, probabilities, gradients and dropout masks."""

import threading

import numpy as np
import pytest

from cnncli.kernels.parallel import n_threads, run_chunks, serial
from cnncli.engine.losses import Loss
from cnncli.model import Diverged, Model
from cnncli.engine.mixed import Mixed


@pytest.fixture(autouse=True)
def _two_threads():
    """Shards need 2 or more threads (CNNCLI_THREADS). Asked when a test runs, not at import: the
    first n_threads() also makes BLAS single-threaded and sets malloc's thresholds, for the whole
    process, which collecting the tests must not do to the other test files."""
    if n_threads() < 2:
        pytest.skip("shards need 2 or more threads (CNNCLI_THREADS)")


NET = [("conv", {"filters": 16, "size": 5, "padding": "same", "activation": "relu"}),
       ("maxpool", {"size": 2}),
       ("conv", {"filters": 32, "size": 3, "padding": 1, "activation": "leaky_relu"}),   # winograd (16x16)
       ("avgpool", {"size": 2}), ("flatten", {}),
       ("dense", {"units": 20, "activation": "tanh"}), ("dropout", {"rate": 0.4}),
       ("dense", {"units": 4, "activation": "softmax"})]


def _layer_by_layer(model, monkeypatch):
    monkeypatch.setattr(model.shards, "usable", lambda n, ctx: False)


def _step(model, x, labels, loss):
    value, probs = model.gradients(x, labels, loss)
    return value, probs, {k: g.copy() for k, _, g in model.named_params()}


@pytest.mark.parametrize("labels_kind", ["plain", "mixed", "multi-label", "binary"])
def test_a_sharded_step_equals_the_layer_by_layer_step(rng, monkeypatch, labels_kind):
    """Each shard takes its part of the loss (the whole batch's normaliser): every head, class
    weights, smoothing and mixed labels give the one-thread step's loss, probabilities and gradients."""
    x = rng.standard_normal((11, 32, 32, 3)).astype(np.float32)
    y = np.arange(11) % 4
    net, loss = NET, Loss("softmax", smoothing=0.1, class_weights=[1.0, 2.0, 0.5, 1.5])
    labels = y if labels_kind == "plain" else Mixed(y, (y + 1) % 4, rng.uniform(0, 1, 11).astype(np.float32))
    if labels_kind == "multi-label":
        net = NET[:-1] + [("dense", {"units": 4, "activation": "sigmoid"})]
        labels, loss = (rng.uniform(0, 1, (11, 4)) > 0.5).astype(np.float32), Loss("multilabel", 0.1, [1.0, 2.0, 0.5, 3.0])
    elif labels_kind == "binary":
        net = NET[:-1] + [("dense", {"units": 1, "activation": "sigmoid"})]
        labels, loss = y % 2, Loss("sigmoid", 0.1, [0.7, 1.6])
    sharded = Model((32, 32, 3), net, seed=4)
    assert sharded.layers[2].algorithm == "winograd" and sharded.shards.usable(11, sharded.context(training=True))
    plain = Model((32, 32, 3), net, seed=4)
    _layer_by_layer(plain, monkeypatch)
    a, b = _step(sharded, x, labels, loss), _step(plain, x, labels, loss)
    assert a[0] == pytest.approx(b[0], rel=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-7)
    for k in a[2]:                         # the same dropout masks: the same gradients
        np.testing.assert_allclose(a[2][k], b[2][k], rtol=1e-4, atol=1e-6, err_msg=k)
    assert any(np.abs(g).sum() > 0 for g in a[2].values())


def test_sharded_steps_are_bit_identical_run_to_run(rng):
    x, y = rng.standard_normal((9, 32, 32, 3)).astype(np.float32), np.arange(9) % 4
    runs = []
    for _ in range(2):
        m = Model((32, 32, 3), NET, seed=1)
        runs.append(_step(m, x, y, Loss("softmax")))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][2]:
        np.testing.assert_array_equal(runs[0][2][k], runs[1][2][k], err_msg=k)


BN_NET = [("conv", {"filters": 16, "size": 3, "padding": 1, "bias": False}), ("batchnorm", {}), ("relu", {}),
             ("conv", {"filters": 16, "size": 3, "padding": 1, "from": -3}), ("add", {"from": [-2, -1]}),
             ("globalavgpool", {}), ("dense", {"units": 3, "activation": "softmax"})]


def test_sharded_inference_equals_one_thread(rng, monkeypatch):
    """Inference splits every network, batchnorm included (running statistics)."""
    m = Model((10, 10, 4), BN_NET, seed=0)
    m.layers[1].buffers["running_mean"][:] = rng.standard_normal(16)
    x = rng.standard_normal((7, 10, 10, 4)).astype(np.float32)
    assert m.shards.usable(7, m.context())
    split = m.predict_proba(x)
    _layer_by_layer(m, monkeypatch)
    np.testing.assert_allclose(split, m.predict_proba(x), rtol=1e-6, atol=1e-7)


def test_a_diverged_sharded_step_changes_no_weight(rng):
    """Each shard goes from its part of the loss to its backward without waiting for the others:
    the step raises Diverged after the backward, and no weight changes (the optimizer never runs)."""
    from cnncli.engine.optim import SGD

    m = Model((32, 32, 3), NET, seed=0)
    before = {k: p.copy() for k, p, _ in m.named_params()}
    x = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
    x[2, 3, 3, 0] = np.nan
    with pytest.raises(Diverged), np.errstate(invalid="ignore", over="ignore"):
        m.train_step(x, np.arange(4) % 4, Loss("softmax"), SGD(m.named_params(), 0.1, momentum=0.9))
    for k, p, _ in m.named_params():
        np.testing.assert_array_equal(p, before[k], err_msg=k)


def test_inside_a_shard_kernels_split_nothing_further():
    calls = []
    with serial():
        run_chunks(100, lambda lo, hi: calls.append((lo, hi)))
    assert calls == [(0, 100)]
    calls.clear()
    run_chunks(100, lambda lo, hi: calls.append((lo, hi)))
    assert len(calls) == min(n_threads(), 100)


def test_a_sharded_step_with_batchnorm_uses_the_whole_batch_statistics(rng, monkeypatch):
    """The shards meet in batchnorm's sums: loss, gradients and running statistics as one thread
    computes them over the whole batch (9 images: on 2 threads, shards of 4 and 5)."""
    x, y = rng.standard_normal((9, 10, 10, 4)).astype(np.float32) * 2 + 1, np.arange(9) % 3
    runs = []
    for split in (True, False):
        m = Model((10, 10, 4), BN_NET, seed=6)
        if not split:
            _layer_by_layer(m, monkeypatch)
        assert m.shards.usable(9, m.context(training=True)) is split
        runs.append(_step(m, x, y, Loss("softmax")) + ({k: v.copy() for k, v in m.layers[1].buffers.items()},))
    (la, pa, ga, ba), (lb, pb, gb, bb) = runs
    assert la == pytest.approx(lb, rel=1e-6)
    for k in ga:
        np.testing.assert_allclose(ga[k], gb[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for k in ba:    # updated once, not once per shard
        np.testing.assert_allclose(ba[k], bb[k], rtol=1e-6, err_msg=k)


def test_a_network_of_many_multiply_adds_per_image_runs_layer_by_layer(monkeypatch):
    """SHARD_MAX_MACS: NET (2.4 M multiply-adds per image) splits into shards; the same at
    a bound just under its count, as ResNet-18 at 224 (1.81 G) under the real one, runs layer by
    layer, in training and inference, and its step is the layer-by-layer step."""
    from cnncli.parallel import threads

    m = Model((32, 32, 3), NET, seed=0)
    assert m.shards.macs == 32 * 32 * 16 * 75 + 16 * 16 * 32 * 144 + 2048 * 20 + 20 * 4
    assert m.shards.usable(8, m.context(training=True)) and m.shards.usable(8, m.context())
    monkeypatch.setattr(threads, "SHARD_MAX_MACS", m.shards.macs - 1)
    assert not m.shards.usable(8, m.context(training=True)) and not m.shards.usable(8, m.context())
    big = Model((224, 224, 3), [("conv", {"filters": 64, "size": 7, "stride": 2, "padding": 3}),
                                ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})],
                build_params=False)
    monkeypatch.setattr(threads, "SHARD_MAX_MACS", 100_000_000)
    assert big.shards.macs == 112 * 112 * 64 * 147 + 64 * 2 and not big.shards.usable(16, big.context())


def test_batchnorm_synchronised_over_processes_trains_layer_by_layer():
    m = Model((10, 10, 4), BN_NET, seed=0)
    over_processes = m.context(training=True, reduce=lambda values: values)   # as parallel/mpi.py passes it
    assert not m.shards.usable(8, over_processes) and m.shards.usable(8, m.context())


@pytest.mark.parametrize("where", ["calling thread", "pool thread"])
def test_a_failing_shard_releases_the_others_and_shows_its_own_error(rng, monkeypatch, where):
    """One shard raising inside a step breaks the batchnorm barrier: no thread waits forever (the
    step ends within seconds, in a thread of its own so that a hang fails the test), the error
    raised is the one that broke the barrier, even when the calling thread's shard only saw the
    broken barrier, and the next step runs. Thread shards (test_processes.py: worker processes)."""
    from cnncli.layers.batchnorm import BatchNorm

    monkeypatch.setenv("CNNCLI_SHARD_PROCESSES", "0")

    m = Model((10, 10, 4), BN_NET, seed=0)
    real = BatchNorm.forward
    x = rng.standard_normal((9, 10, 10, 4)).astype(np.float32)
    outcome = []

    def flaky(self, x, ctx, **then):
        if (threading.current_thread() is runner) == (where == "calling thread"):
            raise RuntimeError("boom")
        return real(self, x, ctx, **then)

    def step():        # the thread calling gradients: its own shard runs on it
        try:
            m.gradients(x, np.arange(9) % 3, Loss("softmax"))
            outcome.append(None)
        except BaseException as e:   # noqa: BLE001 -- handed to the test's thread below
            outcome.append(e)

    monkeypatch.setattr(BatchNorm, "forward", flaky)
    runner = threading.Thread(target=step, daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the step hung: a shard waits at the barrier forever"
    assert isinstance(outcome[0], RuntimeError) and "boom" in str(outcome[0])
    monkeypatch.setattr(BatchNorm, "forward", real)
    value, _ = m.gradients(x, np.arange(9) % 3, Loss("softmax"))   # the pool thread is free again
    assert np.isfinite(value)


def test_shards_made_after_a_one_thread_step_share_no_workspace(rng):
    """A one-image step runs layer by layer and leaves the conv's kept columns on the layer; the
    shards copied from it afterwards must not all write into that one buffer (review finding)."""
    specs = [("conv", {"filters": 20, "size": 3, "padding": "same"}), ("maxpool", {"size": 2}),
             ("flatten", {}), ("dense", {"units": 3, "activation": "softmax"})]   # > 16 filters: columns
    x, y = rng.standard_normal((2, 6, 6, 3)).astype(np.float32), np.array([0, 2])
    used = Model((6, 6, 3), specs, seed=3)
    used.gradients(x[:1], y[:1], Loss("softmax"))
    assert used.layers[0]._workspace is not None     # the kept columns the shards must not share
    fresh = Model((6, 6, 3), specs, seed=3)
    for _ in range(2):     # the first sharded step, and the next (when shards keep their workspaces)
        a, b = _step(used, x, y, Loss("softmax")), _step(fresh, x, y, Loss("softmax"))
        for k in a[2]:
            np.testing.assert_allclose(a[2][k], b[2][k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_shards_keep_their_gradient_arrays_across_an_evaluation(rng, monkeypatch):
    """A training step after a prediction reuses each shard's gradient arrays (no new set per
    validation), and shard 0 adds into the model's own. Thread shards (worker processes' shards
    get shared-memory gradients once, when the workers start: test_processes.py)."""
    monkeypatch.setenv("CNNCLI_SHARD_PROCESSES", "0")
    x, y = rng.standard_normal((8, 32, 32, 3)).astype(np.float32), np.arange(8) % 4
    m = Model((32, 32, 3), NET, seed=2)
    m.gradients(x, y, Loss("softmax"))
    arrays = [[id(g) for layer in shard.layers for g in layer.grads.values()] for shard in m.shards._copies]
    m.predict_proba(x)
    m.gradients(x, y, Loss("softmax"))
    assert [[id(g) for layer in shard.layers for g in layer.grads.values()] for shard in m.shards._copies] == arrays
    assert all(a is b for l0, lm in zip(m.shards._copies[0].layers, m.layers) for a, b in zip(l0.grads.values(), lm.grads.values()))
