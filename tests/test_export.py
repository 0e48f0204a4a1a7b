"""`cnncli export`: every layer kind and every shipped network, exported with random weights and run
in ONNX Runtime, gives cnncli's probabilities (and logits) to 1e-5; metadata; the one-line errors."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from typer.testing import CliRunner

from cnncli import __version__, config
from cnncli.model import checkpoint
from cnncli.cli.app import app
from cnncli.export import DEFAULT_OPSET, MIN_OPSET, TOLERANCE, check, export
from cnncli.commands.predict import load

MODELS = Path(__file__).resolve().parent.parent / "configs" / "models"

# every layer kind and padding rule, on small odd-sized inputs
GENERATED = {
    # 1 channel, sigmoid head; `same` with a stride and an even filter (the extra row / column at
    # the bottom / right); `same` whose total padding clamps at 0 (stride > filter); explicit pool padding
    "same_sigmoid": {"input": [13, 11, 1], "layers": [
        {"conv": {"filters": 4, "size": [5, 3], "stride": [2, 1], "padding": "same", "activation": "relu"}},
        {"conv": {"filters": 5, "size": 4, "stride": 2, "padding": "same", "activation": "tanh"}},
        {"conv": {"filters": 3, "size": 1, "stride": 2, "padding": "same", "activation": "sigmoid"}},
        {"maxpool": {"size": 3, "stride": 2, "padding": 1}},
        "flatten",
        {"dense": {"units": 1, "activation": "sigmoid"}}]},
    # both pool kinds padded up to window - 1 (corner windows see a single real cell), explicit,
    # asymmetric and `same`; leaky_relu's alpha on a conv
    "pool_padding": {"input": [10, 9, 3], "layers": [
        {"conv": {"filters": 6, "size": 3, "padding": [1, 0], "activation": "leaky_relu", "alpha": 0.2}},
        {"avgpool": {"size": 3, "stride": 1, "padding": 2}},
        {"maxpool": {"size": [3, 2], "stride": [2, 1], "padding": [2, 1]}},
        {"avgpool": {"size": 4, "stride": 3, "padding": "same"}},
        {"maxpool": {"size": 2, "padding": "same"}},
        "globalmaxpool",
        {"dense": {"units": 3, "activation": "softmax"}}]},
    # grouped and depthwise conv (2 filters per channel), batchnorm on maps and on vectors (eps
    # other than the default), standalone leaky_relu with its alpha, dropout, dense without bias
    "groups_batchnorm": {"input": [9, 9, 4], "layers": [
        {"conv": {"filters": 6, "size": 3, "groups": 2, "padding": 1, "bias": False}},
        {"batchnorm": {"eps": 1e-3}},
        "relu",
        {"conv": {"filters": 12, "size": 3, "stride": 2, "groups": 6, "padding": "same"}},
        "batchnorm",
        {"leaky_relu": {"alpha": 0.3}},
        {"conv": {"filters": 4, "size": 1, "activation": "sigmoid"}},
        "flatten",
        {"dense": {"units": 8, "bias": False}},
        {"batchnorm": {"eps": 0.01}},
        {"leaky_relu": {"alpha": 0.1}},
        {"dropout": {"rate": 0.3}},
        {"dense": {"units": 4, "activation": "softmax"}}]},
    # a graph: an add of three inputs (one of them the network's input) with its activation, a
    # concat of maps, a conv with softmax over its channels, a standalone softmax over a map's
    # channels, both global pools, flatten of a vector, a concat of vectors, a standalone softmax head
    "graph": {"input": [8, 7, 3], "layers": [
        {"conv": {"filters": 3, "size": 3, "padding": "same", "activation": "relu", "name": "a"}},
        {"conv": {"filters": 3, "size": 1, "activation": "tanh", "from": "input"}},
        {"add": {"from": ["input", "a", -1], "activation": "relu"}},
        {"conv": {"filters": 2, "size": 3, "padding": 1, "from": "a"}},
        {"maxpool": {"size": 3, "stride": 1, "padding": "same", "from": 2}},
        {"concat": {"from": [2, 3, 4]}},
        {"conv": {"filters": 5, "size": 1, "activation": "softmax", "name": "soft"}},
        {"conv": {"filters": 5, "size": 3, "padding": "same", "from": 5}},
        "softmax",
        {"add": {"from": ["soft", -1]}},
        {"globalavgpool": {"name": "gap"}},
        {"globalmaxpool": {"from": -2}},
        {"concat": {"from": ["gap", -1]}},
        "flatten",
        {"dense": {"units": 6, "activation": "relu"}},
        {"concat": {"from": [-3, -1]}},
        {"dense": {"units": 3}},
        "softmax"]},
    # every activation function, fused into conv, dense and add, and standalone (some written out
    # as several ONNX nodes below opset 20: checked at every opset by test_layer_contract)
    "functions": {"input": [9, 8, 3], "layers": [
        {"conv": {"filters": 6, "size": 3, "padding": "same", "activation": "relu6", "name": "a"}},
        {"conv": {"filters": 6, "size": 3, "padding": "same", "activation": "hardswish"}},
        {"add": {"from": ["a", -1], "activation": "silu"}},
        "gelu",
        {"conv": {"filters": 6, "size": 3, "groups": 6, "padding": 1, "activation": "gelu_tanh"}},
        "batchnorm",
        "hardsigmoid",
        {"conv": {"filters": 4, "size": 1, "activation": "silu"}},
        "hardswish",
        "relu6",
        "globalavgpool",
        {"dense": {"units": 7, "activation": "gelu"}},
        {"dense": {"units": 5, "activation": "gelu_tanh"}},
        "silu",
        {"dense": {"units": 3, "activation": "softmax"}}]},
    # across channels: lrn (two windows), a channel shuffle, a squeeze-and-excitation gate
    # over a map (its dense layers fed by a global pool) and a gate over a vector
    "channels": {"input": [9, 8, 3], "layers": [
        {"conv": {"filters": 6, "size": 3, "padding": "same", "activation": "relu"}},
        {"lrn": {"size": 5, "alpha": 0.5, "beta": 0.75, "bias": 2.0}},
        {"conv": {"filters": 8, "size": 3, "groups": 2, "padding": 1, "activation": "tanh"}},
        {"shuffle": {"groups": 2}},
        {"lrn": {"size": 3, "alpha": 1.5, "beta": 0.6, "bias": 1.0, "name": "map"}},
        "globalavgpool",
        {"dense": {"units": 3, "activation": "relu"}},
        {"dense": {"units": 8, "activation": "hardsigmoid"}},
        {"scale": {"from": ["map", -1]}},
        {"globalavgpool": {"name": "v"}},
        {"dense": {"units": 8, "activation": "sigmoid"}},
        {"scale": {"from": ["v", -1]}},
        {"dense": {"units": 3, "activation": "softmax"}}]},
    # padding of its own on each side: a conv's and a pool's four numbers, pad layers before a
    # conv, a max pool and an average
    "padding": {"input": [9, 8, 3], "layers": [
        {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": [0, 1, 2, 0], "activation": "relu"}},
        {"pad": {"pads": [1, 0, 0, 2]}},
        {"conv": {"filters": 4, "size": [3, 2], "padding": [1, 1, 0, 1], "activation": "tanh"}},
        {"pad": {"pads": 1}},
        {"maxpool": {"size": 2, "stride": 1, "padding": [1, 0, 0, 1]}},
        {"pad": {"pads": [0, 1]}},
        {"avgpool": {"size": 3, "stride": 2, "padding": [0, 2, 1, 0]}},
        "flatten",
        {"dense": {"units": 3, "activation": "softmax"}}]},
    # ShuffleNetV2's unit: the channels split in two, one half convolved, joined and shuffled
    "split": {"input": [8, 8, 3], "layers": [
        {"conv": {"filters": 8, "size": 3, "padding": 1, "activation": "relu", "name": "x"}},
        {"slice": {"start": 0, "stop": 4, "name": "a"}},
        {"slice": {"start": 4, "stop": 8, "from": "x"}},
        {"conv": {"filters": 4, "size": 3, "padding": 1, "groups": 4, "activation": "relu"}},
        {"concat": {"from": ["a", -1]}},
        {"shuffle": {"groups": 2}},
        "globalavgpool",
        {"slice": {"start": 2, "stop": 7}},
        {"dense": {"units": 3, "activation": "softmax"}}]},
    # a standalone sigmoid head; a strided valid conv that drops the last rows; avgpool without padding
    "sigmoid_layer_head": {"input": [7, 9, 1], "layers": [
        {"conv": {"filters": 3, "size": 2, "stride": 3}},
        {"avgpool": {"size": 2, "stride": 1}},
        "flatten",
        {"dense": {"units": 1}},
        "sigmoid"]},
}

SHIPPED = ["lenet5", "vgg_cifar", "allconv", "resnet20", "mobilenet_cifar", "inception_cifar", "explainer"]


def architecture(name):
    if name in GENERATED:
        return config.parse_architecture(GENERATED[name], name)
    raw = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    if name == "explainer":  # 256x256x3 -> 1,000 units is 786 MB of weights: the same layers on 16x16
        raw["input"] = [16, 16, 3]
    return config.parse_architecture(raw, name)


def random_checkpoint(path, name, seed=0, resize="stretch"):
    """The architecture with seeded random weights, random biases and random batchnorm statistics,
    a per-channel mean / std, saved as a checkpoint -> path."""
    arch = architecture(name)
    model = arch.build(seed=seed)
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_var") or (k.endswith("weight") and v.ndim == 1):   # batchnorm scales
            state[k] = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif k.endswith("bias") or k.endswith("running_mean"):
            state[k] = rng.normal(0.0, 0.2, v.shape).astype(v.dtype)
    model.load_state_dict(state)
    h, w, c = arch.input
    mean, std = [0.3, 0.5, 0.4][:c] + [0.45] * (c - 3), [0.2, 0.25, 0.3][:c] + [0.22] * (c - 3)
    # logits of a few hundred (ResNet-20's residual sums) make probabilities exactly 0 and 1, which
    # would compare equal whatever the exporter did: scale the last layer to logits within +-4
    top = np.abs(model.forward(rng.standard_normal((4, h, w, c)).astype(np.float32))).max()
    last = f"layers.{len(model.layers) - 1}."
    for k in state:
        if top > 6 and k.startswith(last):
            state[k] = state[k] * np.float32(4 / top)
    checkpoint.save(path, state, {
        "architecture": arch.to_dict(), "classes": [f"class {i}" for i in range(model.n_classes)], "epoch": 0,
        "preprocessing": {"input": [h, w, c], "channels": c, "mean": mean, "std": std, "resize": resize}})
    return path


def both(ckpt, onnx_path, pixels):
    """pixels (N, H, W, C) in [0, 1] -> (ONNX Runtime's output, cnncli's: probabilities or logits)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.get_outputs()[0].name
    theirs = session.run(None, {"pixels": np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))})[0]
    loaded = load(ckpt)
    x = ((pixels - loaded.mean) / loaded.std).astype(np.float32)
    ours = loaded.model.forward(x) if out == "logits" else loaded.model.predict_proba(x)
    return theirs, ours


def pixels_for(ckpt, n, seed=1):
    h, w, c = load(ckpt).shape
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


@pytest.mark.parametrize("name", list(GENERATED) + SHIPPED)
def test_onnx_runtime_gives_cnncli_probabilities_and_logits(tmp_path, name, record_property):
    ckpt = random_checkpoint(tmp_path / "m.npz", name)
    pixels = pixels_for(ckpt, 5)
    export(ckpt, tmp_path / "p.onnx")
    theirs, ours = both(ckpt, tmp_path / "p.onnx", pixels)
    assert theirs.shape == ours.shape == (5, load(ckpt).model.n_classes)
    # neither all alike nor saturated at 0 and 1, or the comparison would show nothing
    assert 0.01 < ours.max() - ours.min() and ours.max(axis=1).min() < 0.99
    diff = float(np.abs(theirs - ours).max())
    export(ckpt, tmp_path / "z.onnx", logits=True)
    zt, zo = both(ckpt, tmp_path / "z.onnx", pixels)
    assert zt.shape == zo.shape == (5, load(ckpt).model.output_shape[0])
    zdiff = float(np.abs(zt - zo).max() / max(1.0, np.abs(zo).max()))
    record_property("max_diff", diff)
    record_property("max_logit_diff_scaled", zdiff)
    assert diff <= TOLERANCE and zdiff <= TOLERANCE


@pytest.mark.parametrize("opset", [MIN_OPSET, onnx.defs.onnx_opset_version()])
def test_every_opset_from_the_oldest_to_the_newest(tmp_path, opset):
    ckpt = random_checkpoint(tmp_path / "m.npz", "graph")
    info = export(ckpt, tmp_path / "m.onnx", opset=opset)
    model = onnx.load(tmp_path / "m.onnx")
    assert info.opset == opset and [o.version for o in model.opset_import if o.domain == ""] == [opset]
    onnx.checker.check_model(model, full_check=True)
    theirs, ours = both(ckpt, tmp_path / "m.onnx", pixels_for(ckpt, 3))
    assert np.abs(theirs - ours).max() <= TOLERANCE


def test_a_batch_of_one_and_a_large_batch_run_on_one_file(tmp_path):
    ckpt = random_checkpoint(tmp_path / "m.npz", "pool_padding")
    export(ckpt, tmp_path / "m.onnx")
    for n in (1, 33):
        theirs, ours = both(ckpt, tmp_path / "m.onnx", pixels_for(ckpt, n))
        assert theirs.shape == (n, 3) and np.abs(theirs - ours).max() <= TOLERANCE


def test_sigmoid_head_gives_both_columns_as_predict(tmp_path):
    ckpt = random_checkpoint(tmp_path / "m.npz", "same_sigmoid")
    export(ckpt, tmp_path / "m.onnx")
    theirs, _ = both(ckpt, tmp_path / "m.onnx", pixels_for(ckpt, 4))
    np.testing.assert_allclose(theirs.sum(axis=1), 1.0, atol=1e-6)
    export(ckpt, tmp_path / "z.onnx", logits=True)
    z, _ = both(ckpt, tmp_path / "z.onnx", pixels_for(ckpt, 4))
    np.testing.assert_allclose(theirs[:, 1], 1 / (1 + np.exp(-z[:, 0])), atol=1e-6)


def test_metadata_names_and_shapes_travel_in_the_file(tmp_path):
    ckpt = random_checkpoint(tmp_path / "m.npz", "pool_padding", resize="crop")
    info = export(ckpt, tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == ["class 0", "class 1", "class 2"] == info.classes
    assert (meta["input_height"], meta["input_width"], meta["input_channels"]) == ("10", "9", "3")
    assert meta["resize"] == "crop" and meta["cnncli_version"] == __version__ and meta["output"] == "probabilities"
    assert json.loads(meta["mean"]) == pytest.approx([0.3, 0.5, 0.4]) and meta["head"] == "softmax"
    assert model.producer_name == "cnncli"
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp), inp.type.tensor_type.elem_type) == ("pixels", ["N", 3, 10, 9], onnx.TensorProto.FLOAT)
    assert (out.name, dims(out)) == ("probabilities", ["N", 3])
    export(ckpt, tmp_path / "z.onnx", logits=True)
    z = onnx.load(tmp_path / "z.onnx")
    assert z.graph.output[0].name == "logits" and {p.key: p.value for p in z.metadata_props}["output"] == "logits"


def test_padding_is_written_out_in_onnx_order(tmp_path):
    """`same` with an even filter: cnncli's extra row and column at the bottom and right, as ONNX
    pads (top, left, bottom, right); average pooling excludes padded cells."""
    ckpt = random_checkpoint(tmp_path / "m.npz", "same_sigmoid")
    export(ckpt, tmp_path / "m.onnx")
    nodes = {n.name: n for n in onnx.load(tmp_path / "m.onnx").graph.node}
    attr = lambda n, k: next(onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == k)  # noqa: E731
    assert attr(nodes["layers.0.conv"], "pads") == [2, 1, 2, 1]   # 5x3, stride (2, 1) on 13x11: 4 rows, 2 cols
    assert attr(nodes["layers.1.conv"], "pads") == [1, 1, 2, 2]   # 4x4 stride 2 on 7x11: 3 and 3
    ckpt = random_checkpoint(tmp_path / "p.npz", "pool_padding")
    export(ckpt, tmp_path / "p.onnx")
    nodes = {n.name: n for n in onnx.load(tmp_path / "p.onnx").graph.node}
    assert attr(nodes["layers.1"], "count_include_pad") == 0 and attr(nodes["layers.1"], "pads") == [2, 2, 2, 2]


# --- check(), and the command line ---------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small checkpoint trained on image files (resize: crop, 3 classes) and its data folder."""
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train

    from .imagegen import make_folder

    root = tmp_path_factory.mktemp("trained")
    make_folder(root / "data", per_class=8, size=14)
    model = {"input": [12, 12, 3], "layers": [
        {"conv": {"filters": 6, "size": 3, "padding": "same", "bias": False}}, "batchnorm", "relu",
        {"maxpool": {"size": 3, "stride": 2, "padding": 1}},
        {"conv": {"filters": 6, "size": 3, "padding": "same", "groups": 6, "activation": "relu"}},
        {"avgpool": {"size": 2, "padding": "same"}}, "flatten",
        {"dense": {"units": 3, "activation": "softmax"}}]}
    cfg = root / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": model, "data": {"train": str(root / "data"), "val_split": 0.25, "resize": "crop",
                                 "cache_dir": str(root / "cache")},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.01}, "output": str(root / "run")}))
    train(cfg, reporter=QuietReporter())
    return root / "run" / "best.npz", root / "data"


def test_check_compares_random_inputs_and_image_files(tmp_path, trained):
    ckpt, data = trained
    export(ckpt, tmp_path / "m.onnx")
    report = check(ckpt, tmp_path / "m.onnx", [str(data / "a"), str(data / "b" / "img0.png")], n_random=4)
    assert (report.random, report.images, report.output) == (4, 9, "probabilities")
    assert report.ok and report.max_diff <= TOLERANCE


def test_cli_export_check_images_on_a_trained_checkpoint(tmp_path, trained):
    ckpt, data = trained
    out = tmp_path / "model.onnx"
    res = CliRunner().invoke(app, ["export", str(ckpt), str(out), "--check-images", str(data / "a" / "img1.png"),
                                   str(data / "c" / "img2.png"), str(data / "b")])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "pixels N×3×12×12" in res.output and "probabilities N×3" in res.output
    assert "8 random inputs and 10 images: largest difference" in res.output
    # the file alone classifies a file as predict does
    from cnncli.commands.predict import predict
    top = predict(ckpt, [str(data / "c" / "img2.png")])[0]["top"][0]
    from cnncli.data.decode import load_image
    pixels = load_image(data / "c" / "img2.png", 12, 12, 3, "crop")[None].astype(np.float32) / 255
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"pixels": pixels.transpose(0, 3, 1, 2)})[0][0]
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    assert classes[int(probs.argmax())] == top["class"] and float(probs.max()) == pytest.approx(top["prob"], abs=1e-5)


def test_cli_logits_and_opset(tmp_path, trained):
    ckpt, _ = trained
    res = CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "z.onnx"), "--logits", "--opset", "13",
                                   "--check"])
    assert res.exit_code == 0, res.output
    assert "opset 13" in res.output and "logits N×3" in res.output and "8 random inputs:" in res.output
    assert onnx.load(tmp_path / "z.onnx").graph.output[0].name == "logits"


def test_cli_help_states_the_defaults_the_code_uses():
    text = " ".join(CliRunner().invoke(app, ["export", "--help"]).output.split())
    assert f"default {DEFAULT_OPSET}; {MIN_OPSET} or newer" in text
    assert "more than 1e-5" in text and TOLERANCE == 1e-5


def test_check_failure_exits_1_naming_the_difference(tmp_path, monkeypatch):
    """A real exporter bug (the extra `same` row put at the top instead of the bottom) is caught."""
    from cnncli.layers import conv

    ckpt = random_checkpoint(tmp_path / "m.npz", "same_sigmoid")
    monkeypatch.setattr(conv, "onnx_pads", lambda p: [p[1], p[3], p[0], p[2]])   # the conv layer's own emitter
    res = CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "--check"])
    assert res.exit_code == 1
    assert "differs from cnncli by" in res.output and "Traceback" not in res.output


def one_error_line(res, code=2):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == code and len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_missing_onnx_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` now raises ImportError
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx")]))
    assert "pip install 'cnncli[onnx]'" in line and not (tmp_path / "m.onnx").exists()


def test_check_without_onnx_runtime_writes_nothing(tmp_path, monkeypatch):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "--check"]))
    assert "pip install 'cnncli[onnx]'" in line and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("damage", ["truncated", "not_npz", "missing"])
def test_damaged_checkpoint_is_one_line(tmp_path, damage):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    elif damage == "not_npz":
        ckpt.write_text("hello")
    else:
        ckpt = tmp_path / "nope.npz"
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx")]))
    assert str(ckpt) in line and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("args, words", [
    (["--opset", "12"], "opset 12 is not one this export can write: use 13"),
    (["--opset", "999"], "opset 999"),
    (["--check-images", "nowhere/*.png"], "no image matches this pattern"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, words):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), *args]))
    assert words in line and not (tmp_path / "m.onnx").exists()


def test_stray_argument_is_one_line(tmp_path):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "m.onnx"), "x.png"]))
    assert "unexpected argument 'x.png'" in line and "--check-images" in line


@pytest.mark.parametrize("where", ["no_folder", "parent_is_file", "is_folder", "the_checkpoint"])
def test_unwritable_path_is_one_line(tmp_path, where):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    (tmp_path / "file").write_text("x")
    out = {"no_folder": tmp_path / "missing" / "m.onnx", "parent_is_file": tmp_path / "file" / "m.onnx",
           "is_folder": tmp_path, "the_checkpoint": ckpt}[where]
    before = ckpt.read_bytes()
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(out)]))
    assert str(out) in line and ckpt.read_bytes() == before


def test_write_is_atomic_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    ckpt = random_checkpoint(tmp_path / "m.npz", "sigmoid_layer_head")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous")

    def full_disk(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full_disk)
    line = one_error_line(CliRunner().invoke(app, ["export", str(ckpt), str(out)]))
    assert "No space left on device" in line and str(out) in line
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "m.onnx"]


@pytest.mark.parametrize("rule", ["crop", "stretch", "imagenet"])
def test_readme_deploy_snippet_classifies_a_file_with_the_exported_model_alone(tmp_path, trained, rule):
    """For each resize rule, on an image of another shape than the input (40x23 for 12x12)."""
    import re
    import subprocess

    from PIL import Image

    from cnncli.model import checkpoint

    ckpt, data = trained
    arrays, meta = checkpoint.load(ckpt)
    meta["preprocessing"]["resize"] = rule
    ckpt = tmp_path / "ckpt.npz"
    checkpoint.save(ckpt, arrays, meta)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"<!-- deploy -->\s*```python\n(.*?)```", readme, re.S).group(1)
    image = tmp_path / "wide.png"
    Image.open(data / "b" / "img3.png").convert("RGB").resize((40, 23), Image.Resampling.NEAREST).save(image)
    export(ckpt, tmp_path / "model.onnx")
    code = code.replace('"model.onnx"', repr(str(tmp_path / "model.onnx"))).replace('"image.png"', repr(str(image)))
    code += "\nprint(*probs.tolist())\n"          # every probability: the top one saturates near 1
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from cnncli.commands.predict import predict
    result = predict(ckpt, [str(image)], top_k=3)[0]
    top = result["top"][0]
    first, second = out.stdout.splitlines()
    assert first.split() == [top["class"], f"{top['prob']:.3f}"]
    theirs = dict(zip(meta["classes"], map(float, second.split())))
    assert all(theirs[t["class"]] == pytest.approx(t["prob"], rel=1e-3, abs=1e-12) for t in result["top"])


def test_readme_lists_exactly_the_operators_the_generated_networks_use(tmp_path):
    import re

    used = set()
    for name in GENERATED:
        used |= set(export(random_checkpoint(tmp_path / f"{name}.npz", name), tmp_path / f"{name}.onnx").operators)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = re.search(r"The operators used: (.*?); opset", readme, re.S).group(1)
    assert {op.strip() for op in listed.replace("\n", " ").split(",")} == used
