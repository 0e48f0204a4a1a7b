"""`cnncli import` of ONNX's padding, pooling windows and reductions: Pad (three opset forms)
folded into the Conv after it or a pad layer, asymmetric pads, auto_pad, ceil_mode,
count_include_pad, ReduceMean / ReduceMax over H and W; each graph against ONNX Runtime."""

import onnx
import pytest
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.onnx_import import build, compare

from .onnx_graphs import WINDOWS, Builder, padded_net, windowed

runner = CliRunner()


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_padding_windows_and_reductions_compute_what_onnx_runtime_does(tmp_path, name):
    proto, kinds = windowed(name)
    onnx.save(proto, tmp_path / "m.onnx")
    imported = build(tmp_path / "m.onnx")
    assert [k for k, _ in imported.model.specs] == kinds
    checked = compare(imported, tmp_path / "m.onnx", n=3)
    assert checked.max_diff < 1e-5 * checked.scale, checked


@pytest.mark.parametrize("name,padding", [
    ("Pad (input) into Conv", [2, 1, 3, 2]),   # Pad (h 1, w 2 | h 0, w 1) + the conv's 1 all round
    ("Pad (attribute) into Conv", [2, 1, 0, 3]),
    ("Conv pads [0, 0, 1, 1], stride 1", [0, 1, 0, 1]),   # no TensorFlow 'same' at stride 1
    ("Conv auto_pad SAME_UPPER", "same"),
    ("Conv auto_pad SAME_LOWER", [2, 1, 2, 1]),          # 11 -> 6 at stride 2, 4x4: 3 rows, the odd one before
    ("Conv auto_pad VALID", "valid"),
])
def test_pads_become_the_conv_padding_top_bottom_left_right(tmp_path, name, padding):
    proto, _ = windowed(name)
    onnx.save(proto, tmp_path / "m.onnx")
    kind, args = build(tmp_path / "m.onnx").model.specs[1]
    assert kind == "conv" and args["padding"] == padding


def _refused(tmp_path, build_case, opset=13):
    b = Builder()
    y = build_case(b, "input")
    proto = b.model("input", y, size=8, opset=opset, batch=1)
    onnx.save(proto, tmp_path / "m.onnx")
    out = tmp_path / "out"
    result = runner.invoke(app, ["import", str(tmp_path / "m.onnx"), str(out)])
    assert result.exit_code == 2 and not out.exists(), result.output
    line, = result.stderr.strip().splitlines()
    return line


def _ints(b, values):
    import numpy as np

    return b.const(np.array(values, np.int64))


@pytest.mark.parametrize("case,words", [
    (lambda b, x: b.op("Conv", [x, b.weight(4, 3, 3, 3)], kernel_shape=[3, 3], dilations=[2, 2]),
     "node '/block1/Conv': Conv is not an operator cnncli supports as a classifier layer (dilation other than 1)"),
    (lambda b, x: b.op("MaxPool", [x], kernel_shape=[3, 3], dilations=[2, 2]), "node '/block1/MaxPool': MaxPool"),
    (lambda b, x: b.op("Pad", [x, _ints(b, [0, 0, 1, 1, 0, 0, 1, 1])], mode="reflect"),
     "node '/block1/Pad': Pad is not an operator cnncli supports as a classifier layer (reflect padding"),
    (lambda b, x: b.op("Pad", [x, _ints(b, [0, 1, 0, 0, 0, 0, 0, 0])]), "on height and width only"),
    (lambda b, x: b.op("Pad", [x, _ints(b, [0, 0, 1, 1, 0, 0, 1, 1]), b.const(__import__("numpy").float32(1))]),
     "padding with 1 (cnncli pads with zeros)"),
    (lambda b, x: b.op("ReduceMean", [x], axes=[1]), "a mean over axes [1]"),
])
def test_what_cnncli_cannot_pad_pool_or_reduce_is_one_line_naming_the_node(tmp_path, case, words):
    line = _refused(tmp_path, case)
    assert words in line, line


def test_an_imported_padded_network_inspects_explains_trains_and_has_checked_gradients(tmp_path):
    """The new kinds in a network: inspect shows the pad layers and the four-number padding,
    explain draws its Grad-CAM, one epoch of `cnncli train --init` moves every weight, and the
    imported model's gradients match finite differences (float64)."""
    import numpy as np
    import yaml
    from PIL import Image

    from cnncli.commands.predict import load
    from cnncli.engine.losses import Loss
    from cnncli.onnx_import import import_onnx

    from .gradcheck import assert_grad_close
    from .imagegen import make_folder

    onnx.save(padded_net(), tmp_path / "m.onnx")
    imported, yaml_path, npz = import_onnx(tmp_path / "m.onnx", tmp_path / "imported")
    assert [k for k, _ in imported.model.specs] == ["conv", "pad", "maxpool", "pad", "avgpool", "conv", "globalavgpool",
                                                    "dense"]
    shown = runner.invoke(app, ["inspect", str(npz)], terminal_width=200)
    assert shown.exit_code == 0 and shown.stdout.count("│ pad ") == 2, shown.output
    assert "pad 0,1,0,1 (t,b,l,r)" in shown.stdout and "zeros 1,1,1,1 (t,b,l,r)" in shown.stdout
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    explained = runner.invoke(app, ["explain", str(npz), str(tmp_path / "a.png"), "--out", str(tmp_path / "cam"), "--json"])
    assert explained.exit_code == 0 and (tmp_path / "cam" / "a.png").exists(), explained.output

    data = make_folder(tmp_path / "data", classes=[f"c{i}" for i in range(5)], per_class=4, size=16)
    cfg = {"model": yaml.safe_load(yaml_path.read_text()),
           "data": {"train": str(data), "val_split": 0.25, "cache_dir": str(tmp_path / "cache")},
           "train": {"epochs": 1, "batch_size": 5, "optimizer": "adam", "lr": 0.01, "seed": 0, "init": str(npz)},
           "output": str(tmp_path / "run")}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(tmp_path / "train.yaml"), "--quiet"])
    assert result.exit_code == 0, result.output
    before, after = load(npz).model.state_dict(), load(tmp_path / "run" / "last.npz").model.state_dict()
    assert sorted(k for k in before if not np.array_equal(before[k], after[k])) == sorted(before)

    model = load(npz).model
    model64 = type(model)(model.input_shape, model.specs, dtype=np.float64, init=False)
    model64.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x, labels, loss = rng.standard_normal((3, 16, 16, 3)), np.array([0, 3, 4]), Loss("softmax")
    model64.gradients(x, labels, loss)
    for key, param, grad in model64.named_params():
        assert_grad_close(lambda: loss(model64.forward(x, training=True), labels)[0], param, grad.copy(), rng, k=6,
                          rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["pad_probe_11.onnx", "pad_probe_18_dynamo.onnx"])
def test_pytorchs_own_exports_of_padding_by_hand_import(name):
    """Files torch.onnx.export wrote (scripts/torchvision_import.py's pad_probe: ZeroPad2d, F.pad
    before a max pool and an average, avg_pool2d with count_include_pad and ceil_mode, mean and
    amax over H, W), by the TorchScript exporter at opset 11 (pads computed by a Slice /
    Transpose / Cast chain) and the dynamo exporter at opset 18 (weights in a .data file)."""
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / name
    imported = build(path)
    kinds = [k for k, _ in imported.model.specs]
    assert kinds.count("pad") == 3 and "globalmaxpool" in kinds and "scale" in kinds, kinds
    assert imported.model.specs[0][1]["padding"] == "same"      # ZeroPad2d((0, 1, 0, 1)) into the stride-2 conv
    checked = compare(imported, path, n=3)
    assert checked.max_diff <= 1e-5 * checked.scale, checked
