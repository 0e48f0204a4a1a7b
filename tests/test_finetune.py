"""Fine-tuning: train.init with a head for other classes, train.freeze (weights and batchnorm
statistics fixed, no backward for a frozen prefix), and inspect's marks."""

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.finetune import warm_start
from cnncli.commands.train import train
from cnncli.config import parse_architecture
from cnncli.engine.losses import Loss
from cnncli.engine.progress import QuietReporter
from cnncli.errors import CnnError
from cnncli.model import Model
from cnncli.model.freeze import freeze_indices

from .gradcheck import assert_grad_close
from .imagegen import make_folder


def arch(classes=3, filters=6):
    return {"input": [12, 12, 3], "layers": [
        {"conv": {"filters": 4, "size": 3, "padding": "same", "bias": False, "name": "stem"}},
        {"batchnorm": {}},
        "relu",
        {"conv": {"filters": filters, "size": 3, "stride": 2, "bias": False}},
        {"batchnorm": {}},
        {"relu": {"name": "features"}},
        "globalavgpool",
        {"dense": {"units": classes, "activation": "softmax"}},
    ]}


def write_config(tmp_path, name="run", classes=("a", "b", "c"), model=None, **train_kw):
    data = tmp_path / f"data{len(classes)}"
    if not data.exists():
        make_folder(data, classes=classes, per_class=8)
    cfg = {"model": model or arch(len(classes)),
           "data": {"train": str(data), "val_split": 0.25, "cache_dir": str(tmp_path / "cache")},
           "train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr": 0.05, "seed": 1, **train_kw},
           "output": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files if k != "meta"}


class Lines:
    def __init__(self):
        self.lines = []

    def message(self, line):
        self.lines.append(line)


def _one_line_exit_2(res):
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    return lines[0]


# --- train.freeze ---------------------------------------------------------------------------

def test_frozen_weights_and_running_statistics_stay_bit_identical(tmp_path):
    before = parse_architecture(arch(), "t").build(seed=1).state_dict()
    run = train(write_config(tmp_path, freeze="features"), reporter=QuietReporter())
    after = weights(run.output / "last.npz")
    frozen = [k for k in before if int(k.split(".")[1]) <= 5]
    assert any("running_var" in k for k in frozen)
    for k in frozen:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert not np.array_equal(after["layers.7.weight"], before["layers.7.weight"])   # the head trained
    assert not [k for k in after if k.startswith("optim.layers.") and int(k.split(".")[2]) <= 5]


def test_a_frozen_layer_runs_in_inference_mode_in_training():
    model = parse_architecture(arch(), "t").build(seed=2)
    model.layers[1].buffers["running_mean"][...] = 0.3
    x = np.random.default_rng(0).normal(size=(5, 12, 12, 3)).astype(np.float32)
    model.freeze(range(7))
    trained = model.forward(x, ctx=model.context(training=True))
    np.testing.assert_allclose(trained, model.forward(x), rtol=1e-5, atol=1e-6)
    model.freeze(())
    assert not np.allclose(model.forward(x, ctx=model.context(training=True)), model.forward(x), atol=1e-3)


def test_a_frozen_prefix_gets_no_backward_and_no_gradient():
    model = parse_architecture(arch(), "t").build(seed=2)
    model.freeze(freeze_indices(model, "features"))

    def boom(*args, **kw):
        raise AssertionError("backward ran in the frozen prefix")
    for layer in model.layers[:7]:   # 6: globalavgpool reads only frozen layers: nothing to pass down
        layer.backward = boom
    x = np.random.default_rng(0).normal(size=(6, 12, 12, 3)).astype(np.float32)
    model.gradients(x, np.array([0, 1, 2, 0, 1, 2]), Loss(model.head))
    assert all(not g.any() for layer in model.layers[:6] for g in layer.grads.values())
    assert model.layers[7].grads["weight"].any()
    assert [k for k, _, _ in model.trainable_params()] == ["layers.7.weight", "layers.7.bias"]


def test_gradient_of_the_trainable_part_matches_finite_differences():
    """A frozen batchnorm between trainable layers: backward goes through it with its running
    statistics as constants (float64)."""
    specs = [(k, v) for layer in arch()["layers"]
             for k, v in ((layer, {}) if isinstance(layer, str) else next(iter(layer.items())),)]
    model = Model((12, 12, 3), specs, seed=3, dtype=np.float64)
    rng = np.random.default_rng(1)
    for i in (1, 4):
        model.layers[i].buffers["running_mean"][...] = rng.normal(size=4 if i == 1 else 6)
        model.layers[i].buffers["running_var"][...] = rng.uniform(0.5, 2.0, size=4 if i == 1 else 6)
    model.freeze([1, 3, 4])
    x, y = rng.normal(size=(4, 12, 12, 3)), np.array([0, 1, 2, 1])
    loss = Loss(model.head)

    def f():
        return float(loss(model.forward(x, ctx=model.context(training=True)), y)[0])
    model.gradients(x, y, loss)
    for i in (0, 7):
        for name, p in model.layers[i].params.items():
            assert_grad_close(f, p, model.layers[i].grads[name].copy(), rng, k=10, rtol=1e-4, atol=1e-7)


def test_lr_find_sweeps_only_the_layers_train_would_train(tmp_path, monkeypatch):
    from cnncli.commands.lr_find import lr_find
    from cnncli.engine import optim

    stepped, models = [], []
    real_from_config, real_step = optim.from_config, Model.train_step

    def from_config(params, t):
        stepped.append([k for k, _, _ in params])
        return real_from_config(params, t)

    def train_step(self, *args, **kw):
        models.append(self)
        return real_step(self, *args, **kw)
    monkeypatch.setattr(optim, "from_config", from_config)
    monkeypatch.setattr(Model, "train_step", train_step)
    monkeypatch.chdir(tmp_path)
    result = lr_find(write_config(tmp_path, freeze="features"), out=tmp_path / "sweep.png", steps=8, end=1.0)
    assert stepped == [["layers.7.weight", "layers.7.bias"]]         # the optimizer holds the head alone
    assert result["frozen"].startswith("frozen: layers[0..5]")
    before, after = parse_architecture(arch(), "t").build(seed=1).state_dict(), models[-1].state_dict()
    for k in before:
        if int(k.split(".")[1]) <= 5:                                  # weights and running statistics
            np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert not np.array_equal(after["layers.7.weight"], before["layers.7.weight"])


def test_inits_timed_steps_are_the_frozen_models(monkeypatch):
    from cnncli.config.run import Train
    from cnncli.engine import optim
    from cnncli.engine.estimate import time_step

    stepped, grads = [], []
    real_from_config, real_step = optim.from_config, Model.train_step

    def from_config(params, t):
        stepped.append([k for k, _, _ in params])
        return real_from_config(params, t)

    def train_step(self, *args, **kw):
        out = real_step(self, *args, **kw)
        grads.append((self.frozen, [bool(g.any()) for layer in self.layers for g in layer.grads.values()]))
        return out
    monkeypatch.setattr(optim, "from_config", from_config)
    monkeypatch.setattr(Model, "train_step", train_step)
    time_step(parse_architecture(arch(), "t"), Train(batch_size=4, freeze="features"), budget=0.1, steps=2)
    assert stepped == [["layers.7.weight", "layers.7.bias"]]
    assert grads and all(frozen == frozenset(range(6)) for frozen, _ in grads)
    assert all(any_grad == [False] * 6 + [True, True] for _, any_grad in grads)   # 4 conv/bn arrays, 2 head


def test_freeze_errors_are_one_line(tmp_path):
    cases = {"featurs": "no layer is named 'featurs' (did you mean 'features'?)",
             "[stem, 3, 4, 7, 1]": "leaving nothing to train",
             "99": "layers[99] does not exist"}
    for value, expected in cases.items():
        res = CliRunner().invoke(app, ["train", str(write_config(tmp_path)), "--set", f"train.freeze={value}"])
        line = _one_line_exit_2(res)
        assert expected in line and "train.freeze" in line, line
    assert not (tmp_path / "run").exists()


def test_inspect_marks_frozen_layers_and_counts_trainable(tmp_path):
    cfg = write_config(tmp_path, freeze="features")
    js = json.loads(CliRunner().invoke(app, ["inspect", "--json", str(cfg)]).output)
    assert [r["frozen"] for r in js["layers"]] == [True] * 6 + [False] * 2
    assert js["trainable_params"] == 6 * 3 + 3 and js["total_params"] > js["trainable_params"]
    table = CliRunner().invoke(app, ["inspect", str(cfg)]).output
    assert "conv (frozen)" in table and "21 trainable of" in table


# --- train.init with another head -----------------------------------------------------------

def test_warm_start_reinitialises_a_head_for_other_classes(tmp_path):
    first = train(write_config(tmp_path, "first"), reporter=QuietReporter())
    ckpt = weights(first.output / "best.npz")
    model = parse_architecture(arch(2), "t").build(seed=5)
    fresh = model.state_dict()
    fresh = {k: v.copy() for k, v in fresh.items()}
    report = Lines()
    warm_start(model, first.output / "best.npz", report)
    assert report.lines == ["head layers[7] reinitialised: 3 classes in the checkpoint, 2 here"]
    got = model.state_dict()
    for k in got:
        np.testing.assert_array_equal(got[k], fresh[k] if k.startswith("layers.7.") else ckpt[k], err_msg=k)
    res = CliRunner().invoke(app, ["train", str(write_config(tmp_path, "second", classes=("a", "b"))),
                                   "--init", str(first.output / "best.npz"), "--set", "train.freeze=features"])
    assert res.exit_code == 0, res.output
    assert "head layers[7] reinitialised: 3 classes in the checkpoint, 2 here" in res.output
    assert "frozen: layers[0..5]" in res.output


def test_warm_start_refuses_a_mismatch_below_the_head(tmp_path):
    first = train(write_config(tmp_path, "first"), reporter=QuietReporter())
    model = parse_architecture(arch(3, filters=5), "t").build(seed=5)
    with pytest.raises(CnnError, match=r"layers\[3\] \(conv\) weight has shape \(6, 4, 3, 3\) in the checkpoint, "
                                       r"\(5, 4, 3, 3\) here"):
        warm_start(model, first.output / "best.npz")
    res = CliRunner().invoke(app, ["train", str(write_config(tmp_path, "x", model=arch(3, filters=5))),
                                   "--init", str(first.output / "best.npz")])
    assert "layers[3] (conv)" in _one_line_exit_2(res)


# --- init --pretrained ----------------------------------------------------------------------

def test_init_pretrained_writes_a_frozen_feature_config(tmp_path, monkeypatch):
    from cnncli.engine import estimate

    timed = []   # the time estimate times the frozen model (the timing itself: test_inits_timed_steps_...)
    monkeypatch.setattr(estimate, "time_step", lambda arch, train, budget: timed.append(train) or (0.5, 1.0, False))
    make_folder(tmp_path / "photos", classes=("cat", "cup"), per_class=3)
    res = CliRunner().invoke(app, ["init", str(tmp_path / "ft"), "--data", str(tmp_path / "photos"),
                                   "--pretrained", "efficientnet_lite0"])
    assert res.exit_code == 0, res.output
    assert "head replaced by one for 2 classes" in res.output and "2,562 parameters" in res.output
    # phase 1: 5 training images, one step an epoch: 1,000 steps capped at 200 epochs
    assert [(t.freeze, t.optimizer, t.batch_size, t.epochs) for t in timed] == [("features", "adam", 32, 200),
                                                                                (None, "adam", 32, 10)]
    # the features once: 6 images, one batch of 500 ms; phase 2: 10 epochs of 1 step
    assert "time: about 0s on this machine to compute the frozen backbone's output once for the 6 images (500 ms a " \
        "batch of 32" in res.output
    assert "phase 2 time: about 5s of training on this machine (500 ms a step at batch 32" in res.output
    cfg = yaml.safe_load((tmp_path / "ft" / "train.yaml").read_text())
    assert cfg["train"]["init"] == "efficientnet_lite0.npz" and cfg["train"]["freeze"] == "features"
    assert cfg["data"]["mean"] == [round(127 / 255, 6)] * 3 and cfg["data"]["resize"] == "imagenet"
    # phase 2: the whole network from phase 1's best.npz, lr 1e-4, batchnorm statistics fixed, augmented
    two = yaml.safe_load((tmp_path / "ft" / "finetune.yaml").read_text())
    assert two["train"]["init"] == cfg["output"] + "/best.npz" and "freeze" not in two["train"]
    assert two["train"]["lr"] == 0.0001 and two["train"]["freeze_batchnorm"] is True
    assert two["data"]["augment"] == {"flip": True, "random_resized_crop": {"scale": [0.25, 1.0], "ratio": [0.75, 1.333]}}
    assert {k: two["data"][k] for k in ("train", "val_split", "resize", "mean", "std")} == \
        {k: cfg["data"][k] for k in ("train", "val_split", "resize", "mean", "std")}
    assert two["output"] == cfg["output"] + "-finetune"
    from cnncli.config import load_run
    assert load_run(tmp_path / "ft" / "finetune.yaml", ()).train.freeze_batchnorm is True
    assert "phase 2: " in res.output and "Adam lr 0.0001" in res.output and "Run it after train.yaml" in res.output
    js = json.loads(CliRunner().invoke(app, ["inspect", "--json", str(tmp_path / "ft" / "train.yaml")]).output)
    assert js["classes"] == 2 and js["trainable_params"] == 1280 * 2 + 2 and js["input_shape"] == [224, 224, 3]
    assert js["layers"][-2]["frozen"] is False and js["layers"][-4]["frozen"] is True
    model = parse_architecture(yaml.safe_load((tmp_path / "ft" / "model.yaml").read_text()), "t").build(seed=0)
    report = Lines()
    warm_start(model, tmp_path / "ft" / "efficientnet_lite0.npz", report)
    assert report.lines == ["head layers[142] reinitialised: 1,000 classes in the checkpoint, 2 here"]
    again = CliRunner().invoke(app, ["init", str(tmp_path / "ft"), "--data", str(tmp_path / "photos"),
                                     "--pretrained", "efficientnet_lite0"])
    assert "already exist" in _one_line_exit_2(again)
    typo = CliRunner().invoke(app, ["init", str(tmp_path / "x"), "--data", str(tmp_path / "photos"),
                                    "--pretrained", "efficientnet_lite1"])
    assert "no pretrained network named 'efficientnet_lite1'" in _one_line_exit_2(typo)
    assert not (tmp_path / "x").exists()


def test_phase_one_trains_the_head_about_a_thousand_steps():
    from cnncli.commands.init_pretrained import phase_one_epochs

    assert phase_one_epochs(200) == 143        # 7 steps an epoch: ceil(1000 / 7)
    assert phase_one_epochs(5) == 200          # capped
    assert phase_one_epochs(40_000) == 10      # at least 10 epochs


def test_an_mpi_process_without_images_sums_only_what_a_step_sums(monkeypatch):
    """A process whose share of a last batch is empty joins each batchnorm's sums with zero rows;
    a frozen batchnorm runs in inference mode in a step and sums nothing, so it must sum nothing
    there either (on the old code the empty pass summed it too: one more all-reduce than the
    other processes make, a job out of step)."""
    pytest.importorskip("mpi4py")
    from cnncli.parallel.mpi import _empty_pass

    model = parse_architecture(arch(), "t").build(seed=1)
    norms = [i for i, layer in enumerate(model.layers) if layer.batch_statistics]
    assert len(norms) >= 2
    model.freeze(range(norms[0] + 1))
    calls = []

    def reduce(values):
        calls.append(len(values))
        return np.asarray(values, np.float64)
    before = {k: v.copy() for k, v in model.layers[norms[0]].buffers.items()}
    with np.errstate(invalid="ignore"):      # zero rows summed alone: 0 / 0, as no real job sees
        _empty_pass(model, model.context(training=True, reduce=reduce))
    model_alone = parse_architecture(arch(), "t").build(seed=1)
    calls_alone = []
    model_alone.freeze(range(norms[0] + 1))
    ctx = model_alone.context(training=True, reduce=lambda v: calls_alone.append(len(v)) or np.asarray(v, np.float64))
    x = np.random.default_rng(0).standard_normal((2,) + tuple(model_alone.input_shape)).astype(np.float32)
    model_alone.backward(model_alone.forward(x, ctx=ctx), ctx=ctx)
    assert calls == calls_alone and calls                     # the same sums, in the same order
    for k, v in model.layers[norms[0]].buffers.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)   # the frozen statistics untouched
