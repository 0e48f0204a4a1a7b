"""Configs: hand-computed shapes and parameter counts, overrides, and one clear line per mistake."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnncli import config
from cnncli.cli.app import app
from cnncli.config import ConfigError
from cnncli.model.summary import layer_table

from .config_cases import CASES

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "configs" / "models"


def _summary(name):
    return layer_table(config.load_architecture(MODELS / name))


def _shapes_params(s):
    return [(tuple(r["output_shape"]), r["params"]) for r in s["layers"]]


def test_lenet5_by_hand():
    s = _summary("lenet5.yaml")
    assert _shapes_params(s) == [
        ((28, 28, 6), 6 * 1 * 5 * 5 + 6), ((14, 14, 6), 0),
        ((10, 10, 16), 16 * 6 * 5 * 5 + 16), ((5, 5, 16), 0), ((400,), 0),
        ((120,), 400 * 120 + 120), ((84,), 120 * 84 + 84), ((10,), 84 * 10 + 10)]
    assert s["total_params"] == 61706
    assert s["total_macs"] == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10


def test_vgg_cifar_by_hand():
    s = _summary("vgg_cifar.yaml")
    conv = lambda c, f: f * c * 9 + f  # noqa: E731
    assert _shapes_params(s) == [
        ((32, 32, 32), conv(3, 32)), ((32, 32, 32), conv(32, 32)), ((16, 16, 32), 0),
        ((16, 16, 64), conv(32, 64)), ((16, 16, 64), conv(64, 64)), ((8, 8, 64), 0),
        ((8, 8, 128), conv(64, 128)), ((8, 8, 128), conv(128, 128)), ((4, 4, 128), 0),
        ((2048,), 0), ((256,), 2048 * 256 + 256), ((256,), 0), ((10,), 256 * 10 + 10)]
    assert s["total_params"] == 814122


@pytest.mark.parametrize("path, params, gmacs", [
    (MODELS / "resnet18.yaml", 11_689_512, 1.81),
    (MODELS / "mobilenet_v2.yaml", 3_504_872, 0.30),
    (ROOT / "cnncli" / "pretrained" / "efficientnet_lite0.yaml", 4_652_008, None)])
def test_224_pixel_networks_count_what_torchvision_counts(path, params, gmacs):
    """torchvision's published figures: resnet18 11,689,512 parameters and 1.81 GFLOPS (its
    multiply-adds), mobilenet_v2 3,504,872 and 0.30; the EfficientNet-Lite0 port 4,652,008."""
    s = layer_table(config.load_architecture(path))
    assert s["total_params"] == params
    if gmacs is not None:
        assert round(s["total_macs"] / 1e9, 2) == gmacs
    assert s["layers"][-1]["output_shape"] == [1000] and s["input_shape"] == [224, 224, 3]


def test_resnet18_at_224_keeps_only_small_column_sets_for_backward():
    """KEEP_COLUMNS_BYTES (8 MB): at batch 16 the stride-2 3x3 conv into 7x7x512 (49 positions x
    2,304 deep) and the three strided 1x1 shortcuts keep their columns; the stem, the other
    stride-2 convs and the 7x7 512 -> 512 im2col layers (14.5 MB each) build them again in backward."""
    model = config.load_architecture(MODELS / "resnet18.yaml").build(build_params=False)
    kept = sum(layer.scratch_bytes(16) * 16 for layer in model.layers if layer.kind == "conv")
    assert kept == 16 * 4 * (49 * 2304 + 784 * 64 + 196 * 128 + 49 * 256)


def test_all_convolutional_with_global_pooling_by_hand():
    s = _summary("allconv.yaml")
    conv = lambda c, f, k=3: f * c * k * k + f  # noqa: E731
    assert _shapes_params(s) == [
        ((32, 32, 32), conv(3, 32)), ((16, 16, 32), conv(32, 32)), ((16, 16, 64), conv(32, 64)),
        ((8, 8, 64), conv(64, 64)), ((8, 8, 10), conv(64, 10, 1)), ((10,), 0), ((10,), 0)]
    assert s["output"] == "softmax" and s["classes"] == 10


def test_explainer_arithmetic():
    s = _summary("explainer.yaml")
    dense = s["layers"][1]
    assert s["layers"][0]["output_shape"] == [256 * 256 * 3]
    assert dense["params"] == 196_608_000 + 1_000 == 196_609_000
    assert dense["macs"] == 196_608_000


@pytest.mark.parametrize("inp,layer,out,pads", [
    ((7, 7, 1), {"filters": 2, "size": 4, "stride": 3}, (2, 2, 2), (0, 0, 0, 0)),          # floor((7-4)/3)+1
    ((7, 7, 1), {"filters": 2, "size": 4, "stride": 2, "padding": "same"}, (4, 4, 2), (1, 2, 1, 2)),
    ((9, 9, 3), {"filters": 5, "size": 5, "stride": 2, "padding": 2}, (5, 5, 5), (2, 2, 2, 2)),
    ((10, 6, 3), {"filters": 1, "size": [3, 1], "stride": [2, 1], "padding": [1, 0]}, (5, 6, 1), (1, 1, 0, 0)),
    ((6, 6, 3), {"filters": 4, "size": 2, "padding": "same"}, (6, 6, 4), (0, 1, 0, 1)),   # even filter
    ((5, 5, 2), {"filters": 3, "size": 1, "stride": 2}, (3, 3, 3), (0, 0, 0, 0)),
    # [top, bottom, left, right]: floor((8 + 0 + 2 - 3)/2) + 1 = 4, floor((7 + 1 + 0 - 3)/2) + 1 = 3
    ((8, 7, 2), {"filters": 3, "size": 3, "stride": 2, "padding": [0, 2, 1, 0]}, (4, 3, 3), (0, 2, 1, 0)),
])
def test_odd_stride_and_padding_by_hand(inp, layer, out, pads):
    arch = config.parse_architecture(
        {"input": list(inp), "layers": [{"conv": layer}, "globalavgpool", "softmax"]}, "t")
    model = arch.build(build_params=False)
    assert model.layers[0].out_shape == out and model.layers[0].pads == pads
    fh, fw = model.layers[0].size
    assert model.layers[0].n_params() == out[2] * inp[2] * fh * fw + out[2]


def test_receptive_field_grows_by_hand():
    s = _summary("vgg_cifar.yaml")
    rf = [r["receptive_field"] for r in s["layers"][:4]]
    assert rf == [[3, 3], [5, 5], [6, 6], [10, 10]]


@pytest.mark.parametrize("what,text,fragment", CASES, ids=[c[0] for c in CASES])
def test_every_mistake_is_one_clear_line(tmp_path, what, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert fragment in message
    assert str(path) in message and "\n" not in message
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2 and fragment in result.output


def test_cli_error_is_one_line_exit_2_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(CASES[0][1])
    proc = subprocess.run([sys.executable, "-m", "cnncli", "inspect", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "did you mean 'conv'" in proc.stderr


def test_missing_file_is_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnncli", "inspect", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert "cnncli init" in proc.stderr and proc.stderr.count("\n") == 1     # and what to do


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = config.load(ROOT / "configs" / "mnist.yaml",
                      ["train.lr=0.002", "train.nesterov=true", "data.augment.flip=yes"])
    assert cfg.train.lr == 0.002 and cfg.train.nesterov is True and cfg.data.augment.flip is True
    # YAML 1.1 reads 1e-3 as text; a number is meant
    assert config.load(ROOT / "configs" / "mnist.yaml", ["train.lr=1e-3"]).train.lr == 0.001
    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        config.load(ROOT / "configs" / "mnist.yaml", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config.load(ROOT / "configs" / "mnist.yaml", ["train.lr"])


def test_override_inside_inline_layers(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  input: [8, 8, 1]\n  layers:\n    - conv: {filters: 4, size: 3}\n"
                    "    - globalavgpool\n    - softmax\n")
    cfg = config.load(path, ["model.layers.0.conv.filters=7"])
    assert cfg.model.layers[0] == ("conv", {"filters": 7, "size": 3})


def test_defaults_and_resolved_config_round_trip(tmp_path):
    cfg = config.load(ROOT / "configs" / "mnist.yaml")
    assert cfg.train.epochs == 10 and cfg.train.optimizer == "sgd" and cfg.train.seed == 0
    assert cfg.data.val_split == 0.1 and cfg.data.resize == "stretch"
    # the resolved config is itself a valid training config (inline model) giving the same values
    import yaml
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    again = config.load(path)
    assert again.to_dict() == cfg.to_dict()


def test_inspect_json_fields():
    result = CliRunner().invoke(app, ["inspect", "--json", str(MODELS / "lenet5.yaml")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["total_params"] == 61706 and data["total_macs"] == 416520
    first = data["layers"][0]
    assert {"index", "type", "output_shape", "params", "macs"} <= set(first)
    assert first == {**first, "index": 0, "type": "conv", "output_shape": [28, 28, 6], "params": 156}


def test_inspect_table_and_memory_estimate():
    result = CliRunner().invoke(app, ["inspect", "-b", "64", str(MODELS / "explainer.yaml")])
    assert result.exit_code == 0, result.output
    assert "196,609,000" in result.output and "196,608,000 weights" in result.output
    assert "training memory" in result.output


def test_init_writes_configs_that_inspect_accepts(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path / "new")]).exit_code == 0
    cfg = config.load(tmp_path / "new" / "train.yaml")
    assert cfg.model.input == (32, 32, 3)
    again = runner.invoke(app, ["init", str(tmp_path / "new")])
    assert again.exit_code == 2 and "already exist" in again.output


def test_help_and_inspect_do_not_import_numba():
    code = ("import sys; from cnncli import config; from cnncli.model import summary; from cnncli.cli import app; "
            "summary.layer_table(config.load_architecture(%r)); print('numba' in sys.modules)"
            % str(MODELS / "vgg_cifar.yaml"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_deeply_nested_override_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="nested too deeply"):
        config.load(ROOT / "configs" / "mnist.yaml", ["train.lr=" + "[" * 3000 + "]" * 3000])


def test_an_unexpected_exception_is_one_line_with_a_way_to_the_traceback(monkeypatch):
    import cnncli.model.summary as summary

    def broken(*a, **k):
        raise ZeroDivisionError("boom")
    monkeypatch.setattr(summary, "layer_table", broken)
    res = CliRunner().invoke(app, ["inspect", str(MODELS / "lenet5.yaml")])
    assert res.exit_code == 1 and "internal error: ZeroDivisionError: boom" in res.output
    assert "CNNCLI_DEBUG=1" in res.output and "Traceback" not in res.output


def test_resolved_config_shows_every_augmentation_key_with_its_default():
    import yaml

    res = CliRunner().invoke(app, ["inspect", "--resolved", str(ROOT / "configs" / "mnist.yaml")])
    assert res.exit_code == 0, res.output
    d = yaml.safe_load(res.output)
    assert d["data"]["augment"] == {
        "flip": False, "vflip": False, "crop_padding": 0, "rotate": 0.0, "scale": [1.0, 1.0], "translate": 0.0,
        "shear": 0.0, "random_resized_crop": {"scale": [1.0, 1.0], "ratio": [1.0, 1.0]}, "brightness": 0.0,
        "contrast": 0.0, "saturation": 0.0, "cutout": {"size": 0, "count": 1}, "mixup": 0.0, "cutmix": 0.0}
    assert d["train"]["ema"] == 0.0
    cfg = config.load(ROOT / "configs" / "mnist.yaml", ["data.augment.cutout.size=8", "data.augment.mixup=0.2"])
    assert cfg.data.augment.cutout.size == 8 and cfg.data.augment.cutout.count == 1 and cfg.data.augment.mixup == 0.2


QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def test_a_mistake_made_with_set_names_set_not_only_the_file():
    with pytest.raises(ConfigError) as e:
        config.load(QUICKSTART, ["train.lrr=0.1"])
    assert "unknown key 'lrr'" in str(e.value) and "(with --set train.lrr=0.1)" in str(e.value)
    config.load(QUICKSTART, ["train.lr=0.1"])          # a good --set: no error
    with pytest.raises(ConfigError) as e:                # only the item at fault is named
        config.load(QUICKSTART, ["train.epochs=1", "train.lrr=0.1"])
    assert str(e.value).endswith("(with --set train.lrr=0.1)")


SECTIONS = [config.RandomResizedCrop, config.Cutout, config.Columns, config.Augment, config.Data, config.Train]


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_config_key_declares_its_kind_once_on_its_field(cls):
    """Each key is one dataclass field: its default, and in its metadata how it is checked."""
    import dataclasses

    assert not hasattr(cls, "SPEC")
    for f in dataclasses.fields(cls):
        assert f.metadata.get("kind") in ("int", "number", "bool", "str", "path", "choice", "weights",
                                          "floats", "range", "layers", "section"), f.name
        if f.metadata["kind"] == "section":
            assert f.metadata["section"] in SECTIONS and f.default_factory is f.metadata["section"], f.name


def _readme_row(section):
    """README's Configs table: the row of `section` -> [(key, the default as written)]."""
    import re

    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith(f"| `{section}` |"))
    return re.findall(r"`(\w+)` \(([^)]*)\)", row.split("|", 2)[2])


def test_readme_lists_every_train_key_with_its_default():
    """The README's `train` row names the keys of Train in order, each with its default (the
    first word: 'none' for None; a description such as 'a checkpoint' where the default is None)."""
    import dataclasses
    import re

    import yaml

    listed = _readme_row("train")
    fields = dataclasses.fields(config.Train)
    assert [k for k, _ in listed] == [f.name for f in fields]
    for (key, text), f in zip(listed, fields):
        first = re.split(r"[:;] |, (?=[a-z])", text.split(" \\| ")[0])[0].strip("`")
        shown = None if first == "none" else yaml.safe_load(first)
        if isinstance(shown, str) and " " in shown:      # a description: no default value
            shown = None
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert shown == default, (key, text)


@pytest.mark.parametrize("text, read", [("1e-3", 0.001), ("1.5E3", 1500.0), ("+2e+2", 200.0), (".5e1", 5.0),
                                        (" 1e-3 ", 0.001)]
                         + [(t, t) for t in ["nan", "inf", "-Infinity", "0.5", "7", "1_000", "٣", "0x10", "e5", "1e"]])
def test_layer_arguments_and_training_values_read_numbers_by_one_rule(text, read):
    """YAML 1.1 leaves 1e-3 (no dot) as text. Layer arguments (yaml11_numbers) and training values
    (as_number) once had two rules: as_number took any text float() reads ('nan', 'inf', a quoted
    '0.5', '1_000', '٣'), yaml11_numbers only scientific notation. Now both take only the latter."""
    from cnncli.config import as_number, yaml11_numbers

    assert as_number(text) == yaml11_numbers(text) == yaml11_numbers([text])[0] == read


def test_a_number_written_as_text_is_shown_as_written():
    with pytest.raises(ConfigError) as e:
        config.load(QUICKSTART, ["train.weight_decay=nan"])
    assert "train: 'weight_decay' must be a number >= 0.0, got 'nan'" in str(e.value)
    assert config.load(QUICKSTART, ["train.weight_decay=5e-4"]).train.weight_decay == 5e-4
