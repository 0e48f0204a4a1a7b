"""EfficientNet-Lite0 from its published state_dict: the shipped architecture, the mapping into
a cnncli checkpoint (and its refusals), and real photos classified out of the box."""

from pathlib import Path

import numpy as np
import pytest

from cnncli.config import load_architecture
from cnncli.model import checkpoint
from cnncli.pretrained.catalog import CATALOG
from cnncli.pretrained.convert import convert, get, match
from cnncli.pretrained.torchfile import WeightsError, read_state_dict

LITE0 = CATALOG["efficientnet_lite0"]


@pytest.fixture(scope="module")
def state():
    return read_state_dict(LITE0.weights_path())


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    ckpt, _ = get("efficientnet_lite0", tmp_path_factory.mktemp("lite0"))
    return ckpt


def test_the_shipped_architecture():
    """Counted by hand from the reference: 4,652,008 parameters (the issue's figure) and
    385,187,552 multiply-adds; 16 blocks, 10 of them residual; TensorFlow 'same' padding with
    the odd row at the bottom for the stride-2 stem; eps 1e-3 in every batchnorm."""
    arch = load_architecture(LITE0.architecture_path())
    model = arch.build(build_params=False)
    assert model.n_params() == LITE0.parameters == 4_652_008
    assert sum(layer.macs() for layer in model.layers) == 385_187_552
    assert arch.input == (224, 224, 3) and model.n_classes == 1000
    kinds = [k for k, _ in arch.layers]
    assert kinds.count("add") == 9 and kinds.count("conv") == 2 + 2 + 15 * 3
    assert model.layers[0].pads == (0, 1, 0, 1) and model.layers[0].out_shape == (112, 112, 32)
    assert {layer.eps for layer in model.layers if layer.kind == "batchnorm"} == {1e-3}
    assert model.head == "softmax"


def test_every_array_lands_where_its_name_says(state):
    arrays, meta = convert("efficientnet_lite0")
    assert len(arrays) == sum(1 for k in state if not k.endswith("num_batches_tracked"))
    np.testing.assert_array_equal(arrays["layers.0.weight"], state["_conv_stem.weight"])
    np.testing.assert_array_equal(arrays["layers.1.running_var"], state["_bn0.running_var"])
    np.testing.assert_array_equal(arrays["layers.135.weight"], state["_blocks.15._project_conv.weight"])
    np.testing.assert_array_equal(arrays["layers.142.weight"], state["_fc.weight"])
    assert len(meta["classes"]) == 1000 and meta["classes"][285] == "Egyptian cat"
    assert meta["preprocessing"]["mean"] == pytest.approx([127 / 255] * 3)
    assert meta["preprocessing"]["std"] == pytest.approx([128 / 255] * 3)
    assert meta["preprocessing"]["resize"] == "imagenet"


def _model():
    return load_architecture(LITE0.architecture_path()).build(init=False)


def test_a_state_dict_that_does_not_fit_names_the_key_and_shape(state):
    bad = dict(state)
    bad["_blocks.3._bn1.weight"] = np.ones(7, np.float32)
    with pytest.raises(WeightsError, match=r"'_blocks.3._bn1.weight' has shape \(7,\).*needs \(144,\)"):
        match(_model(), bad, "w.pth")
    missing = {k: v for k, v in state.items() if k != "_bn1.running_var"}
    with pytest.raises(WeightsError, match=r"'_bn1.running_var' is missing: layers.138 \(batchnorm\)"):
        match(_model(), missing, "w.pth")
    fewer = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(WeightsError, match="modules with weights in the file"):
        match(_model(), fewer, "w.pth")


def test_the_checkpoint_and_yaml_written(lite0):
    model, meta, _ = checkpoint.load_model(lite0)
    assert model.n_params() == 4_652_008 and meta["pretrained"]["licence"] == "Apache-2.0"
    yaml_arch = load_architecture(Path(lite0).parent / "model.yaml")
    assert yaml_arch.to_dict() == meta["architecture"]


def photo(name):
    from skimage import data   # its wheel ships these photos: no download
    return Path(data.__file__).parent / name


# top-5 of the reference PyTorch network (scripts/pretrained_parity.py, torch 2.13) on the same
# preprocessed inputs (the `imagenet` rule: 224/256 centre crop, bicubic); cnncli matched them to 4.8e-7
REFERENCE = {"chelsea.png": [("tiger cat", 0.385), ("Egyptian cat", 0.365), ("tabby", 0.169), ("lynx", 0.013)],
             "coffee.png": [("espresso", 0.951), ("cup", 0.015), ("consomme", 0.008), ("chocolate sauce", 0.004)]}


def test_real_photos_out_of_the_box(lite0):
    """The cat is a cat (the three house-cat classes hold over 85%) and the coffee is espresso,
    with PyTorch's probabilities (to 1e-3: Pillow's resampling may move with its version)."""
    from cnncli.commands.predict import predict

    results = predict(lite0, [str(photo(n)) for n in REFERENCE], top_k=5)
    by_name = {Path(r["path"]).name: r["top"] for r in results}
    cats = sum(t["prob"] for t in by_name["chelsea.png"] if t["class"] in ("Egyptian cat", "tiger cat", "tabby"))
    assert cats > 0.85
    assert by_name["coffee.png"][0]["class"] == "espresso" and by_name["coffee.png"][0]["prob"] > 0.9
    for name, expected in REFERENCE.items():
        got = by_name[name][:len(expected)]
        assert [t["class"] for t in got] == [c for c, _ in expected]
        np.testing.assert_allclose([t["prob"] for t in got], [p for _, p in expected], atol=1e-3)
