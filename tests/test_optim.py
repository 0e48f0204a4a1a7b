"""Optimizer steps and schedules against values computed by hand."""

import math

import numpy as np
import pytest

from cnncli.engine.optim import SGD, Adam, AdamW, learning_rate


def _one(value=1.0, grad=0.5, ndim=2):
    p = np.full((1,) * ndim, value, np.float64)
    g = np.full((1,) * ndim, grad, np.float64)
    return p, g, [("w", p, g)]


def test_sgd_plain_and_momentum():
    p, g, params = _one()
    opt = SGD(params, lr=0.1)
    opt.step(params)
    assert p.item() == pytest.approx(1.0 - 0.1 * 0.5)
    p, g, params = _one()
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step(params)            # v = 0.5,            p = 1 - 0.05
    opt.step(params)            # v = 0.45 + 0.5,     p = 0.95 - 0.095
    assert p.item() == pytest.approx(0.855)


def test_sgd_nesterov():
    p, g, params = _one()
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    opt.step(params)            # v = 0.5; step = g + 0.9 v = 0.95; p = 1 - 0.095
    assert p.item() == pytest.approx(0.905)


def test_weight_decay_on_weights_only():
    w, gw, _ = _one(2.0, 0.0, ndim=2)
    b, gb, _ = _one(2.0, 0.0, ndim=1)
    params = [("w", w, gw), ("b", b, gb)]
    opt = SGD(params, lr=0.1, weight_decay=0.5)
    opt.step(params)
    assert w.item() == pytest.approx(2.0 - 0.1 * 0.5 * 2.0)
    assert b.item() == 2.0


def test_adam_first_steps_move_by_lr():
    # bias-corrected Adam moves by ~lr * sign(g) while the gradient is constant
    p, g, params = _one()
    opt = Adam(params, lr=0.01)
    opt.step(params)
    assert p.item() == pytest.approx(1.0 - 0.01, abs=1e-7)
    opt.step(params)
    assert p.item() == pytest.approx(1.0 - 0.02, abs=1e-7)


def test_adamw_decouples_decay():
    p, g, params = _one(2.0, 0.0)
    AdamW(params, lr=0.1, weight_decay=0.5).step(params)
    assert p.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))   # zero gradient: decay alone
    p, g, params = _one(2.0, 0.0)
    Adam(params, lr=0.1, weight_decay=0.5).step(params)               # L2: g = 1.0 -> Adam step of lr
    assert p.item() == pytest.approx(2.0 - 0.1, abs=1e-6)


def test_optimizer_state_round_trip():
    p, g, params = _one()
    a = Adam(params, lr=0.01)
    a.step(params)
    state = {k: v.copy() for k, v in a.state().items()}
    p2 = p.copy()
    b = Adam([("w", p2, g)], lr=0.01)
    b.load_state(state)
    a.step(params)
    b.step([("w", p2, g)])
    assert p2.item() == p.item() and b.step_count == 2


def test_schedules_by_hand():
    kw = dict(steps_per_epoch=10, epochs=5, lr=1.0)
    assert learning_rate(37, schedule="constant", **kw) == 1.0
    assert learning_rate(19, schedule="step", step_size=2, gamma=0.1, **kw) == 1.0
    assert learning_rate(20, schedule="step", step_size=2, gamma=0.1, **kw) == pytest.approx(0.1)
    assert learning_rate(0, schedule="cosine", **kw) == 1.0
    assert learning_rate(25, schedule="cosine", **kw) == pytest.approx(0.5)
    assert learning_rate(50, schedule="cosine", **kw) == pytest.approx(0.0, abs=1e-12)
    # warmup over 1 epoch = 10 steps: 0.1, 0.2, ... 1.0, then cosine over the 40 steps left
    assert [learning_rate(s, schedule="cosine", warmup_epochs=1, **kw) for s in (0, 4, 9)] == \
        pytest.approx([0.1, 0.5, 1.0])
    assert learning_rate(10, schedule="cosine", warmup_epochs=1, **kw) == 1.0
    assert learning_rate(30, schedule="cosine", warmup_epochs=1, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_the_optimizer_reads_the_gradient_arrays_of_each_step():
    """A gradient array replaced after the optimizer was built (MPI's attach makes every gradient
    a view of one flat buffer) is the one the step reads: built in either order, the optimizer
    cannot step on stale zeros. On the old code (the optimizer kept the arrays it was given at
    construction) the swapped model did not move."""
    from cnncli.engine.losses import Loss
    from cnncli.model import Model

    specs = [("flatten", {}), ("dense", {"units": 3, "activation": "softmax"})]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 2, 2, 1)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2])
    moved = []
    for swap in (False, True):
        model = Model((2, 2, 1), specs, seed=0)
        opt = SGD(model.named_params(), lr=0.5)
        if swap:    # as Mpi.attach does, after the optimizer exists
            flat = np.zeros(sum(g.size for layer in model.layers for g in layer.grads.values()), np.float32)
            at = 0
            for layer in model.layers:
                for name, g in layer.grads.items():
                    layer.grads[name] = flat[at:at + g.size].reshape(g.shape)
                    at += g.size
        before = model.layers[1].params["weight"].copy()
        model.train_step(x, y, Loss(model.head), opt)
        moved.append(model.layers[1].params["weight"] - before)
    assert np.abs(moved[0]).max() > 0
    np.testing.assert_array_equal(moved[1], moved[0])


def _numpy_sgd(p, g, v, lr, mu, wd, decay, nesterov):
    """The slow twin: the numpy update cnncli ran before kernels/optim.py (no flush)."""
    dt = p.dtype.type
    if decay:
        g = g + dt(wd) * p
    v *= dt(mu)
    v += g
    g = g + dt(mu) * v if nesterov else v
    p -= dt(lr) * g


def _numpy_adam(p, g, m, v, lr, b1, b2, eps, wd, decay, decoupled, c1, c2):
    dt = p.dtype.type
    if decay:
        if decoupled:
            p *= dt(1 - lr * wd)
        else:
            g = g + dt(wd) * p
    m *= dt(b1)
    m += dt(1 - b1) * g
    v *= dt(b2)
    v += dt(1 - b2) * g * g
    p -= dt(lr / c1) * m / (np.sqrt(v / dt(c2)) + dt(eps))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["sgd", "nesterov", "adam", "adamw"])
def test_the_update_kernels_match_numpy_bit_for_bit(kind, dtype):
    """kernels/optim.py against the numpy update it replaced, 5 steps on random values (none
    subnormal), with weight decay on the (2-D) weight: the same bits."""
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal(5).astype(dtype)
    twin = {"w": w.copy(), "b": b.copy()}
    grads = {"w": np.zeros_like(w), "b": np.zeros_like(b)}
    params = [("w", w, grads["w"]), ("b", b, grads["b"])]
    if kind in ("sgd", "nesterov"):
        opt = SGD(params, lr=0.1, momentum=0.9, nesterov=kind == "nesterov", weight_decay=0.01)
        slots = {k: np.zeros_like(a) for k, a in twin.items()}
    else:
        opt = (Adam if kind == "adam" else AdamW)(params, lr=0.01, weight_decay=0.01)
        slots = {k: (np.zeros_like(a), np.zeros_like(a)) for k, a in twin.items()}
    for t in range(1, 6):
        for k in grads:
            grads[k][...] = rng.standard_normal(grads[k].shape)
        opt.step(params)
        for k, a in twin.items():
            if kind in ("sgd", "nesterov"):
                _numpy_sgd(a, grads[k], slots[k], 0.1, 0.9, 0.01, a.ndim > 1, kind == "nesterov")
            else:
                _numpy_adam(a, grads[k], *slots[k], 0.01, 0.9, 0.999, 1e-8, 0.01, a.ndim > 1, kind == "adamw",
                            1 - 0.9 ** t, 1 - 0.999 ** t)
        np.testing.assert_array_equal(w, twin["w"])
        np.testing.assert_array_equal(b, twin["b"])


def test_a_momentum_that_decays_below_the_smallest_normal_becomes_zero():
    """A weight whose gradient stays 0 has its velocity multiplied by mu each step: subnormal after
    ~820 steps at mu = 0.9 in float32 (arithmetic on subnormals is slow), flushed to 0 instead; the
    weight stops moving there. Adam's first moment the same."""
    p = np.ones(3, np.float32)
    g = np.array([1.0, 0.0, 0.0], np.float32)
    params = [("w", p, g)]
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step(params)                       # velocity [1, 0, 0]
    g[0] = 0.0
    v = opt.slots["velocity"]["w"]
    tiny = np.finfo(np.float32).tiny
    for _ in range(900):
        opt.step(params)
        assert v[0] == 0 or v[0] >= tiny   # never subnormal
    assert v[0] == 0 and p[0] == pytest.approx(1.0 - 0.1 * (1 / 0.1), abs=1e-4)   # 1 - lr * sum 0.9^k
    a = Adam([("w", p, g)], lr=0.01)
    g[0] = 1.0
    a.step([("w", p, g)])
    g[0] = 0.0
    for _ in range(900):
        a.step([("w", p, g)])
    m, s = a.slots["m"]["w"], a.slots["v"]["w"]
    assert m[0] == 0 and s[0] > 0          # v decays at 0.999: far from subnormal yet
    g[...] = 1e-20                         # (1 - 0.999) g^2 = 1e-43: subnormal, flushed
    b = Adam([("w", np.ones(3, np.float32), g)], lr=0.01)
    b.step([("w", np.ones(3, np.float32), g)])
    assert (b.slots["v"]["w"] == 0).all() and (b.slots["m"]["w"] > 0).all()
