"""Grouped and depthwise convolution at the layer level: config errors, inspect's numbers by hand,
and the boundary weight layout (F, C/g, FH, FW)."""

import numpy as np
import pytest

from cnncli import config
from cnncli.config import ConfigError
from cnncli.model import build_layer
from cnncli.model.summary import layer_table
from cnncli.layers import Context

from . import naive
from .conftest import nchw


def _arch(inp, *layers):
    return config.parse_architecture({"input": list(inp), "layers": list(layers) + ["globalavgpool", "softmax"]}, "t")


@pytest.mark.parametrize("inp,conv,message", [
    ((8, 8, 16), {"filters": 32, "groups": 3},
     "t: layers[0] (conv, 'groups'): groups 3 must divide both the 16 input channels and the 32 filters: "
     "use groups 1, 2, 4, 8 or 16"),
    ((8, 8, 16), {"filters": 20, "groups": 8},
     "t: layers[0] (conv, 'groups'): groups 8 must divide both the 16 input channels and the 20 filters: "
     "use groups 1, 2 or 4, or filters a multiple of 8"),
    ((8, 8, 3), {"filters": 4, "groups": 3},
     "t: layers[0] (conv, 'groups'): groups 3 must divide both the 3 input channels and the 4 filters: "
     "use groups 1, or filters a multiple of 3"),
    ((8, 8, 3), {"filters": 4, "groups": 0}, "'groups' must be a positive integer, got 0"),
])
def test_groups_that_do_not_divide_are_one_clear_line(inp, conv, message):
    with pytest.raises(ConfigError) as info:
        _arch(inp, {"conv": conv})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_depthwise_separable_by_hand():
    s = layer_table(_arch((32, 32, 16),
                        {"conv": {"filters": 32, "size": 3, "padding": "same", "groups": 16}},  # depthwise, m = 2
                        {"conv": {"filters": 64, "size": 1}},                                    # pointwise
                        {"conv": {"filters": 64, "size": 3, "stride": 2, "padding": "same", "groups": 4,
                                  "bias": False}}))
    dw, pw, grouped = s["layers"][:3]
    assert (dw["output_shape"], dw["params"], dw["macs"]) == ([32, 32, 32], 32 * 1 * 3 * 3 + 32, 32 * 32 * 32 * 9)
    assert (pw["output_shape"], pw["params"], pw["macs"]) == ([32, 32, 64], 64 * 32 + 64, 32 * 32 * 64 * 32)
    assert (grouped["output_shape"], grouped["params"], grouped["macs"]) == (
        [16, 16, 64], 64 * 16 * 3 * 3, 16 * 16 * 64 * 3 * 3 * 16)
    assert s["total_params"] == 320 + 2112 + 9216
    assert s["total_macs"] == 294_912 + 2_097_152 + 2_359_296
    assert dw["config"] == "32× 3×3×1 depthwise, s1, same"
    assert grouped["config"] == "64× 3×3×16 g4, s2, same"


@pytest.mark.parametrize("groups,c,f", [(2, 4, 6), (3, 3, 6), (4, 4, 4)])
def test_export_is_the_pytorch_layout_and_loads_back(rng, groups, c, f):
    layer = build_layer("conv", {"filters": f, "size": [3, 2], "padding": "same", "groups": groups,
                                 "activation": "tanh"})
    layer.build((6, 5, c))
    layer.init_params(rng, np.float32, "tanh")
    layer.params["bias"] += rng.standard_normal(f).astype(np.float32)
    out = layer.export()
    assert out["weight"].shape == (f, c // groups, 3, 2) == layer.param_shapes()["weight"]
    x = rng.standard_normal((2, 6, 5, c)).astype(np.float32)
    want = np.tanh(naive.conv2d(nchw(x).astype(np.float64), out["weight"].astype(np.float64),
                                out["bias"].astype(np.float64), layer.stride, layer.pads, groups))
    np.testing.assert_allclose(nchw(layer.forward(x, Context())), want, rtol=1e-5, atol=1e-5)

    again = build_layer("conv", layer.config())
    again.build((6, 5, c))
    again.init_params(None, np.float32, "tanh")
    again.load(out)
    np.testing.assert_array_equal(again.params["weight"], layer.params["weight"])
    assert again.groups == groups


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_inference_keeps_nothing_and_training_adds_gradients(rng, groups):
    layer = build_layer("conv", {"filters": 8, "size": 3, "groups": groups})
    layer.build((7, 7, 4))
    layer.init_params(rng, np.float32, "linear")
    x = rng.standard_normal((3, 7, 7, 4)).astype(np.float32)
    layer.forward(x, Context())
    assert layer._cache is None and layer._workspace is None
    training = Context(training=True)
    y = layer.forward(x, training)
    layer.backward(np.ones_like(y), training)
    once = layer.grads["weight"].copy()
    layer.forward(x, training)
    layer.backward(np.ones_like(y), training)
    np.testing.assert_allclose(layer.grads["weight"], 2 * once, rtol=1e-6)


def test_mobilenet_like_network_gradient_and_float32_step(rng):
    # a depthwise first layer (its dx is never needed), depthwise-separable blocks, a grouped conv
    from cnncli.engine.losses import Loss, softmax_cross_entropy
    from cnncli.model import Model

    from .gradcheck import assert_grad_close

    specs = [("conv", {"filters": 6, "size": 3, "padding": "same", "groups": 3, "activation": "tanh"}),
             ("conv", {"filters": 8, "size": 1, "activation": "relu"}),
             ("conv", {"filters": 8, "size": 3, "stride": 2, "padding": "same", "groups": 8}),
             ("conv", {"filters": 4, "size": 3, "groups": 2, "activation": "tanh"}),
             ("globalavgpool", {}), ("dense", {"units": 3, "activation": "softmax"})]
    model = Model((8, 8, 3), specs, seed=3, dtype=np.float64)
    x = rng.standard_normal((4, 8, 8, 3))
    labels = np.array([0, 2, 1, 2])
    model.gradients(x, labels, Loss(model.head))
    grads = {k: g.copy() for k, _, g in model.named_params()}
    for key, p, _ in model.named_params():
        assert_grad_close(lambda: softmax_cross_entropy(model.forward(x, training=True), labels)[0],
                          p, grads[key], rng, k=10)

    fast = Model((8, 8, 3), specs, seed=3)
    loss, _ = fast.gradients(x.astype(np.float32), labels, Loss(fast.head))
    assert np.isfinite(loss) and all(g.dtype == np.float32 for _, _, g in fast.named_params())


@pytest.mark.parametrize("in_shape,args,expected", [
    ((28, 28, 1), {"filters": 20, "size": 5, "padding": 2}, 28 * 32 * 25 * 4),    # wide: 28 rows x 32 padded columns
    ((8, 8, 6), {"filters": 40, "size": 3, "padding": 1, "groups": 2}, 8 * 10 * 54 * 4),  # 3 channels per group: wide
    ((28, 28, 1), {"filters": 6, "size": 5, "padding": 2}, 0),                   # up to 16 filters: direct, no columns
    ((8, 8, 6), {"filters": 4, "size": 3, "padding": 1, "groups": 2}, 0),        # direct in each group
    ((9, 9, 3), {"filters": 4, "size": 3, "stride": 2}, 4 * 4 * 27 * 4),          # strided: output positions
    ((8, 8, 4), {"filters": 4, "size": 3, "padding": 1}, 64 * 36 * 4),            # row im2col
    ((8, 8, 32), {"filters": 32, "size": 3, "padding": 1}, 0),                   # winograd keeps no columns
])
def test_inspect_counts_the_im2col_columns_kept_per_image(in_shape, args, expected):
    """The per-image scratch memory `inspect` adds for a conv layer that keeps its columns, by hand."""
    from cnncli.model import build_layer

    layer = build_layer("conv", args)
    layer.build(in_shape)
    assert layer.scratch_bytes(64) == expected
