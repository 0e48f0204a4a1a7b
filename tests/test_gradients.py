"""Finite-difference checks (float64) of every layer's backward, the losses, and a whole network."""

import numpy as np
import pytest

from cnncli.layers import Context
from cnncli.engine.losses import Loss, log_softmax, sigmoid_binary_cross_entropy, softmax_cross_entropy
from cnncli.model import Model, build_layer

from .gradcheck import assert_grad_close

F64 = np.float64

LAYER_CASES = [
    ("conv", {"filters": 32, "size": 3, "padding": "same", "activation": "relu"}, (8, 9, 32)),  # winograd, cut tiles
    ("conv", {"filters": 33, "size": 3, "activation": "leaky_relu", "alpha": 0.1}, (10, 14, 32)),  # winograd, valid
    ("conv", {"filters": 3, "size": 3, "padding": "same", "stride": 2, "activation": "relu"}, (7, 6, 2)),
    ("conv", {"filters": 4, "size": [2, 3], "activation": "tanh"}, (5, 6, 3)),
    ("conv", {"filters": 2, "size": 4, "padding": "same", "activation": "leaky_relu", "alpha": 0.2}, (6, 6, 1)),
    ("conv", {"filters": 2, "size": 3, "padding": [1, 2], "stride": [3, 2], "activation": "sigmoid"}, (8, 7, 2)),
    ("conv", {"filters": 3, "size": 1, "bias": False}, (4, 4, 5)),
    ("conv", {"filters": 4, "size": 3, "activation": "softmax"}, (5, 5, 2)),
    # depthwise (groups == channels): multiplier 1 and 2, strides, padding, softmax across channels
    ("conv", {"filters": 4, "size": 3, "stride": 2, "groups": 4, "activation": "tanh"}, (7, 6, 4)),
    ("conv", {"filters": 6, "size": 3, "padding": "same", "groups": 3, "activation": "relu"}, (5, 6, 3)),
    ("conv", {"filters": 6, "size": [2, 3], "padding": [1, 0], "stride": [1, 2], "groups": 2,
              "activation": "leaky_relu", "alpha": 0.2}, (5, 7, 2)),
    ("conv", {"filters": 3, "size": 3, "padding": "same", "groups": 3, "activation": "softmax",
              "bias": False}, (4, 5, 3)),
    # grouped, 1 < groups < channels
    ("conv", {"filters": 4, "size": [3, 2], "padding": [1, 0], "groups": 2, "activation": "sigmoid"}, (5, 6, 4)),
    ("conv", {"filters": 6, "size": 3, "stride": 2, "padding": "same", "groups": 3, "activation": "softmax"},
     (6, 5, 6)),
    ("conv", {"filters": 4, "size": 3, "groups": 2, "bias": False, "activation": "leaky_relu"}, (6, 5, 8)),
    ("conv", {"filters": 6, "size": 1, "groups": 2, "activation": "tanh"}, (4, 4, 4)),
    # asymmetric pads [top, bottom, left, right] (ONNX's), im2col / direct, depthwise, winograd
    ("conv", {"filters": 3, "size": 3, "padding": [0, 1, 2, 0], "stride": 2, "activation": "tanh"}, (7, 6, 2)),
    ("conv", {"filters": 4, "size": 3, "padding": [1, 0, 0, 1], "groups": 4, "activation": "tanh"}, (6, 5, 4)),
    ("conv", {"filters": 32, "size": 3, "padding": [0, 1, 1, 0], "activation": "relu"}, (17, 18, 32)),
    ("maxpool", {"size": 3, "stride": 2, "padding": [0, 1, 1, 0]}, (6, 7, 2)),
    ("avgpool", {"size": [3, 2], "stride": 2, "padding": [2, 0, 0, 1]}, (6, 5, 2)),
    ("pad", {"pads": [1, 0, 2, 3]}, (3, 4, 2)),
    ("pad", {"pads": 1}, (2, 2, 3)),
    ("slice", {"start": 1, "stop": 3}, (2, 3, 5)),
    ("slice", {"start": 0, "stop": 2}, (6,)),
    ("maxpool", {"size": 2}, (6, 6, 3)),
    ("maxpool", {"size": 3, "stride": 2, "padding": "same"}, (7, 5, 2)),
    ("avgpool", {"size": 2, "padding": "same"}, (5, 5, 3)),
    ("avgpool", {"size": [3, 2], "stride": 1, "padding": [1, 1]}, (4, 5, 2)),
    ("globalavgpool", {}, (4, 3, 5)),
    ("globalmaxpool", {}, (4, 3, 5)),
    ("flatten", {}, (3, 4, 2)),
    ("dense", {"units": 5, "activation": "relu"}, (7,)),
    ("dense", {"units": 4, "activation": "softmax"}, (6,)),
    ("dense", {"units": 3, "activation": "tanh", "bias": False}, (6,)),
    ("batchnorm", {}, (4, 4, 3)),
    ("batchnorm", {}, (6,)),
    ("dropout", {"rate": 0.3}, (5, 4, 2)),
    ("activation", {"fn": "sigmoid"}, (3, 3, 2)),
    ("activation", {"fn": "softmax"}, (5,)),
    # across channels: windows cut at both ends, one wider than the channels
    ("lrn", {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 1.0}, (3, 2, 5)),
    ("lrn", {"size": 7, "alpha": 2.0, "beta": 1.3, "bias": 0.5}, (2, 3, 6)),
    ("shuffle", {"groups": 3}, (2, 3, 6)),
]


@pytest.mark.parametrize("kind,args,in_shape", LAYER_CASES, ids=lambda v: str(v))
def test_layer_backward_matches_finite_differences(rng, kind, args, in_shape):
    layer = build_layer(kind, args)
    layer.build(in_shape)
    assert (getattr(layer, "algorithm", None) == "winograd") == (in_shape[-1] == 32), "the cases cover winograd"
    layer.init_params(rng, F64, layer.activation)
    for p in layer.params.values():  # non-trivial batchnorm scale / shift, non-zero biases
        p += rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((3,) + in_shape)
    r = rng.standard_normal((3,) + layer.out_shape)

    def f():   # dropout draws the same mask each time: a fresh stream seeded alike
        ctx = Context(training=True, rngs={None: np.random.default_rng(99)})
        return float(np.sum(layer.forward(x, ctx) * r))

    ctx = Context(training=True)
    f()
    dx = layer.backward(r.copy(), ctx)
    assert_grad_close(f, x, dx, rng)
    for name, p in layer.params.items():
        f()
        layer.zero_grad()
        layer.backward(r.copy(), ctx)
        assert_grad_close(f, p, layer.grads[name].copy(), rng)
    if layer.params:  # gradients add up: a second backward without zero_grad doubles them
        once = {k: g.copy() for k, g in layer.grads.items()}
        f()
        layer.backward(r.copy(), ctx)
        for k, g in layer.grads.items():
            np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("shapes", [[(4, 3, 5), (5,)], [(6,), (6,)]], ids=["map", "vector"])
def test_scale_backward_matches_finite_differences(rng, shapes):
    """y = x * s (s one value per channel): gradients to the map and to the gate."""
    layer = build_layer("scale", {})
    layer.build(shapes)
    xs = [rng.standard_normal((3,) + s) for s in shapes]
    r = rng.standard_normal((3,) + layer.out_shape)

    def f():
        return float(np.sum(layer.forward(xs, Context(training=True)) * r))

    f()
    dxs = layer.backward(r.copy(), Context(training=True))
    for x, dx in zip(xs, dxs):
        assert dx.shape == x.shape
        assert_grad_close(f, x, dx, rng)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(rng, smoothing):
    z = rng.standard_normal((4, 5)) * 3
    labels = np.array([0, 4, 2, 2])
    _, grad, probs = softmax_cross_entropy(z, labels, smoothing)
    assert_grad_close(lambda: softmax_cross_entropy(z, labels, smoothing)[0], z, grad, rng, k=20)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_sigmoid_binary_cross_entropy_gradient(rng, smoothing):
    z = rng.standard_normal((6, 1)) * 4
    labels = np.array([0, 1, 1, 0, 1, 0])
    _, grad, probs = sigmoid_binary_cross_entropy(z, labels, smoothing)
    assert_grad_close(lambda: sigmoid_binary_cross_entropy(z, labels, smoothing)[0], z, grad, rng)
    assert probs.shape == (6, 2)


def test_losses_by_hand():
    # uniform logits over 4 classes: loss = log 4
    loss, _, _ = softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 3]))
    assert loss == pytest.approx(np.log(4))
    # logit 0 -> p = 0.5 -> BCE = log 2 whatever the label
    loss, _, _ = sigmoid_binary_cross_entropy(np.zeros((3, 1)), np.array([0, 1, 1]))
    assert loss == pytest.approx(np.log(2))
    # huge logits stay finite
    loss, grad, _ = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(2000.0) and np.all(np.isfinite(grad))
    loss, grad, _ = sigmoid_binary_cross_entropy(np.array([[-1000.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0) and np.all(np.isfinite(grad))


NET = [
    ("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}),
    ("batchnorm", {}),
    ("maxpool", {"size": 2}),
    ("conv", {"filters": 6, "size": [3, 2], "stride": [1, 2], "bias": False}),
    ("relu", {}),
    ("avgpool", {"size": 2, "padding": "same"}),
    ("dropout", {"rate": 0.25}),
    ("flatten", {}),
    ("dense", {"units": 7, "activation": "tanh"}),
    ("batchnorm", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]


@pytest.mark.parametrize("specs,n_out", [
    (NET, 3),
    (NET[:-1] + [("dense", {"units": 1, "activation": "sigmoid"})], 2),
    ([("conv", {"filters": 5, "size": 3, "activation": "leaky_relu"}),
      ("conv", {"filters": 3, "size": 1}), ("globalavgpool", {}), ("softmax", {})], 3),
    ([("conv", {"filters": 4, "size": 3, "stride": 2, "activation": "relu"}),
      ("globalmaxpool", {}), ("dense", {"units": 3, "activation": "softmax"})], 3),
    # AlexNet's normalisation, ShuffleNet's shuffle and a squeeze-and-excitation gate: the map
    # reaches the loss through the gate and directly, the gate's dense layers through the scale only
    ([("conv", {"filters": 6, "size": 3, "padding": "same", "activation": "relu"}),
      ("lrn", {"size": 3, "alpha": 0.3}), ("shuffle", {"groups": 2, "name": "map"}), ("globalavgpool", {}),
      ("dense", {"units": 3, "activation": "relu"}), ("dense", {"units": 6, "activation": "sigmoid"}),
      ("scale", {"from": ["map", -1]}), ("globalavgpool", {}), ("dense", {"units": 3, "activation": "softmax"})], 3),
], ids=["vgg-like", "sigmoid-head", "all-conv-gap", "gmp", "lrn-shuffle-gate"])
def test_whole_network_gradient(rng, specs, n_out):
    model = Model((8, 8, 2), specs, seed=3, dtype=F64)
    x = rng.standard_normal((4, 8, 8, 2))
    labels = np.array([0, 1, 1, 0]) if n_out == 2 else np.array([0, 2, 1, 2])
    loss_fn = sigmoid_binary_cross_entropy if model.head == "sigmoid" else softmax_cross_entropy

    def streams():   # each dropout layer's stream, seeded alike for every evaluation
        return {i: np.random.default_rng(5) for i in model.random_layers()}

    def f():
        return loss_fn(model.forward(x, ctx=model.context(training=True, rngs=streams())), labels, 0.05)[0]

    model.gradients(x, labels, Loss(model.head, 0.05), rngs=streams())
    grads = {k: g.copy() for k, _, g in model.named_params()}
    for key, p, _ in model.named_params():
        assert_grad_close(f, p, grads[key], rng, k=10)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_class_weighted_loss_gradient(rng, head):
    from cnncli.engine.losses import Loss

    z = rng.standard_normal((5, 3 if head == "softmax" else 1)) * 2
    labels = np.array([0, 2, 1, 2, 0]) if head == "softmax" else np.array([0, 1, 1, 0, 1])
    loss = Loss(head, 0.1, [0.5, 2.0, 3.0] if head == "softmax" else [0.5, 2.0])
    _, grad, _ = loss(z, labels)
    assert_grad_close(lambda: loss(z, labels)[0], z, grad, rng, k=10)


def test_class_weighted_loss_by_hand():
    from cnncli.engine.losses import Loss

    # per-image losses log 2 (uniform) and log 4 (p = 1/4), weights 1 and 3: (log 2 + 3 log 4) / 4
    value, _, _ = Loss("softmax", class_weights=[1.0, 3.0])(np.array([[0.0, 0.0], [np.log(3.0), 0.0]]),
                                                            np.array([0, 1]))
    assert value == pytest.approx(7 / 4 * np.log(2))


# --- mixed labels (mixup, cutmix): two classes and a share per image --------------------------------

@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
@pytest.mark.parametrize("smoothing,weighted", [(0.0, False), (0.1, True)])
def test_mixed_label_loss_gradient(rng, head, smoothing, weighted):
    from cnncli.engine.losses import Loss
    from cnncli.engine.mixed import Mixed

    k = 3 if head == "softmax" else 2
    z = rng.standard_normal((6, 3 if head == "softmax" else 1)) * 2
    labels = Mixed(rng.integers(0, k, 6), rng.integers(0, k, 6), rng.uniform(0, 1, 6).astype(np.float32))
    loss = Loss(head, smoothing, [0.5, 2.0, 3.0][:k] if weighted else None)
    _, grad, _ = loss(z, labels)
    assert_grad_close(lambda: loss(z, labels)[0], z, grad, rng, k=10)


def test_mixed_labels_are_two_weighted_images_by_hand(rng):
    from cnncli.engine.losses import Loss
    from cnncli.engine.mixed import Mixed

    z = rng.standard_normal((5, 4))
    a, b = np.array([0, 1, 2, 3, 0]), np.array([3, 3, 0, 1, 0])
    m = np.array([1.0, 0.0, 0.3, 0.5, 0.8], np.float32)
    nll = -log_softmax(z)
    value, _, probs = Loss("softmax")(z, Mixed(a, b, m))
    rows = np.arange(5)
    assert value == pytest.approx(np.mean(m * nll[rows, a] + (1 - m) * nll[rows, b]))
    np.testing.assert_allclose(Mixed(a, b, m).soft(4).sum(axis=1), 1.0)
    # class weights c: sum_i (m c_a L(a) + (1 - m) c_b L(b)) / sum_i (m c_a + (1 - m) c_b)
    c = np.array([1.0, 2.0, 0.5, 4.0])
    value, _, _ = Loss("softmax", class_weights=c)(z, Mixed(a, b, m))
    top = m * c[a] * nll[rows, a] + (1 - m) * c[b] * nll[rows, b]
    assert value == pytest.approx(top.sum() / (m * c[a] + (1 - m) * c[b]).sum())
    # a share of 1 is the plain label, gradient included
    plain = Loss("softmax", 0.1, c)(z, a)
    same = Loss("softmax", 0.1, c)(z, Mixed(a, b, np.ones(5, np.float32)))
    assert same[0] == pytest.approx(plain[0]) and np.allclose(same[1], plain[1])
    # sigmoid: a share m of class 1 is the target probability m
    zs = rng.standard_normal((3, 1))
    value, _, _ = Loss("sigmoid")(zs, Mixed(np.array([1, 0, 1]), np.array([0, 0, 1]), np.array([0.3, 0.9, 0.6], np.float32)))
    t = np.array([0.3, 0.0, 1.0])
    p = 1 / (1 + np.exp(-zs[:, 0]))
    assert value == pytest.approx(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))), rel=1e-6)


@pytest.mark.parametrize("kind,args,in_shape", [
    ("conv", {"filters": 32, "size": 3, "padding": [0, 1, 1, 0]}, (17, 18, 32)),                       # winograd
    ("conv", {"filters": 8, "size": 3, "padding": [2, 0, 0, 1], "groups": 8, "stride": 2}, (9, 8, 8)),  # depthwise
    ("conv", {"filters": 5, "size": 3, "padding": [0, 2, 1, 0], "stride": 2}, (9, 8, 3)),              # im2col
    ("maxpool", {"size": 3, "stride": 2, "padding": [0, 1, 1, 0]}, (6, 7, 2)),
    ("avgpool", {"size": [3, 2], "stride": 2, "padding": [2, 0, 0, 1]}, (6, 5, 2)),
], ids=str)
def test_asymmetric_padding_forward_matches_the_slow_twin(rng, kind, args, in_shape):
    """[top, bottom, left, right] through each kernel family against tests/naive.py's loops."""
    from . import naive

    layer = build_layer(kind, args)
    layer.build(in_shape)
    layer.init_params(rng, F64, "linear")
    x = rng.standard_normal((2,) + in_shape)
    y = layer.forward(x, Context())
    xn = x.transpose(0, 3, 1, 2)
    if kind == "conv":
        p = layer.export()
        want = naive.conv2d(xn, p["weight"], p["bias"], layer.stride, layer.pads, groups=layer.groups)
    else:
        want = naive.pool2d(xn, layer.size, layer.stride, layer.pads, kind[:3])
    np.testing.assert_allclose(y, want.transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-12)
