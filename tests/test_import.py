"""`cnncli import`: our own exports come back as the same graph and the same weights; graphs in
PyTorch's patterns and the ONNX model zoo's light models import and compute what ONNX Runtime
(or the stored output) computes; an imported network trains; bad input is one line, exit 2,
nothing written."""

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.predict import load
from cnncli.export import export
from cnncli.onnx_import import build, compare, import_onnx

from .onnx_graphs import gated, pytorch_like
from .test_export import GENERATED, SHIPPED, random_checkpoint

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
# trainable parameters as imported; the published counts of these architectures (torchvision's
# resnet50, vgg19, densenet121, squeezenet1_1) are the same numbers
PARAMS = {"resnet50": 25_557_032, "squeezenet": 1_235_496, "densenet121": 7_978_856, "inception_v2": 11_194_984,
          "vgg19": 143_667_240, "bvlc_alexnet": 60_965_224, "zfnet512": 87_250_536, "inception_v1": 6_998_552,
          "shufflenet": 1_393_320}
ZOO = sorted(PARAMS)
runner = CliRunner()


def _exported_away(spec):
    """Layers an export writes as no node at all: dropout (the identity at inference) and a
    flatten of a flat vector."""
    return spec[0] == "dropout"


def _normalised(layer):
    """A built layer's config with padding as the pads it resolves to (the ONNX file holds pads,
    not the spelling: 'same' and [1, 1] are one graph where they pad alike)."""
    cfg = layer.config()
    if "padding" in cfg:
        cfg["padding"] = layer.pads
    return layer.kind, cfg, layer.out_shape


@pytest.mark.parametrize("name", list(GENERATED) + SHIPPED)
def test_export_then_import_gives_back_the_graph_and_the_weights(tmp_path, name):
    ckpt = random_checkpoint(tmp_path / "m.npz", name)
    export(ckpt, tmp_path / "m.onnx")
    imported, _, npz = import_onnx(tmp_path / "m.onnx", tmp_path / "out")
    orig = load(ckpt)
    keep = [i for i, layer in enumerate(orig.model.layers)
            if layer.kind != "dropout" and not (layer.kind == "flatten" and len(layer.in_shape) == 1)]
    index = {old: new for new, old in enumerate(keep)}
    index[-1] = -1
    back = load(npz)
    assert [_normalised(orig.model.layers[i]) for i in keep] == [_normalised(layer) for layer in back.model.layers]

    def source(i, j):   # through the layers that exported as nothing, to the one they read
        while j != -1 and j not in index:
            j = orig.model.sources[j][0]
        return index[j]

    assert [tuple(source(i, j) for j in orig.model.sources[i]) for i in keep] == back.model.sources
    ours, theirs = orig.model.state_dict(), back.model.state_dict()
    for i in keep:
        for k in orig.model.layers[i].export():
            np.testing.assert_array_equal(theirs[f"layers.{index[i]}.{k}"], ours[f"layers.{i}.{k}"])
    assert len(theirs) == sum(len(orig.model.layers[i].export()) for i in keep)
    assert back.classes == orig.classes
    assert back.meta["preprocessing"]["mean"] == orig.meta["preprocessing"]["mean"]
    assert back.meta["preprocessing"]["std"] == orig.meta["preprocessing"]["std"]
    assert compare(imported, tmp_path / "m.onnx").max_diff < 1e-5


def _kinds_and_functions(imported):
    """[(kind, its activation function or None for kinds without one)] of the imported layers."""
    return [(kind, args.get("fn", args.get("activation", "linear")) if kind in ("conv", "dense", "add", "activation")
             else None) for kind, args in imported.model.specs]


@pytest.mark.parametrize("opset", [13, 17])
def test_pytorch_patterns_become_cnncli_layers_and_compute_what_onnx_runtime_does(tmp_path, opset):
    proto, kinds = pytorch_like(opset)
    onnx.save(proto, tmp_path / "m.onnx")
    imported = build(tmp_path / "m.onnx")
    assert _kinds_and_functions(imported) == kinds
    pre = imported.meta["preprocessing"]
    np.testing.assert_allclose(pre["mean"], [0.4, 0.5, 0.6], rtol=1e-6)
    np.testing.assert_allclose(pre["std"], [0.2, 0.25, 0.3], rtol=1e-6)
    assert imported.model.layers[0].config()["padding"] == "same"       # pads (0, 0, 1, 1)
    assert imported.model.layers[7].out_shape == (3, 3, 8)                # ceil_mode
    checked = compare(imported, tmp_path / "m.onnx")
    assert checked.max_diff < 1e-5, checked


@pytest.mark.parametrize("opset", [13, 17])
def test_squeeze_and_excitation_gates_become_scale_layers(tmp_path, opset):
    """EfficientNet-B0's and MobileNetV3's gates: a scale layer reading the map and the gate's
    dense layers, computing what ONNX Runtime does."""
    proto, kinds = gated(opset)
    onnx.save(proto, tmp_path / "m.onnx")
    imported = build(tmp_path / "m.onnx")
    assert _kinds_and_functions(imported) == kinds
    assert imported.model.sources[4] == (0, 3) and imported.model.sources[9] == (5, 8)   # map, gate
    checked = compare(imported, tmp_path / "m.onnx")
    assert checked.max_diff < 1e-5, checked


def _light(name):
    return LIGHT / f"light_{name}.onnx"


def _stored(name):
    return numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))


def _arange_input():
    """What onnx's backend runner feeds the light models: arange(n) / n in the input's shape."""
    n = 3 * 224 * 224
    return (np.arange(n).reshape(1, 3, 224, 224) / n).astype(np.float32)


@pytest.mark.parametrize("name", ZOO)
def test_model_zoo_light_models_match_their_stored_output_and_onnx_runtimes_logits(tmp_path, name):
    """The stored outputs are a softmax of 1,000 equal logits (0.001 each; densenet121's 0.461 has
    no softmax): they would pass whatever the layers computed (where the logits are 1e10 and more,
    the logits are checked equal to a float32 step instead). The logits under the softmax, one
    number per model that every layer's arithmetic moves, are compared with ONNX Runtime's too."""
    import onnxruntime as ort

    imported = build(_light(name))
    assert imported.model.n_params() == PARAMS[name]
    x = _arange_input()
    logits = imported.model.forward(x.transpose(0, 2, 3, 1))     # the model computes logits, the head apart
    ours = imported.model.predict_proba(x.transpose(0, 2, 3, 1)) if imported.source.head_found else logits
    want = _stored(name).reshape(1, -1)
    assert ours.shape == want.shape
    step = float(np.spacing(np.float32(np.abs(logits).max())))    # one float32 step at the logits' size
    if step < 1.0:       # logits under 2^24: the probabilities themselves (the zoo's are under 4 or over 1e10)
        assert np.abs(ours - want).max() <= 1e-4 * np.abs(want).max()
    else:   # logits of 1e10 and more (0.02 weights, layer after layer): one float32 step between two moves
        # the softmax entirely (squeezenet's step is 1,024; which logits round up depends on how a GEMM
        # groups its rows), so the stored output's equal logits are checked as logits
        assert np.ptp(logits) <= 2 * step and np.allclose(want, want.flat[0])
        assert np.isfinite(ours).all() and np.allclose(ours.sum(axis=1), 1.0)
    path = _randomised(name, tmp_path / "m.onnx", random=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(logits.shape)
    assert np.abs(theirs).max() > 0 and np.abs(logits - theirs).max() <= 1e-4 * np.abs(theirs).max()


def _randomised(name, path, seed=0, random=True):
    """The light model cut before its softmax (logits out), with random weights in place of its
    constant 0.02 ones (which give every class the same score) unless random=False."""
    proto = onnx.load(str(_light(name)))
    rng = np.random.default_rng(seed)
    nodes = []
    for node in proto.graph.node:
        if node.op_type != "ConstantOfShape" or not random:
            nodes.append(node)
            continue
        shape = [int(d) for d in numpy_helper.to_array(next(t for t in proto.graph.initializer
                                                             if t.name == node.input[0]))]
        if len(shape) == 1:
            a = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(1 / np.prod(shape[1:])))
        proto.graph.initializer.append(numpy_helper.from_array(a, node.output[0]))
    last = nodes[-1]
    if last.op_type == "Softmax":
        nodes = nodes[:-1]
        proto.graph.output[0].name = last.input[0]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.save(proto, path)
    return path


# vgg19 (20 s with random weights, 144 M parameters) runs with -m slow: alexnet and zfnet512 take the
# same layers (3x3 and larger convs, max pools, dense) through the same check in a few seconds
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg19" else n for n in ZOO])
def test_model_zoo_light_models_with_random_weights_match_onnx_runtime(tmp_path, name):
    path = _randomised(name, tmp_path / "m.onnx")
    imported = build(path)
    assert not imported.source.head_found
    h, w, c = imported.source.shape
    logits = imported.model.forward(np.random.default_rng(1).random((1, h, w, c), dtype=np.float32))
    assert logits.std() > 1e-3 * np.abs(logits).max()      # classes that differ: a comparison that can fail
    checked = compare(imported, path, n=1 if name == "vgg19" else 2)
    assert checked.ok, checked


def test_zoo_layers_become_cnncli_kinds():
    """LRN, ShuffleNet's Reshape / Transpose / Reshape and Inception v1's padded 7x7 average over a
    6x6 map: layers of their own, not folded away."""
    kinds = {name: [k for k, _ in build(_light(name)).model.specs] for name in ("bvlc_alexnet", "inception_v1", "shufflenet")}
    assert kinds["bvlc_alexnet"].count("lrn") == 2 and kinds["inception_v1"].count("lrn") == 2
    assert "globalavgpool" in kinds["inception_v1"] and "avgpool" not in kinds["inception_v1"]
    assert kinds["shufflenet"].count("shuffle") == 16


def _refused(tmp_path, nodes, inits, out_shape):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 6, 6])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    out = tmp_path / "out"
    result = runner.invoke(app, ["import", str(tmp_path / "m.onnx"), str(out)])
    assert result.exit_code == 2 and not out.exists()
    line, = result.stderr.strip().splitlines()
    return line


def test_a_transpose_that_is_no_channel_shuffle_is_refused_in_one_line(tmp_path):
    line = _refused(tmp_path, [helper.make_node("Transpose", ["x"], ["y"], name="T", perm=[0, 2, 3, 1])], {},
                    [1, 6, 6, 4])
    assert line.startswith("error: node 'T': Transpose is not an operator") and "channel shuffle" in line


def test_a_gate_that_is_not_one_value_per_channel_is_refused_in_one_line(tmp_path):
    """(N, C, H, W) * (N, C): ONNX broadcasts (N, C) over H and W, not over the channels."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["y"], name="M")]
    line = _refused(tmp_path, nodes, {}, [1, 4, 6, 6])
    assert line.startswith("error: node 'M': Mul is not an operator") and "one value per channel" in line


def test_cli_import_prints_what_it_did_and_the_checkpoint_works_everywhere(tmp_path):
    proto, _ = pytorch_like()
    onnx.save(proto, tmp_path / "m.onnx")
    (tmp_path / "names.txt").write_text("\n".join(f"kind {i}" for i in range(5)) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["import", str(tmp_path / "m.onnx"), str(out), "--classes",
                                 str(tmp_path / "names.txt"), "--check"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Conv 5" in text and "Softmax 1" in text and "made 17 layers" in text and "constant Shape 1" in text
    assert "softmax at the end: the head 1" in text and "largest difference" in text
    raw = yaml.safe_load((out / "model.yaml").read_text())
    assert raw["input"] == [12, 12, 3] and list(raw["layers"][0]) == ["conv"]
    assert raw["layers"][0]["conv"]["name"] == "block3"
    assert load(out / "model.npz").classes == [f"kind {i}" for i in range(5)]
    assert runner.invoke(app, ["inspect", str(out / "model.yaml")]).exit_code == 0
    assert runner.invoke(app, ["inspect", str(out / "model.npz")]).exit_code == 0
    assert runner.invoke(app, ["export", str(out / "model.npz"), str(tmp_path / "again.onnx"), "--check"]).exit_code == 0
    again = runner.invoke(app, ["import", str(tmp_path / "m.onnx"), str(out)])
    assert again.exit_code == 2 and "pass --force" in again.stderr


def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    proto, _ = pytorch_like()
    dynamic = proto.graph.input[0].type.tensor_type.shape
    dynamic.dim[2].dim_param, dynamic.dim[3].dim_param = "H", "W"
    onnx.save(proto, tmp_path / "dynamic.onnx")
    cases = [(tmp_path / "junk.onnx", [], "not an ONNX model"),
             (tmp_path / "missing.onnx", [], "no such file"),
             (tmp_path / "dynamic.onnx", [], "give it with --input H W C"),
             (tmp_path / "dynamic.onnx", ["--input", "12", "12", "1"], "the graph fixes it at 3"),
             (tmp_path / "dynamic.onnx", ["--input", "12", "12", "3", "--classes", str(tmp_path / "junk.bin")],
              "give a text file, one class name a line"),
             (tmp_path / "dynamic.onnx", ["--input", "12", "12", "3", "--mean", "nan"], "must be finite numbers")]
    (tmp_path / "junk.bin").write_bytes(bytes(range(128, 256)))
    for path, extra, message in cases:
        out = tmp_path / "out"
        result = runner.invoke(app, ["import", str(path), str(out), *extra])
        assert result.exit_code == 2, (path, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
        assert not out.exists()
    ok = runner.invoke(app, ["import", str(tmp_path / "dynamic.onnx"), str(tmp_path / "out"), "--input", "12", "12", "3"])
    assert ok.exit_code == 0, ok.output


def test_an_unmapped_operator_names_its_node(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 16, 16])
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="Resize_12")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], [scales])), tmp_path / "r.onnx")
    result = runner.invoke(app, ["import", str(tmp_path / "r.onnx"), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: node 'Resize_12': Resize is not an operator cnncli supports")
    assert not (tmp_path / "out").exists()


def test_an_imported_network_trains_from_its_weights(tmp_path):
    """One epoch of `cnncli train` with train.init at the imported checkpoint, and its gradients
    checked by finite differences on the imported model itself."""
    from cnncli.engine.losses import Loss

    from .gradcheck import assert_grad_close
    from .imagegen import make_folder

    proto, _ = pytorch_like()
    onnx.save(proto, tmp_path / "m.onnx")
    imported, yaml_path, npz = import_onnx(tmp_path / "m.onnx", tmp_path / "imported")
    data = make_folder(tmp_path / "data", classes=[f"c{i}" for i in range(5)], per_class=4)
    cfg = {"model": yaml.safe_load(yaml_path.read_text()),
           "data": {"train": str(data), "val_split": 0.25, "cache_dir": str(tmp_path / "cache")},
           "train": {"epochs": 1, "batch_size": 5, "optimizer": "adam", "lr": 0.001, "seed": 0, "init": str(npz)},
           "output": str(tmp_path / "run")}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(tmp_path / "train.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    before, after = load(npz).model.state_dict(), load(tmp_path / "run" / "last.npz").model.state_dict()
    assert before.keys() == after.keys()
    moved = [k for k in before if not np.array_equal(before[k], after[k])]
    assert "layers.0.weight" in moved and "layers.16.weight" in moved

    model = load(npz).model     # float64 for finite differences
    model64 = type(model)(model.input_shape, model.specs, dtype=np.float64, init=False)
    model64.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 12, 12, 3))
    labels = np.array([0, 3, 4])
    loss = Loss("softmax")

    def value():
        return loss(model64.forward(x, training=True), labels)[0]

    model64.gradients(x, labels, loss)
    for key, param, grad in model64.named_params():
        if key.startswith(("layers.0.", "layers.4.", "layers.9.", "layers.16.")):
            assert_grad_close(value, param, grad.copy(), rng, k=6, rtol=1e-4, atol=1e-6)
