"""Whole architectures in the patterns PyTorch's exporter writes (torchvision's MobileNetV2 / V3, ShuffleNetV2,
EfficientNet-B0, ResNet-18, RegNetY, GoogLeNet: small widths, random weights, built with
onnx.helper) import at opsets 11 to 18 and compute what ONNX Runtime computes."""

from collections import Counter

import onnx
import pytest

from cnncli.onnx_import import build, compare

from .onnx_graphs import ARCHITECTURES, architecture

# layers each must become besides conv, batchnorm and activation
SIGNS = {"mobilenet_v2": {"add": 2}, "mobilenet_v3": {"scale": 2, "add": 1}, "efficientnet_b0": {"scale": 3, "add": 2},
         "shufflenet_v2": {"slice": 2, "shuffle": 2, "concat": 2}, "densenet": {"concat": 3, "avgpool": 1},
         "resnet18": {"add": 2, "maxpool": 1}, "regnet": {"scale": 2, "add": 2}, "googlenet": {"concat": 2, "maxpool": 4}}


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_pytorch_architectures_compute_what_onnx_runtime_does(tmp_path, name, opset):
    onnx.save(architecture(name, opset), tmp_path / "m.onnx")
    imported = build(tmp_path / "m.onnx")
    kinds = Counter(k for k, _ in imported.model.specs)
    assert {k: kinds[k] for k in SIGNS[name]} == SIGNS[name], kinds
    if name == "regnet":
        assert {args["groups"] for k, args in imported.model.specs if k == "conv"} >= {4}
    checked = compare(imported, tmp_path / "m.onnx", n=3)
    assert checked.max_diff <= 1e-4 * checked.scale, checked
