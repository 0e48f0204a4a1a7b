"""The layer contract: every layer kind answers for itself what the rest of cnncli asks of it,
and every activation function is one row of layers/functions.py with its kernel, its slow twin,
its gradient, its ONNX nodes and its docs row."""

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from cnncli import kernels
from cnncli.kernels.activation import CODES, activate, activation_grad, keeps_input
from cnncli.layers import ALIASES, FUNCTIONS, LAYERS, Context, Layer, kernel_modules
from cnncli.model import Model, build_layer

from . import naive
from .gradcheck import assert_grad_close

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "layers.md").read_text()
# every element-wise function (softmax spans a row: tests of its own in test_gradients.py), so
# that a new row of FUNCTIONS is tested here without touching this file
ELEMENTWISE = tuple(sorted(set(FUNCTIONS) - {"softmax", "linear"}))
F64 = np.float64


def _torch_nodes():
    """The layer kinds scripts/torch_graph.py builds (its NODES table), read without torch."""
    tree = ast.parse((ROOT / "scripts" / "torch_graph.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NODES" for t in node.targets):
            return {k.value for k in node.value.keys}
    return set()


TORCH_NODES = _torch_nodes()
TORCH_FUNCTIONS = (ROOT / "scripts" / "torch_graph.py").read_text()


# --- every layer kind: its per-kind answers ----------------------------------------------------

@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_every_layer_kind_answers_for_itself(kind):
    cls = LAYERS[kind]
    assert cls.onnx is not Layer.onnx, f"{kind}: no ONNX nodes (Layer.onnx)"
    assert cls.conv_like in (True, False), f"{kind}: conv_like (Grad-CAM) not declared"
    assert cls.init_role in ("supplies", "through", "stops"), f"{kind}: init_role (He / Glorot) not declared"
    assert isinstance(cls.kernels, tuple) and set(cls.kernels) <= set(kernels.modules()), \
        f"{kind}: kernels (the JIT warm-up) must name modules of cnncli/kernels: {cls.kernels}"
    assert re.search(rf"^\| [^|]*\b{kind}\b[^|]*\|", DOCS, re.M), f"{kind}: no row in docs/layers.md"
    assert f'"{kind}"' in inspect.getsource(naive.network_forward), f"{kind}: no slow twin in tests/naive.py"
    assert kind in TORCH_NODES, f"{kind}: no PyTorch twin in scripts/torch_graph.py (the benchmarks' yardstick)"


def test_every_kernel_module_is_run_by_some_layer_the_data_pipeline_or_the_optimizers():
    """kernels.dispatchers() finds the modules itself: a new one no layer names fails here."""
    compiled = {name for name in kernels.modules() if kernels.dispatchers([name])}
    assert compiled <= set(kernel_modules()) | {"augment", "optim"}, compiled - set(kernel_modules())


def test_no_kind_test_outside_the_layers():
    """What differs between kinds is each layer's answer, not an if-chain elsewhere."""
    found = []
    for path in sorted((ROOT / "cnncli").rglob("*.py")):
        if "layers" in path.relative_to(ROOT / "cnncli").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            left = node.left if isinstance(node, ast.Compare) else None
            if isinstance(left, ast.Attribute) and left.attr == "kind" and not (
                    isinstance(left.value, ast.Attribute) and left.value.attr == "dtype"):   # numpy's dtype.kind
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


# --- every activation function ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_its_kernel_twin_alias_and_docs_row(name):
    f = FUNCTIONS[name]
    assert name in CODES and ALIASES[name] == ("activation", {"fn": name})
    assert keeps_input(name) == (f.keeps == "input")
    assert f.keeps in ("output", "input", "nothing") and f.he in (True, False)
    naive.activation(np.zeros(3), name)        # the slow twin knows it (raises ValueError otherwise)
    assert f'name == "{name}"' in TORCH_FUNCTIONS or name == "linear", f"{name}: not in scripts/torch_graph.py"
    row = re.search(rf"^\| `{name}` \|.*\| (output|input|nothing) \| (He|Glorot) \|", DOCS, re.M)
    assert row, f"no row for {name} in docs/layers.md's activation table"
    assert row.group(1) == f.keeps and row.group(2) == ("He" if f.he else "Glorot")


EDGES = np.array([-1e4, -40.0, -6.0, -3.0, -2.0, -1.5, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.5, 2.0, 3.0, 6.0, 7.5, 40.0, 1e4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_function_kernels_match_the_slow_twin(name, dtype):
    rng = np.random.default_rng(0)
    z = np.concatenate([EDGES, rng.standard_normal(200) * 4]).reshape(-1, 2).astype(dtype)
    bias = np.array([0.25, -0.5], dtype)
    y = activate(z.copy(), name, 0.1, bias)
    assert y.dtype == dtype
    with np.errstate(over="ignore"):     # e^-z of -1e4: inf, and the twin's 1 / (1 + inf) is the right 0
        want = naive.activation((z + bias).astype(F64), name, 0.1)
    np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_function_derivatives_match_finite_differences(name):
    """dL/dz from what each function keeps, against central differences of the slow twin,
    away from the kinks (relu6 at 0 and 6, hard ones at -3 and 3) where no derivative exists."""
    rng = np.random.default_rng(1)
    z = rng.uniform(-8, 8, (40, 3))
    z = z[np.all(np.abs(z[..., None] - np.array([0.0, -3.0, 3.0, 6.0])) > 1e-3, axis=-1).all(axis=1)]
    dy = rng.standard_normal(z.shape)
    y = naive.activation(z, name, 0.1)
    kept = z if keeps_input(name) else y
    dz = activation_grad(dy, kept.copy(), name, 0.1)
    eps = 1e-6
    numeric = (naive.activation(z + eps, name, 0.1) - naive.activation(z - eps, name, 0.1)) / (2 * eps) * dy
    np.testing.assert_allclose(dz, numeric, rtol=1e-6, atol=1e-7)


def test_hardswish_derivative_at_its_ends_is_pytorchs():
    """PyTorch 2.13's hardswish backward (checked against it in a script): 0 up to -3 included,
    z / 3 + 1/2 strictly between -3 and 3, 1 from 3 on."""
    z = np.array([[-3.0001, -3.0, -2.9999, 2.9999, 3.0, 3.0001]])
    dz = activation_grad(np.ones_like(z), z, "hardswish")
    np.testing.assert_allclose(dz, [[0.0, 0.0, -2.9999 / 3 + 0.5, 2.9999 / 3 + 0.5, 1.0, 1.0]])


FUSED = [(kind, args, shape) for name in ELEMENTWISE for kind, args, shape in (
    ("conv", {"filters": 3, "size": 3, "padding": "same", "activation": name}, (5, 6, 2)),         # im2col / direct
    ("conv", {"filters": 32, "size": 3, "padding": "same", "activation": name}, (6, 6, 32)),       # winograd
    ("conv", {"filters": 4, "size": 3, "groups": 4, "stride": 2, "activation": name}, (7, 6, 4)),  # depthwise
    ("dense", {"units": 4, "activation": name}, (6,)),
    ("activation", {"fn": name}, (3, 4, 2)),
)]


@pytest.mark.parametrize("kind,args,in_shape", FUSED, ids=lambda v: str(v))
def test_fused_and_standalone_functions_backward_matches_finite_differences(kind, args, in_shape):
    rng = np.random.default_rng(2)
    layer = build_layer(kind, args)
    layer.build(in_shape)
    layer.init_params(rng, F64, layer.activation)
    for p in layer.params.values():
        p += rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((3,) + in_shape) * 2
    r = rng.standard_normal((3,) + layer.out_shape)
    ctx = Context(training=True)

    def f():
        return float(np.sum(layer.forward(x, ctx) * r))

    f()
    dx = layer.backward(r.copy(), ctx)
    assert_grad_close(f, x, dx, rng, rtol=1e-5, atol=1e-6)
    for name, p in layer.params.items():
        f()
        layer.zero_grad()
        layer.backward(r.copy(), ctx)
        assert_grad_close(f, p, layer.grads[name].copy(), rng, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_add_with_a_function_backward_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    layer = build_layer("add", {"activation": name})
    layer.build([(4, 3, 2), (4, 3, 2)])
    xs = [rng.standard_normal((2, 4, 3, 2)) * 2 for _ in range(2)]
    r = rng.standard_normal((2, 4, 3, 2))
    ctx = Context(training=True)

    def f():
        return float(np.sum(layer.forward(xs, ctx) * r))

    f()
    dxs = layer.backward(r.copy(), ctx)
    for x, dx in zip(xs, dxs):
        assert_grad_close(f, x, dx, rng)


@pytest.mark.parametrize("name,keeps", [("relu", "output"), ("relu6", "output"), ("silu", "input"), ("gelu", "input")])
def test_backward_keeps_the_output_or_the_input_as_the_function_says(name, keeps):
    """ReLU and its kin keep nothing beyond their output; silu and gelu keep the input beside it."""
    rng = np.random.default_rng(4)
    layer = build_layer("conv", {"filters": 4, "size": 3, "activation": name})
    layer.build((6, 6, 2))
    layer.init_params(rng, np.float32, name)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    y = layer.forward(x, Context(training=True))
    kept = layer._cache[1]
    assert (kept is y) == (keeps == "output")
    if keeps == "input":   # the pre-activation, from which y follows
        np.testing.assert_allclose(activate(kept.copy(), name), y, rtol=1e-6)
    # inference keeps nothing, and fuses the function into the kernel: the same values
    assert np.array_equal(layer.forward(x, Context()), y) and layer._cache is None


def test_inspect_counts_the_kept_input_in_the_training_memory():
    """A function kept from its input stores one more array the size of the output per image."""
    from cnncli import config
    from cnncli.model.summary import layer_table

    def memory(name):   # the first conv's output is the second's input, kept in either case
        arch = config.parse_architecture({"input": [8, 8, 3], "layers": [
            {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": name}},
            {"conv": {"filters": 4, "size": 1, "activation": name}},
            "globalavgpool", {"dense": {"units": 2, "activation": "softmax"}}]}, "test")
        return layer_table(arch, batch_size=10)["train_memory_mb"]

    assert memory("silu") - memory("relu") == pytest.approx(10 * 8 * 8 * 4 * 4 / 1e6)
    assert memory("relu6") == memory("relu")


KEEPERS = [("conv", {"filters": 6, "size": 3, "padding": 1}), ("batchnorm", {}), ("relu", {}),
           ("conv", {"filters": 6, "size": 1, "activation": "silu"}), ("silu", {}),
           ("add", {"from": [2, -1], "activation": "relu"}), ("lrn", {"size": 3}), ("shuffle", {"groups": 2}),
           ("concat", {"from": [-1, 5]}), ("maxpool", {"size": 2}), ("pad", {"pads": 1}), ("avgpool", {"size": 1}),
           ("globalavgpool", {}), ("dense", {"units": 12, "activation": "sigmoid"}),
           ("scale", {"from": [11, -1]}), ("globalmaxpool", {}), ("slice", {"stop": 6}), ("dropout", {"rate": 0.5}), ("flatten", {}),
           ("dense", {"units": 3, "activation": "softmax"})]


def test_each_layer_keeps_for_backward_what_it_declares():
    """keeps_input / keeps_output (inspect's memory estimate reads them) against the arrays each
    layer holds after a training forward: its own input and output, by memory shared."""
    model = Model((6, 6, 4), KEEPERS, seed=1)
    assert {layer.kind for layer in model.layers} == set(LAYERS)
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 4)).astype(np.float32)
    _, outs = model.forward(x, training=True, keep=tuple(range(len(model.layers))))
    outs[-1] = x
    for i, layer in enumerate(model.layers):
        held = [a for name in ("_cache", "_kept", "_mask") for a in _arrays(getattr(layer, name, None))]
        holds = lambda b: any(np.shares_memory(a, b) for a in held)  # noqa: E731
        ins = [outs[j] for j in model.sources[i]]
        assert layer.keeps_input == any(holds(b) for b in ins), f"layers[{i}] {layer.kind}: keeps_input"
        if i < len(model.layers) - 1:   # the head hands its logits to the loss
            assert layer.keeps_output == (holds(outs[i]) and not any(np.shares_memory(outs[i], b) for b in ins)), \
                f"layers[{i}] {layer.kind}: keeps_output"


def _arrays(value):
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    return []


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_a_layer_followed_by_each_function_starts_as_its_family_says(name):
    """He normal (std sqrt(2 / fan_in) = 0.33 here) or Glorot uniform (std 0.11)."""
    model = Model((6, 6, 2), [("conv", {"filters": 16, "size": 3, "activation": name}),
                              ("flatten", {}), ("dense", {"units": 3, "activation": "softmax"})], seed=0)
    std = float(model.layers[0].params["weight"].std())
    assert (std > 0.25) == FUNCTIONS[name].he, std   # leaky_relu's default slope 0.01: He as relu


@pytest.mark.parametrize("opset", [13, 14, 17, 20])
def test_every_function_exports_and_onnx_runtime_agrees(tmp_path, opset):
    """The 'functions' network of test_export (each function fused and standalone) at the oldest
    opset, the first with HardSwish, the default and the first with Gelu: ONNX Runtime's logits
    and probabilities against cnncli's, within 1e-5."""
    import onnx

    from cnncli.export import export

    from .test_export import both, pixels_for, random_checkpoint

    ckpt = random_checkpoint(tmp_path / "m.npz", "functions")
    for logits in (False, True):
        out = tmp_path / f"m{int(logits)}.onnx"
        export(ckpt, out, opset=opset, logits=logits)
        onnx.checker.check_model(onnx.load(out), full_check=True)
        theirs, ours = both(ckpt, out, pixels_for(ckpt, 6))
        scale = max(1.0, float(np.abs(ours).max()))
        assert float(np.abs(theirs - ours).max()) / scale <= 1e-5
        ops = {n.op_type for n in onnx.load(out).graph.node}
        assert ("Gelu" in ops) == (opset >= 20) and ("HardSwish" in ops) == (opset >= 14)
