"""Networks as graphs: the pinned `from` / `name` syntax, add and concat, blocks, the errors,
forward against the NCHW twin, gradients through shared outputs, and what inference keeps."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnncli import config
from cnncli.cli.app import app
from cnncli.config import ConfigError, parse_architecture
from cnncli.engine.losses import Loss
from cnncli.model import INPUT, Model
from cnncli.model.summary import layer_table

from . import naive
from .conftest import nchw
from .gradcheck import assert_grad_close
from .test_model import _randomise

# the example, verbatim: a ResNet basic block with a projection shortcut
PINNED = """
input: [16, 16, 8]
layers:
  - relu: {name: block1}
  - conv: {filters: 32, size: 3, stride: 2, padding: same, bias: false}
  - batchnorm
  - relu
  - conv: {filters: 32, size: 3, padding: same, bias: false}
  - batchnorm
  - conv: {filters: 32, size: 1, stride: 2, bias: false, from: block1}
  - batchnorm
  - add: {from: [-3, -1], activation: relu}
  - globalavgpool
  - dense: {units: 3, activation: softmax}
"""


def arch_of(text, source="net.yaml"):
    return parse_architecture(yaml.safe_load(text), source)


def test_pinned_example_wires_as_written():
    model = arch_of(PINNED).build(build_params=False)
    assert model.sources[0] == (INPUT,)
    assert model.sources[1] == (0,) and model.sources[5] == (4,)
    assert model.sources[6] == (0,)                       # from: block1
    assert model.sources[8] == (5, 7)                     # from: [-3, -1]
    assert model.layers[8].out_shape == (8, 8, 32)
    assert model.readers[0] == [1, 6]


@pytest.mark.parametrize("ref,expected", [(-1, 1), (-2, 0), (-3, INPUT), (0, 0), (1, 1),
                                          ("input", INPUT), ("first", 0)])
def test_every_kind_of_reference(ref, expected):
    arch = parse_architecture({"input": [4, 4, 2], "layers": [
        {"conv": {"filters": 2, "size": 1, "name": "first"}},
        {"conv": {"filters": 2, "size": 1}},
        {"conv": {"filters": 2, "size": 1, "from": ref}},
        {"concat": {"from": [0, 1, 2] if expected != 0 else [1, 2]}},
        "flatten", {"dense": {"units": 2, "activation": "softmax"}}]}, "net.yaml")
    assert arch.build(build_params=False).sources[2] == (expected,)


def test_bare_layers_take_wiring_arguments():
    arch = parse_architecture({"input": [4, 4, 2], "layers": [
        {"conv": {"filters": 2, "size": 1}}, {"batchnorm": {"from": 0, "name": "bn"}},
        {"relu": {"name": "r"}}, {"leaky_relu": {"alpha": 0.2}}, {"concat": {"from": ["r", -1]}},
        {"flatten": {"from": 4}}, {"dense": {"units": 2, "activation": "softmax"}}]}, "net.yaml")
    model = arch.build(build_params=False)
    assert [layer.kind for layer in model.layers][:4] == ["conv", "batchnorm", "activation", "activation"]
    assert model.layers[3].alpha == 0.2 and model.layers[3].activation == "leaky_relu"
    assert model.sources[1] == (0,) and model.sources[4] == (2, 3) and model.sources[5] == (4,)
    # the wiring round-trips through the checkpoint's architecture
    again = parse_architecture(arch.to_dict(), "again").build(build_params=False)
    assert again.sources == model.sources


def _net(*layers, head=({"globalavgpool": {}}, {"dense": {"units": 2, "activation": "softmax"}})):
    return {"input": [8, 8, 3], "layers": list(layers) + list(head)}


@pytest.mark.parametrize("raw,where,message", [
    (_net({"conv": {"filters": 4, "size": 3, "from": 1}}, {"relu": {}}),
     "layers[0] (conv, 'from')", "refers to layers[1], which comes later"),
    (_net({"conv": {"filters": 4, "size": 3, "from": -1}}, {"relu": {"from": 1}}),
     "layers[1] (activation, 'from')", "refers to itself"),
    (_net({"conv": {"filters": 4, "size": 3, "name": "a"}}, {"relu": {"from": "b"}}),
     "layers[1] (activation, 'from')", "names no earlier layer"),
    (_net({"conv": {"filters": 4, "size": 3, "name": "stem"}}, {"relu": {"from": "stme"}}),
     "layers[1] (activation, 'from')", "did you mean 'stem'?"),
    (_net({"conv": {"filters": 4, "size": 3, "name": "a"}}, {"relu": {"name": "a"}}),
     "layers[1] (activation, 'name')", "already used by layers[0]"),
    (_net({"conv": {"filters": 4, "size": 3}}, {"conv": {"filters": 8, "size": 3}}, {"add": {"from": [-2, -1]}}),
     "layers[2] (add, 'from')", "add needs inputs of one shape, got 6x6x4, 4x4x8"),
    (_net({"conv": {"filters": 4, "size": 3}}, {"conv": {"filters": 8, "size": 3}}, {"concat": {"from": [-2, -1]}}),
     "layers[2] (concat, 'from')", "or flat vectors; got 6x6x4, 4x4x8"),
    (_net({"conv": {"filters": 4, "size": 3}}, {"add": {"from": -1}}),
     "layers[1] (add, 'from')", "give 'from' as a list"),
    (_net({"conv": {"filters": 4, "size": 3, "from": [-1, "input"]}}),
     "layers[0] (conv, 'from')", "reads one input"),
    (_net({"conv": {"filters": 4, "size": 3}}, {"conv": {"filters": 4, "size": 3, "from": "input"}}),
     "layers[0] (conv)", "never used (a dead branch)"),
    (_net({"conv": {"filters": 4, "size": 3, "from": -2}}),
     "layers[0] (conv, 'from')", "reaches before the input"),
    (_net({"conv": {"filters": 4, "size": 3, "from": True}}),
     "layers[0] (conv, 'from')", "layer offsets"),
    (_net({"conv": {"filters": 4, "size": 3, "name": "input"}}),
     "layers[0] (conv, 'name')", "other than 'input'"),
])
def test_wiring_mistakes_are_one_line_naming_layer_and_key(raw, where, message):
    with pytest.raises(ConfigError) as info:
        parse_architecture(raw, "net.yaml")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"net.yaml: {where}"), text
    assert message in text, text


def test_wiring_mistake_through_the_cli(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(_net({"conv": {"filters": 4, "size": 3}}, {"relu": {"from": "nope"}})))
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "layers[1] (activation, 'from')" in res.output


# --- forward against the NCHW twin, gradients through shared outputs ---------------------------

RESIDUAL = [  # a stem read by a two-conv branch and a projection, joined by add
    ("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu", "name": "stem"}),
    ("conv", {"filters": 6, "size": 3, "stride": 2, "padding": "same", "bias": False}),
    ("batchnorm", {}),
    ("activation", {"fn": "leaky_relu", "alpha": 0.2}),
    ("conv", {"filters": 6, "size": 3, "padding": 1}),
    ("conv", {"filters": 6, "size": 1, "stride": 2, "from": "stem"}),
    ("add", {"from": [-2, -1], "activation": "relu"}),
    ("globalavgpool", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]
BRANCHES = [  # inception-style: three branches of one input, concatenated; an add of three
    ("conv", {"filters": 3, "size": 1, "activation": "relu"}),
    ("conv", {"filters": 2, "size": 3, "padding": "same", "activation": "tanh", "from": "input"}),
    ("maxpool", {"size": 3, "stride": 1, "padding": "same", "from": "input"}),
    ("concat", {"from": [0, 1, 2]}),                          # 3 + 2 + 2 channels
    ("conv", {"filters": 7, "size": 1, "name": "mix"}),
    ("conv", {"filters": 7, "size": 3, "padding": "same", "from": 3}),
    ("add", {"from": [3, "mix", -1], "activation": "sigmoid"}),
    ("avgpool", {"size": 2, "padding": "same"}),
    ("flatten", {}),
    ("dense", {"units": 5, "activation": "relu", "name": "wide"}),
    ("dense", {"units": 4, "activation": "tanh", "from": -2}),
    ("concat", {"from": ["wide", -1]}),                       # flat vectors: 5 + 4 features
    ("dense", {"units": 1, "activation": "sigmoid"}),
]

GATED = [  # AlexNet's normalisation, ShuffleNet's shuffle, a squeeze-and-excitation gate
    ("conv", {"filters": 6, "size": 3, "padding": "same", "activation": "relu"}),
    ("lrn", {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}),
    ("shuffle", {"groups": 3, "name": "map"}),
    ("globalavgpool", {}),
    ("dense", {"units": 2, "activation": "relu"}),
    ("dense", {"units": 6, "activation": "sigmoid"}),
    ("scale", {"from": ["map", -1]}),
    ("globalavgpool", {}),
    ("dense", {"units": 3, "activation": "softmax"}),
]


@pytest.mark.parametrize("specs", [RESIDUAL, BRANCHES, GATED], ids=["residual", "branches", "gated"])
def test_graph_forward_matches_nchw_twin(rng, specs):
    model = Model((9, 8, 2), specs, seed=0)
    state = _randomise(model, rng)
    x = rng.standard_normal((3, 9, 8, 2)).astype(np.float32)
    probs = model.predict_proba(x)
    ref = naive.network_forward(model, state, nchw(x))
    if model.head == "sigmoid":
        ref = np.concatenate([1 - ref, ref], axis=1)
    np.testing.assert_allclose(probs, ref, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("specs", [RESIDUAL, BRANCHES], ids=["residual", "branches"])
def test_graph_gradient_matches_finite_differences(rng, specs):
    model = Model((6, 6, 2), specs, seed=3, dtype=np.float64)
    for _, p, _ in model.named_params():
        p += rng.standard_normal(p.shape) * 0.2
    x = rng.standard_normal((4, 6, 6, 2))
    labels = np.array([0, 1, 1, 0]) if model.head == "sigmoid" else np.array([0, 2, 1, 2])
    loss = Loss(model.head, 0.05)

    def f():
        return loss(model.forward(x, training=True), labels)[0]

    model.gradients(x, labels, loss)
    grads = {k: g.copy() for k, _, g in model.named_params()}
    for key, p, _ in model.named_params():
        assert_grad_close(f, p, grads[key], rng, k=8)


def test_gradients_are_zeroed_once_per_step_not_carried_over(rng):
    model = Model((6, 6, 2), RESIDUAL, seed=1, dtype=np.float64)
    x, labels = rng.standard_normal((2, 6, 6, 2)), np.array([0, 2])
    model.gradients(x, labels, Loss(model.head))
    first = {k: g.copy() for k, _, g in model.named_params()}
    model.gradients(x, labels, Loss(model.head))
    for k, _, g in model.named_params():
        np.testing.assert_array_equal(g, first[k], err_msg=k)


def _arrays_held(model):
    """Arrays a layer holds besides its parameters, gradients and buffers."""
    held = []
    for i, layer in enumerate(model.layers):
        for name, value in vars(layer).items():
            if name in ("params", "grads", "buffers"):
                continue
            items = value if isinstance(value, (tuple, list)) else [value]
            held += [(i, name) for v in items if isinstance(v, np.ndarray)]
    return held


@pytest.mark.parametrize("specs", [RESIDUAL, BRANCHES], ids=["residual", "branches"])
def test_inference_keeps_nothing_alive(rng, specs):
    model = Model((9, 8, 2), specs, seed=0)
    x = rng.standard_normal((2, 9, 8, 2)).astype(np.float32)
    model.gradients(x, np.array([0, 1]), Loss(model.head))   # a training step first
    model.predict_proba(x)
    assert _arrays_held(model) == []


def test_forward_drops_outputs_once_read(monkeypatch, rng):
    """Only outputs a later layer still needs are alive while forward runs."""
    import weakref

    model = Model((6, 6, 2), RESIDUAL, seed=0)
    alive = {}
    for i, layer in enumerate(model.layers):
        real = layer.forward

        def spy(x, ctx, _real=real, _i=i, **then):
            y = _real(x, ctx, **then)
            alive[_i] = weakref.ref(y)
            seen[_i] = sorted(j for j, ref in alive.items() if ref() is not None and j != _i)
            return y
        monkeypatch.setattr(layer, "forward", spy)
    seen = {}
    model.forward(rng.standard_normal((2, 6, 6, 2)).astype(np.float32))
    # while the shortcut conv (5) runs, the stem (0) it reads and the branch's end (4) are alive;
    # the branch's inner outputs (1, 2, 3) are gone
    assert seen[5] == [0, 4]
    assert seen[6] == [4, 5]


# --- blocks ------------------------------------------------------------------------------------

BLOCKS = """
input: [8, 8, 3]
blocks:
  unit:
    - conv: {filters: $f, size: 3, padding: same, name: inner}
    - relu
    - add: {from: [-3, inner, -1], activation: $act}     # an add of three inputs
layers:
  - conv: {filters: 4, size: 1}
  - unit: {f: 4, act: relu, repeat: 3, name: trunk}
  - globalavgpool: {from: trunk}
  - dense: {units: 2, activation: softmax}
"""


def test_blocks_expand_with_local_names_and_final_indices():
    arch = arch_of(BLOCKS)
    kinds = [k for k, _ in arch.layers]
    assert kinds == ["conv"] + ["conv", "activation", "add"] * 3 + ["globalavgpool", "dense"]
    names = [a.get("name") for _, a in arch.layers]
    assert names[1] == "unit1.inner" and names[4] == "unit2.inner" and names[7] == "unit3.inner"
    assert names[9] == "trunk"
    model = arch.build(build_params=False)
    assert model.sources[3] == (0, 1, 2) and model.sources[6] == (3, 4, 5) and model.sources[9] == (6, 7, 8)
    assert model.sources[10] == (9,)
    assert arch.layers[3][1]["activation"] == "relu"
    # the checkpoint architecture is the expanded list, and parses again without blocks
    assert "blocks" not in arch.to_dict()
    assert parse_architecture(arch.to_dict(), "x").build(build_params=False).sources == model.sources


def test_inspect_resolved_shows_the_expanded_list_with_indices(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(BLOCKS)
    res = CliRunner().invoke(app, ["inspect", "--resolved", str(path)])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("- {")]
    assert len(lines) == 12 and lines[9].endswith("# 9") and "unit3.inner" in lines[9]
    assert yaml.safe_load(res.output)["layers"][1] == {"conv": {"filters": 4, "size": 3, "padding": "same",
                                                                "name": "unit1.inner"}}


@pytest.mark.parametrize("use,message", [
    ({"unit": {"act": "relu"}}, "missing parameter 'f'"),
    ({"unit": {"f": 4, "act": "relu", "filters": 3}}, "unknown parameter 'filters'"),
    ({"unit": {"f": 4, "act": "relu", "repeat": 0}}, "'repeat' must be an integer >= 1"),
    ({"unit": {"f": 4, "act": "nope"}}, "layers[3] (add, 'activation', block unit at layers[1] of the file)"),
])
def test_block_mistakes(use, message):
    raw = yaml.safe_load(BLOCKS)
    raw["layers"][1] = use
    raw["layers"][2] = "globalavgpool"
    with pytest.raises(ConfigError) as info:
        parse_architecture(raw, "net.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


# --- what inspect reports ----------------------------------------------------------------------

def test_resnet20_matches_the_paper():
    arch = config.load_architecture("configs/models/resnet20.yaml")
    s = layer_table(arch)
    # hand count: stem 432 + 32; stage 1: 6 x 2,304 + 6 x 32; stage 2: 4,608 + 5 x 9,216 + 6 x 64 +
    # projection 512 + 64; stage 3: 18,432 + 5 x 36,864 + 6 x 128 + projection 2,048 + 128; dense 650
    assert s["total_params"] == 272_474
    assert abs(s["total_params"] - 270_000) / 270_000 < 0.02   # He et al.: 0.27 M
    assert len(arch.layers) == 63 and s["layers"][-1]["output_shape"] == [10]
    adds = [r for r in s["layers"] if r["type"] == "add"]
    assert len(adds) == 9 and adds[3]["from"] == [25, 27]


def test_receptive_field_follows_the_widest_path_and_from_in_json(tmp_path):
    raw = {"input": [16, 16, 1], "layers": [
        {"conv": {"filters": 2, "size": 3, "padding": "same"}},            # rf 3
        {"conv": {"filters": 2, "size": 3, "padding": "same"}},            # rf 5
        {"conv": {"filters": 2, "size": 5, "padding": "same"}},            # rf 9
        {"add": {"from": [0, 2]}},                                         # the wider: 9
        {"maxpool": {"size": 2}},                                          # 10, jump 2
        {"conv": {"filters": 2, "size": 3, "padding": "same", "from": [-1]}},  # 10 + 2*2 = 14
        "globalavgpool", {"dense": {"units": 2, "activation": "softmax"}}]}
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["inspect", "--json", str(path)])
    rows = json.loads(res.output)["layers"]
    assert [r["receptive_field"][0] for r in rows[:6]] == [3, 5, 9, 9, 10, 14]
    assert rows[0]["from"] == ["input"] and rows[3]["from"] == [0, 2] and rows[5]["from"] == [4]
    table = CliRunner().invoke(app, ["inspect", str(path)]).output
    assert "0,2" in table


def test_layer_arguments_take_yaml11_numbers():
    arch = arch_of("input: [4, 4, 2]\nlayers:\n  - conv: {filters: 2, size: 1}\n  - batchnorm: {eps: 1e-5}\n"
                   "  - flatten\n  - dense: {units: 2, activation: softmax}\n")
    assert arch.build(build_params=False).layers[1].eps == 1e-5


@pytest.mark.parametrize("alpha", [-0.1, True, 1.0, "x"])
def test_leaky_relu_alpha_must_be_a_slope_in_0_1(alpha):
    with pytest.raises(ConfigError, match="'alpha' must be"):
        parse_architecture({"input": [4, 4, 2], "layers": [
            {"conv": {"filters": 2, "size": 1, "activation": "leaky_relu", "alpha": alpha}},
            "flatten", {"dense": {"units": 2, "activation": "softmax"}}]}, "net.yaml")


@pytest.mark.parametrize("path,params", [
    # stem 864 + 64; per separable block (in, out): 9 in + 2 in + in out + 2 out; dense 5,130
    ("configs/models/mobilenet_cifar.yaml", 928 + 2_528 + 9_152 + 18_048 + 34_688 + 68_864 + 134_912 + 5_130),
    # stem 928; modules (1x1, 3x3, pooled 1x1 with biases) 10,304 + 30,816 + 61,568; dense 1,290
    ("configs/models/inception_cifar.yaml", 928 + 10_304 + 30_816 + 61_568 + 1_290),
])
def test_shipped_graph_networks_by_hand(path, params):
    s = layer_table(config.load_architecture(path))
    assert s["total_params"] == params
    assert s["layers"][-1]["output_shape"] == [10]


def test_a_graph_network_trains_predicts_and_inspects(tmp_path):
    """End to end through the CLI functions: a residual block with a concat, on real files."""
    from cnncli.commands.evaluate import evaluate
    from cnncli.commands.predict import predict
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train

    from .imagegen import make_folder

    make_folder(tmp_path / "data", per_class=16)
    model = {"input": [12, 12, 3], "layers": [
        {"conv": {"filters": 6, "size": 3, "padding": "same", "activation": "relu", "name": "stem"}},
        {"conv": {"filters": 6, "size": 3, "padding": 1, "bias": False}}, "batchnorm",
        {"add": {"from": ["stem", -1], "activation": "relu"}},
        {"conv": {"filters": 6, "size": 3, "padding": "same", "groups": 6, "from": "stem"}},
        {"concat": {"from": [-2, -1]}}, {"maxpool": {"size": 2}}, "globalavgpool",
        {"dense": {"units": 3, "activation": "softmax"}}]}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"model": model, "data": {"train": str(tmp_path / "data"), "val_split": 0.25,
                                                            "cache_dir": str(tmp_path / "cache")},
                                   "train": {"epochs": 8, "batch_size": 8, "lr": 0.01}, "output": str(tmp_path / "run")}))
    res = train(cfg, reporter=QuietReporter())
    report = evaluate(res.output / "best.npz", tmp_path / "data", cache_dir=tmp_path / "cache")
    assert report["accuracy"] > 0.8
    out = predict(res.output / "best.npz", [str(tmp_path / "data" / "b")])
    assert sum(r["top"][0]["class"] == "b" for r in out) >= 12
    shown = CliRunner().invoke(app, ["inspect", str(res.output / "best.npz")])
    assert shown.exit_code == 0 and "concat" in shown.output and "3,4" in shown.output


@pytest.mark.parametrize("specs", [RESIDUAL, BRANCHES], ids=["residual", "branches"])
def test_gradient_of_an_inference_output_with_respect_to_a_feature_map(rng, specs):
    """record=True: inference semantics (running statistics, no dropout), yet backward works;
    keep= returns a layer's output and dL/d(that output), as Grad-CAM needs."""
    model = Model((6, 6, 2), specs + [], seed=2, dtype=np.float64)
    _randomise(model, rng)
    x = rng.standard_normal((2, 6, 6, 2))
    target = 0 if specs is RESIDUAL else 5   # 0: through inference batchnorm and both paths
    k = model.n_classes - 1 if model.head == "softmax" else 0

    def score():  # the first image's logit of class k, in inference mode
        return float(model.forward(x)[0, k])

    plain = model.forward(x)
    logits, maps = model.forward(x, record=True, keep=(target,))
    np.testing.assert_array_equal(logits, plain)                  # record changes nothing computed
    dlogits = np.zeros_like(logits)
    dlogits[0, k] = 1.0
    model.zero_grad()
    grads = model.backward(dlogits, keep=(target,))
    fmap, dmap = maps[target], grads[target]
    assert dmap.shape == fmap.shape and np.all(dmap[1] == 0)       # image 2 does not touch image 1's score
    # finite differences through the layer's output itself: shift channel f of image 1's map
    layer = model.layers[target]
    real = layer.forward
    shift = {}

    def shifted(x_, ctx):
        y = real(x_, ctx).copy()
        if shift:
            y[0, ..., shift["f"]] += shift["d"]
        return y
    layer.forward = shifted
    num = []
    for f in range(fmap.shape[-1]):
        shift.update(f=f, d=1e-6)
        up = score()
        shift.update(d=-1e-6)
        down = score()
        num.append((up - down) / 2e-6)
    np.testing.assert_allclose(dmap[0].reshape(-1, fmap.shape[-1]).sum(axis=0), num, rtol=1e-5, atol=1e-8)


def test_backward_with_keep_stops_at_the_lowest_kept_layer(rng):
    model = Model((6, 6, 2), RESIDUAL, seed=1)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    logits, _ = model.forward(x, record=True, keep=(4,))
    model.zero_grad()
    grads = model.backward(np.ones_like(logits), keep=(4,))
    assert set(grads) == {4}
    for i in range(4):   # below the cut (the stem reached by the shortcut too): no partial gradients
        assert all(not g.any() for g in model.layers[i].grads.values()), i
    with pytest.raises(ValueError, match="keep names layers"):
        model.backward(np.ones_like(logits), keep=(INPUT,))


def test_inspect_training_memory_agrees_with_a_measured_step(monkeypatch):
    """inspect's estimate at batch 16, SGD with momentum, against the peak of the arrays a fresh
    model, its optimizer, the batch and one training step allocate (tracemalloc, layer by layer,
    kernels compiled before): within 15%. Batchnorm's outputs before relu and add live only until
    read, the conv outputs they normalise are kept."""
    import tracemalloc

    from cnncli.engine.optim import SGD

    arch = parse_architecture({"input": [48, 48, 3], "layers": [
        {"conv": {"filters": 32, "size": 3, "padding": 1, "bias": False}}, "batchnorm", "relu",
        {"conv": {"filters": 32, "size": 3, "padding": 1, "bias": False}}, "batchnorm",
        {"add": {"from": [2, -1], "activation": "relu"}}, {"maxpool": {"size": 2}},
        {"conv": {"filters": 64, "size": 3, "stride": 2, "padding": 1}}, "batchnorm", "relu6",
        "globalavgpool", {"dense": {"units": 10, "activation": "softmax"}}]}, "test")
    expected = layer_table(arch, 16, "sgd", 0.9)["train_memory_mb"]

    def step():
        x = np.random.default_rng(0).standard_normal((16, 48, 48, 3)).astype(np.float32)
        model = arch.build(seed=0)
        monkeypatch.setattr(model.shards, "usable", lambda n, ctx: False)
        model.train_step(x, np.arange(16) % 10, Loss(model.head), SGD(model.named_params(), 0.01, momentum=0.9))

    step()   # compiles the kernels: the compiler's own objects stay out of the measurement
    tracemalloc.start()
    try:
        step()
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak == pytest.approx(expected, rel=0.15), (peak, expected)
