"""The Sequential model: boundary layout, seeding, and learning for real."""

import numpy as np
import pytest

from cnncli.engine.losses import Loss
from cnncli.model import Model, SpecError
from cnncli.engine.optim import Adam

from . import naive
from .conftest import nchw

VGG_LIKE = [
    ("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}),
    ("batchnorm", {}),
    ("conv", {"filters": 5, "size": [2, 3], "stride": [2, 1], "padding": "same", "activation": "leaky_relu"}),
    ("maxpool", {"size": 2, "padding": "same"}),
    ("avgpool", {"size": 2, "stride": 1}),
    ("flatten", {}),
    ("dropout", {"rate": 0.5}),
    ("dense", {"units": 6, "activation": "tanh"}),
    ("batchnorm", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]
ALL_CONV = [
    ("conv", {"filters": 6, "size": 3, "padding": 1, "activation": "relu"}),
    ("conv", {"filters": 4, "size": 1}),
    ("globalavgpool", {}),
    ("softmax", {}),
]
SIGMOID = [
    ("conv", {"filters": 3, "size": 3, "stride": 2, "activation": "sigmoid"}),
    ("globalmaxpool", {}),
    ("dense", {"units": 1, "activation": "sigmoid"}),
]


def _randomise(model, rng):
    """Random values everywhere, batchnorm running stats included, through the boundary."""
    state = model.state_dict()
    for k, v in state.items():
        state[k] = (np.abs(rng.standard_normal(v.shape)) + 0.5 if k.endswith("running_var")
                    else rng.standard_normal(v.shape) * 0.5).astype(v.dtype)
    model.load_state_dict(state)
    return state


@pytest.mark.parametrize("specs", [VGG_LIKE, ALL_CONV, SIGMOID], ids=["vgg", "allconv", "sigmoid"])
def test_boundary_layout_matches_nchw_reference(rng, specs):
    model = Model((9, 8, 3), specs, seed=0)
    state = _randomise(model, rng)
    x = rng.standard_normal((4, 9, 8, 3)).astype(np.float32)
    probs = model.predict_proba(x)
    ref = naive.network_forward(model, state, nchw(x))
    if model.head == "sigmoid":
        ref = np.concatenate([1 - ref, ref], axis=1)
    np.testing.assert_allclose(probs, ref, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_boundary_round_trip(rng):
    a = Model((9, 8, 3), VGG_LIKE, seed=0)
    state = _randomise(a, rng)
    b = Model((9, 8, 3), VGG_LIKE, seed=1)
    b.load_state_dict(state)
    back = b.state_dict()
    assert back.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))


def test_boundary_shapes_are_pytorch_layout():
    m = Model((28, 28, 1), [("conv", {"filters": 6, "size": 5}), ("batchnorm", {}), ("flatten", {}),
                            ("dense", {"units": 10, "activation": "softmax"})])
    shapes = {k: v.shape for k, v in m.state_dict().items()}
    assert shapes == {"layers.0.weight": (6, 1, 5, 5), "layers.0.bias": (6,),
                      "layers.1.weight": (6,), "layers.1.bias": (6,),
                      "layers.1.running_mean": (6,), "layers.1.running_var": (6,),
                      "layers.3.weight": (10, 6 * 24 * 24), "layers.3.bias": (10,)}


def test_flatten_feeds_dense_in_chw_order():
    # A dense unit whose weight is one-hot on boundary feature c*H*W + h*W + w reads x[h, w, c].
    m = Model((2, 3, 4), [("flatten", {}), ("dense", {"units": 2, "activation": "softmax", "bias": False})])
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    w = np.zeros((2, 24), np.float32)
    c, h, wd = 3, 1, 2
    w[0, c * 6 + h * 3 + wd] = 1.0
    m.load_state_dict({"layers.1.weight": w})
    logits = m.forward(x)
    assert logits[0, 0] == x[0, h, wd, c]


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (Model((8, 8, 3), VGG_LIKE, seed=s) for s in (7, 7, 8))
    for (ka, pa, _), (_, pb, _), (_, pc, _) in zip(a.named_params(), b.named_params(), c.named_params()):
        np.testing.assert_array_equal(pa, pb)
        if pa.ndim > 1:
            assert not np.array_equal(pa, pc), ka


def test_he_for_relu_glorot_otherwise():
    m = Model((32, 32, 16), [("conv", {"filters": 256, "size": 3}), ("relu", {}),
                             ("conv", {"filters": 256, "size": 3, "activation": "tanh"}),
                             ("globalavgpool", {}), ("softmax", {})], seed=0)
    w_he, w_gl = m.layers[0].params["weight"], m.layers[2].params["weight"]
    assert w_he.std() == pytest.approx(np.sqrt(2 / (9 * 16)), rel=0.05)                # He normal
    limit = np.sqrt(6 / (9 * 256 + 9 * 256))                                               # Glorot uniform
    assert abs(w_gl).max() <= limit and w_gl.std() == pytest.approx(limit / np.sqrt(3), rel=0.05)


def test_overfits_32_images():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 12, 12, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    model = Model((12, 12, 3), [
        ("conv", {"filters": 8, "size": 3, "padding": "same", "activation": "relu"}),
        ("maxpool", {"size": 2}),
        ("conv", {"filters": 16, "size": 3, "activation": "relu"}),
        ("flatten", {}),
        ("dense", {"units": 4, "activation": "softmax"}),
    ], seed=0)
    opt = Adam(model.named_params(), lr=0.005)
    loss_fn = Loss(model.head)
    for _ in range(150):
        loss, probs = model.train_step(x, labels, loss_fn, opt)
    acc = (model.predict_proba(x).argmax(axis=1) == labels).mean()
    assert acc == 1.0, f"training accuracy {acc:.3f}, loss {loss:.4f}"


@pytest.mark.parametrize("specs,message", [
    ([("conv", {"filters": 4, "size": 3})], "ends in a 3-D feature map"),
    ([("flatten", {}), ("dense", {"units": 3})], "must end in softmax"),
    ([("flatten", {}), ("dense", {"units": 3, "activation": "tanh"})], "must end in softmax"),
    ([("dense", {"units": 3, "activation": "softmax"})], "add '- flatten'"),
    ([("conv", {"filters": 4, "size": 9})], "larger than its input"),
    ([("nope", {})], "unknown layer type"),
])
def test_bad_specs_raise_with_layer_index(specs, message):
    """(A sigmoid output of K > 1 units is a multi-label head now: see test_multilabel.py.)"""
    with pytest.raises(SpecError, match=message) as info:
        Model((8, 8, 3), specs)
    assert info.value.index is not None


# --- inference folds conv -> batchnorm (-> activation) ------------------------------------------

FOLD_SPECS = [
    ("conv", {"filters": 32, "size": 3, "padding": 1, "bias": False}),          # 0 winograd (16x16)
    ("batchnorm", {}),                                                           # 1 folded into 0
    ("relu", {}),                                                                # 2 folded into 0
    ("conv", {"filters": 32, "size": 3, "padding": 1, "groups": 32}),           # 3 depthwise, bias
    ("batchnorm", {"eps": 1e-3}),                                                # 4 folded into 3
    ("activation", {"fn": "leaky_relu", "alpha": 0.2}),                          # 5 folded into 3
    ("conv", {"filters": 16, "size": 1}),                                        # 6 im2col, read twice
    ("batchnorm", {"name": "b"}),                                                # 7 not folded: two readers of 6
    ("conv", {"filters": 16, "size": 3, "padding": 1, "groups": 2, "from": 6}),  # 8 grouped
    ("batchnorm", {}),                                                           # 9 folded; read twice
    ("relu", {}),                                                                # 10 not folded (9 has two readers)
    ("add", {"from": ["b", 9, 10]}),                                             # 11
    ("conv", {"filters": 8, "size": 3, "activation": "relu"}),                   # 12 not linear: no fold
    ("batchnorm", {}),                                                           # 13
    ("globalavgpool", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]


def _fold_model(rng):
    from cnncli.model import Model

    m = Model((16, 16, 32), FOLD_SPECS, seed=3)
    for layer in m.layers:   # trained-looking batchnorm: statistics and affine far from 0 / 1
        if layer.kind == "batchnorm":
            c = layer.params["weight"].shape[0]
            layer.params["weight"][:] = rng.uniform(0.5, 2.0, c)
            layer.params["bias"][:] = rng.normal(0, 1, c)
            layer.buffers["running_mean"][:] = rng.normal(0, 2, c)
            layer.buffers["running_var"][:] = rng.uniform(0.1, 4.0, c)
        if layer.kind == "conv" and layer.bias:
            layer.params["bias"][:] = rng.normal(0, 0.5, layer.params["bias"].shape)
    return m


def test_inference_plan_folds_exactly_the_chains_it_may(rng):
    m = _fold_model(rng)
    assert [m.layers[i].algorithm for i in (0, 3, 6, 8)] == ["winograd", "depthwise", "im2col", "grouped"]
    plan = m.inference_plan()
    assert sorted(i for i, step in plan.items() if step is None) == [1, 2, 4, 5, 9]
    assert sorted(i for i, step in plan.items() if step is not None) == [0, 3, 8]
    m2 = Model((16, 16, 32), [("conv", {"filters": 32, "size": 3, "padding": 1, "activation": "relu"}),
                              ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})], seed=0)
    filters, bias, act, _ = m2.inference_plan()[0]    # a Winograd conv folds nothing: filters transformed
    assert filters.shape == (36, 32, 32) and act == "relu" and bias is m2.layers[0].params["bias"]
    x = rng.standard_normal((3, 16, 16, 32)).astype(np.float32)
    np.testing.assert_array_equal(m2.forward(x, plan=m2.inference_plan()), m2.forward(x))
    assert [plan[i][2] for i in (0, 3, 8)] == ["relu", "leaky_relu", "linear"]
    assert plan[3][3] == 0.2
    assert plan[0][0].shape == (36, 32, 32)   # Winograd filters, transformed once


def test_folded_inference_equals_layer_by_layer(rng):
    """The folded forward against the plain one: same network, same batch, float32."""
    m = _fold_model(rng)
    x = rng.standard_normal((5, 16, 16, 32)).astype(np.float32)
    plain = m.forward(x)
    folded = m.forward(x, plan=m.inference_plan())
    np.testing.assert_allclose(folded, plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())
    probs, _ = m.evaluate([(x, None)])                  # evaluation runs the plan
    np.testing.assert_allclose(probs, _softmax(plain), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="plain inference"):
        m.forward(x, training=True, plan=m.inference_plan())


# (12, 11, 8) input: two inverted residual blocks whose 1x1 convs run inside the depthwise conv
# (the second's projection folds nothing, so only its expansion), and one whose expansion's
# batchnorm is read twice (nothing fused)
INVERTED_SPECS = [
    ("conv", {"filters": 48, "size": 1, "bias": False}),                               # 0 expansion
    ("batchnorm", {}),                                                                  # 1
    ("activation", {"fn": "relu6"}),                                                    # 2
    ("conv", {"filters": 48, "size": 3, "stride": 2, "padding": 1, "groups": 48, "bias": False}),  # 3 takes 0
    ("batchnorm", {}),                                                                  # 4
    ("activation", {"fn": "relu6"}),                                                    # 5
    ("conv", {"filters": 8, "size": 1, "bias": False}),                                # 6 projection
    ("batchnorm", {}),                                                                  # 7
    ("conv", {"filters": 40, "size": 1}),                                              # 8 expansion, bias
    ("batchnorm", {}),                                                                  # 9
    ("relu", {}),                                                                       # 10
    ("conv", {"filters": 40, "size": 5, "padding": "same", "groups": 40}),             # 11 takes 8
    ("batchnorm", {}),                                                                  # 12
    ("conv", {"filters": 8, "size": 1, "bias": False}),                                # 13 no batchnorm
    ("add", {"from": [7, 13]}),                                                         # 14
    ("conv", {"filters": 16, "size": 1, "bias": False}),                               # 15 read twice (by 16's readers)
    ("batchnorm", {}),                                                                  # 16
    ("conv", {"filters": 16, "size": 3, "padding": 1, "groups": 16, "bias": False}),   # 17 depthwise, not fused
    ("batchnorm", {}),                                                                  # 18
    ("add", {"from": [16, 18]}),                                                        # 19
    ("globalavgpool", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]


def _inverted_model(rng):
    from cnncli.model import Model

    m = Model((12, 11, 8), INVERTED_SPECS, seed=5)
    for layer in m.layers:
        if layer.kind == "batchnorm":
            c = layer.params["weight"].shape[0]
            layer.params["bias"][:] = rng.normal(0, 1, c)
            layer.buffers["running_mean"][:] = rng.normal(0, 1, c)
            layer.buffers["running_var"][:] = rng.uniform(0.1, 4.0, c)
    return m


@pytest.mark.parametrize("band_bytes", [1, 12_000, 1 << 20])   # a band of one output row, of a few, the whole map
def test_the_1x1_convs_inside_a_depthwise_conv_equal_the_layers_apart(rng, monkeypatch, band_bytes):
    from cnncli.engine import features
    from cnncli.kernels import depthwise

    monkeypatch.setattr(depthwise, "BAND_BYTES", band_bytes)
    m = _inverted_model(rng)
    plan = m.inference_plan()
    stages = {k: (v[4] and v[4][0], v[5] and v[5][0]) for k, v in plan.items() if v is not None and len(v) > 4}
    assert stages == {3: (0, 6), 11: (8, None)}   # 13 folds nothing: not in the plan, so not taken
    assert all(plan[i] is None for i in (0, 6, 8)) and len(plan[15]) == len(plan[17]) == 4   # 16 read twice
    assert plan[3][4][3] == "relu6" and plan[11][4][3] == "relu" and plan[11][2] == "linear"
    assert plan[3][5][3] == "linear" and plan[3][2] == "relu6"
    x = rng.standard_normal((3, 12, 11, 8)).astype(np.float32)
    plain = m.forward(x)
    np.testing.assert_allclose(m.forward(x, plan=plan), plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())
    # the frozen-feature cache's boundary: inside a fused chain no plan, before it the plan up to it
    assert features.prefix_plan(m, 2) == {} and features.prefix_plan(m, 0) == {} and features.prefix_plan(m, 5) == {}
    before = features.prefix_plan(m, 7)
    assert len(before[3]) == 6 and 8 not in before
    np.testing.assert_allclose(m.forward(x, plan=before, stop=7), m.forward(x, stop=7), rtol=1e-4, atol=1e-4)


def test_a_batchnorm_hands_its_dx_to_the_1x1_conv_before_it_by_rows(rng, monkeypatch):
    """Backward: a batchnorm read from a linear 1x1 conv that only it reads gives that conv its
    dx as rows (fusion.row_gradients), computed a run at a time inside the conv's backward.
    Each value is its own formula, so the step is the layers-apart step bit for bit: whole
    batch and shards, with and without a taken activation, a bias, a residual add after; a kept
    gradient (keep) is the array itself, as without rows."""
    from cnncli.engine.losses import Loss
    from cnncli.kernels import conv

    m = _inverted_model(rng)
    assert m._rows == {1: 0, 7: 6, 9: 8, 16: 15}     # 4, 12, 18: after depthwise convs
    handed = []
    real = conv._pointwise_backward
    monkeypatch.setattr(conv, "_pointwise_backward", lambda dy, *a, **k: handed.append(hasattr(dy, "rows")) or
                        real(dy, *a, **k))
    monkeypatch.setattr(conv, "ROWS_PER_STEP", 40)    # several runs of rows an image (12 x 11 = 132 positions)
    x, y = rng.standard_normal((5, 12, 11, 8)).astype(np.float32) * 2, np.arange(5) % 3
    start = {k: v.copy() for k, v in m.state_dict().items()}
    runs = {}
    for rows in (True, False):
        m.load_state_dict(start)
        if not rows:
            monkeypatch.setattr(m, "_rows", {})
            for shard in m.shards._copies:
                monkeypatch.setattr(shard, "_rows", {})
        handed.clear()
        loss, _ = m.gradients(x, y, Loss(m.head))                      # shards (a small network, 2 threads)
        out = [loss] + [g.copy() for _, _, g in m.trainable_params()]
        ctx = m.context(training=True)
        logits = m.forward(x[:2], ctx=ctx)                              # the whole batch in one call
        m.zero_grad()
        kept = m.backward(np.ones_like(logits) / logits.size, keep=(6,), ctx=ctx)
        runs[rows] = out + [g.copy() for _, _, g in m.trainable_params()] + [kept[6]]
        assert any(handed) == rows and isinstance(kept[6], np.ndarray)
    for a, b in zip(runs[True], runs[False]):
        np.testing.assert_array_equal(a, b)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_inference_plan_is_kept_until_what_it_folds_changes(rng):
    """The plan is reused while the arrays it folds are unchanged, folded again after any in-place
    change (a conv weight, a batchnorm statistic, an activation setting), and dropped by training."""
    from cnncli.engine.losses import Loss

    m = _fold_model(rng)
    x = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)
    first = m.inference_plan()
    assert m.inference_plan() is first
    changes = [lambda: m.layers[0].params["weight"].__setitem__((0, 0, 0, 0), 0.5),     # Winograd conv
               lambda: m.layers[4].buffers["running_var"].__setitem__(1, 9.0),          # batchnorm statistic
               lambda: m.layers[8].params["bias"].__setitem__(0, -3.0),                 # grouped conv's bias
               lambda: setattr(m.layers[5], "alpha", 0.3),                              # folded activation
               lambda: m.layers[9].params.update(weight=m.layers[9].params["weight"] * 2)]  # a new array
    for change in changes:
        before = m.inference_plan()
        change()
        after = m.inference_plan()
        assert after is not before
        plain = m.forward(x)
        np.testing.assert_allclose(m.forward(x, plan=after), plain, rtol=1e-4, atol=1e-4 * np.abs(plain).max())
        np.testing.assert_allclose(m.predict_proba(x), _softmax(plain), rtol=1e-4, atol=1e-6)   # a stale plan would differ
    assert m.layers[5].alpha == 0.3 and after[3][3] == 0.3
    m.gradients(x, np.arange(4) % 3, Loss(m.head))
    assert None not in m._plans


def test_a_frozen_prefix_trains_folded_and_gives_the_same_step(rng, monkeypatch):
    """The layers no backward reaches run as predict runs them (conv with its batchnorm and
    activation folded) inside a training step: only chains wholly frozen fold, the batchnorm is
    not run, and loss and gradients equal the unfolded step's."""
    m = _fold_model(rng)
    m.freeze(range(4))                       # conv 0, bn 1, conv 3 (and relu 2) frozen; bn 4 trains
    assert sorted(m.frozen_plan()) == [0, 1, 2]            # conv 3 cannot take bn 4: it trains
    m.freeze(range(5))
    plan = m.frozen_plan()
    assert sorted(plan) == [0, 1, 2, 3, 4, 5] and plan[3][2] == "leaky_relu"   # 5 is dead: parameter-free
    x = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)
    y = np.arange(4) % 3
    grads = {}
    for folded in (False, True):
        if not folded:
            monkeypatch.setattr(type(m), "frozen_plan", lambda self: {})
        else:
            monkeypatch.undo()
            monkeypatch.setattr(m.layers[1], "forward", lambda *a: pytest.fail("a folded batchnorm ran"))
        loss, _ = m.gradients(x, y, Loss(m.head))
        grads[folded] = [loss] + [g.copy() for _, _, g in m.trainable_params()]
    for a, b in zip(grads[False], grads[True]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 + 1e-5 * np.abs(a).max())   # a bias before batchnorm: ~0


def test_batchnorm_applies_the_activation_after_it_and_the_step_is_unchanged(rng, monkeypatch):
    """A batchnorm read only by an activation whose derivative needs its output (relu, leaky_relu)
    applies it in its own pass, and its backward takes that derivative too; the activation layer
    only keeps the output between them. Training step, record-mode forward and a kept batchnorm
    output equal the unfused model's, bit for bit."""
    m = _fold_model(rng)
    assert m._takes == {1: 2, 4: 5}        # 7: read by the add; 9: two readers; 13: globalavgpool
    other = Model((8, 8, 3), [("conv", {"filters": 4, "size": 3}), ("batchnorm", {}), ("activation", {"fn": "silu"}),
                              ("conv", {"filters": 3, "size": 1}), ("globalavgpool", {}), ("batchnorm", {}),
                              ("softmax", {})])
    assert other._takes == {}              # silu keeps its input; the softmax ends the network
    x = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)
    y = np.arange(4) % 3
    runs, start = {}, {k: v.copy() for k, v in m.state_dict().items()}
    for fused in (True, False):
        m.load_state_dict(start)
        if not fused:
            monkeypatch.setattr(m, "_takes", {})
        else:
            for i in (2, 5):
                monkeypatch.setattr(m.layers[i], "forward", lambda *a: pytest.fail("a taken activation ran"))
                monkeypatch.setattr(m.layers[i], "backward", lambda *a, **k: pytest.fail("its backward ran"))
        loss, _ = m.gradients(x, y, Loss(m.head))
        runs[fused] = [loss, m.forward(x, record=True), m.layers[1].buffers["running_mean"].copy()] + \
            [g.copy() for _, _, g in m.trainable_params()]
        monkeypatch.undo()
        runs[fused] += m.forward(x, record=True, keep=(1, 2))[1].values()   # 1 kept: not fused
    for a, b in zip(runs[False], runs[True]):
        np.testing.assert_array_equal(b, a)
    assert runs[True][-2].min() < 0 <= runs[True][-1].min()    # kept 1 is the batchnorm's own output


@pytest.mark.parametrize("fn", ["relu6", "sigmoid", "tanh", "hardsigmoid", "leaky_relu"])
def test_each_taken_activation_gives_the_unfused_step(rng, monkeypatch, fn):
    """Every function batchnorm may take (its derivative from the output) gives the unfused
    step's loss and gradients, bit for bit, with values on both sides of each kink."""
    specs = [("conv", {"filters": 6, "size": 3, "padding": 1, "bias": False}), ("batchnorm", {}),
             ("activation", {"fn": fn, "alpha": 0.1}), ("conv", {"filters": 4, "size": 3}),
             ("globalavgpool", {}), ("dense", {"units": 3, "activation": "softmax"})]
    m = Model((9, 9, 5), specs, seed=4)
    assert m._takes == {1: 2}
    m.layers[1].params["bias"][:] = rng.normal(0, 1, 6)
    x, y = rng.standard_normal((5, 9, 9, 5)).astype(np.float32) * 3, np.arange(5) % 3
    runs = []
    for takes in ({1: 2}, {}):
        monkeypatch.setattr(m, "_takes", takes)
        loss, _ = m.gradients(x, y, Loss(m.head))
        runs.append([loss] + [g.copy() for _, _, g in m.trainable_params()])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_folding_uses_the_batchnorm_formula_by_hand():
    """One 1x1 conv of one channel, bias 0.5, weight 2; batchnorm mean 1, var 3, eps 1, gamma 4,
    beta -1: y = 4 (2x + 0.5 - 1) / sqrt(3 + 1) - 1 = 4x - 2. The plan's filter is 4, its bias -2."""
    from cnncli.model import Model

    m = Model((2, 2, 1), [("conv", {"filters": 1, "size": 1}), ("batchnorm", {"eps": 1.0}),
                          ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})], seed=0)
    conv, bn = m.layers[0], m.layers[1]
    conv.params["weight"][:] = 2.0
    conv.params["bias"][:] = 0.5
    bn.params["weight"][:], bn.params["bias"][:] = 4.0, -1.0
    bn.buffers["running_mean"][:], bn.buffers["running_var"][:] = 1.0, 3.0
    filters, bias, act, _ = m.inference_plan()[0]
    assert filters.ravel().tolist() == [4.0] and bias.tolist() == [-2.0] and act == "linear"
