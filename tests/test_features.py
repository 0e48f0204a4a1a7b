"""The frozen-feature cache (engine/features.py) and train.freeze_batchnorm: the cache is used only
where it changes nothing but the time, is recomputed when what it depends on changes, and the
checkpoints it leaves are the whole network."""

import time

import numpy as np
import pytest
import yaml

from cnncli.commands.train import train
from cnncli.config import parse_architecture
from cnncli.engine import features
from cnncli.engine.progress import QuietReporter
from cnncli.model import Model, checkpoint

from .imagegen import make_folder
from .test_finetune import arch, weights


class Said(QuietReporter):
    """A reporter that keeps its lines (phases and progress left out)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def message(self, text):
        self.lines.append(text)

    def phase(self, text):
        pass


def config(tmp_path, name="run", model=None, data=None, augment=None, cache=None, **train_kw):
    data = data or tmp_path / "data"
    if not data.exists():
        make_folder(data, classes=("a", "b", "c"), per_class=8)
    d = {"train": str(data), "val_split": 0.25, "cache_dir": str(cache or tmp_path / "cache")}
    if augment:
        d["augment"] = augment
    cfg = {"model": model or arch(), "data": d,
           "train": {"epochs": 2, "batch_size": 4, "optimizer": "adam", "lr": 0.05, "seed": 1, **train_kw},
           "output": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(path, **kw):
    said = Said()
    result = train(path, reporter=said, **kw)
    return result, [line for line in said.lines if line.startswith("feature cache")]


def test_the_cache_trains_as_the_whole_network_does_and_checkpoints_hold_all_of_it(tmp_path):
    cached, lines = run(config(tmp_path, "cached", freeze="features"))
    assert len(lines) == 1 and lines[0].startswith("feature cache: on: layers[0..6] (frozen, or without weights)") and "computed" in lines[0]
    plain, lines = run(config(tmp_path, "plain", freeze="features", feature_cache=False))
    assert lines == ["feature cache: off: train.feature_cache is false; every epoch runs the frozen layers"]
    a, b = weights(cached.output / "best.npz"), weights(plain.output / "best.npz")
    before = parse_architecture(arch(), "t").build(seed=1).state_dict()
    assert set(a) == set(b) and {k for k in a if k.startswith("layers.")} == set(before)   # the whole network
    assert any(k.startswith("calibration.") for k in a)     # calibrated on the validation images, not the features
    for k in before:
        if int(k.split(".")[1]) <= 5:
            np.testing.assert_array_equal(a[k], before[k], err_msg=k)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-3, atol=1e-5, err_msg=k)
    assert not np.array_equal(a["layers.7.weight"], before["layers.7.weight"])
    for x, y in zip(cached.state.history, plain.state.history):
        assert x["val_acc"] == y["val_acc"] and x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4)
    last = weights(cached.output / "last.npz")   # the optimizer's slots under the whole network's indices
    assert {k for k in last if k.startswith("optim.m.")} == {"optim.m.layers.7.weight", "optim.m.layers.7.bias"}
    # predict / evaluate load it as any checkpoint
    arrays, meta = checkpoint.load(cached.output / "best.npz")
    model = parse_architecture(meta["architecture"], "t").build(init=False)
    model.load_state_dict(arrays)


def test_a_second_run_reads_the_features_and_they_are_memory_mapped(tmp_path, monkeypatch):
    run(config(tmp_path, "one", freeze="features"))
    got = []
    real = features.features
    monkeypatch.setattr(features, "features", lambda *a: got.append(real(*a)) or got[-1])
    _, lines = run(config(tmp_path, "two", freeze="features"))
    assert "read from" in lines[0]
    assert len(got) == 1 and got[0][1] is True          # train and val share one decoded array: one file
    assert isinstance(got[0][0], np.memmap) and got[0][0].dtype == np.float32 and got[0][0].shape == (24, 6)   # after the global pooling


def key_of(cfg_path):
    """The feature key a run of cfg_path would use (model and data prepared as train does)."""
    from cnncli import config as cfgmod
    from cnncli.commands.finetune import apply_freeze
    from cnncli.data.dataset import prepare

    cfg = cfgmod.load_run(cfg_path, ())
    model = cfg.model.build(seed=cfg.train.seed)
    apply_freeze(cfg, model)
    data = prepare(cfg)
    k, _ = features.boundary(model)
    return features.feature_key(model, k, data.keys["train"], data.preprocessing(cfg.model.input, cfg.data.resize))


def test_the_key_changes_with_the_images_the_frozen_layers_and_the_preprocessing(tmp_path):
    base = key_of(config(tmp_path, freeze="features"))
    assert key_of(config(tmp_path, freeze="features")) == base
    assert key_of(config(tmp_path, freeze="features", seed=2)) != base            # other frozen weights
    changed = arch()
    changed["layers"][3]["conv"]["size"] = 1                                       # another frozen architecture
    assert key_of(config(tmp_path, model=changed, freeze="features")) != base
    bigger = arch()
    bigger["input"] = [16, 16, 3]                                                  # another input size
    assert key_of(config(tmp_path, model=bigger, freeze="features")) != base
    path = config(tmp_path, freeze="features")
    raw = yaml.safe_load(path.read_text())
    raw["data"]["mean"], raw["data"]["std"] = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]  # another normalisation
    path.write_text(yaml.safe_dump(raw))
    assert key_of(path) != base
    raw["data"].pop("mean"), raw["data"].pop("std")
    raw["data"]["resize"] = "crop"                                                 # another resize rule
    path.write_text(yaml.safe_dump(raw))
    assert key_of(path) != base
    time.sleep(0.01)
    image = next((tmp_path / "data" / "a").iterdir())                              # one image changed
    image.write_bytes(image.read_bytes())
    assert key_of(config(tmp_path, freeze="features")) != base


def test_a_changed_image_is_recomputed_in_a_run(tmp_path):
    run(config(tmp_path, "one", freeze="features"))
    time.sleep(0.01)
    (tmp_path / "data" / "b" / "img0.png").write_bytes((tmp_path / "data" / "c" / "img0.png").read_bytes())
    _, lines = run(config(tmp_path, "two", freeze="features"))
    assert "computed" in lines[0]


def test_augmentation_ema_and_no_freeze_say_why_there_is_no_cache(tmp_path):
    _, lines = run(config(tmp_path, "aug", freeze="features", augment={"flip": True, "crop_padding": 2}))
    assert lines == ["feature cache: off: data.augment (flip, dy, dx) changes each image every epoch, so the "
                     "frozen layers' output is not the same twice; every epoch runs the frozen layers"]
    _, lines = run(config(tmp_path, "ema", freeze="features", ema=0.9))
    assert lines[0].startswith("feature cache: off: train.ema")
    _, lines = run(config(tmp_path, "none"))
    assert lines == []


def residual(over):
    """stem -> conv a -> conv b -> add(from a, b) -> pool -> dense: `over` picks what the add reads."""
    return {"input": [8, 8, 3], "layers": [
        {"conv": {"filters": 3, "size": 3, "padding": "same", "name": "stem"}},
        {"conv": {"filters": 3, "size": 3, "padding": "same", "name": "a"}},
        {"conv": {"filters": 3, "size": 3, "padding": "same", "name": "b"}},
        {"add": {"from": [over, "b"]}},
        "globalavgpool",
        {"dense": {"units": 3, "activation": "softmax"}}]}


def test_a_skip_connection_over_the_boundary_moves_it_down_or_turns_the_cache_off():
    model = parse_architecture(residual("a"), "t").build()
    model.freeze({0, 1, 2})          # add and pooling have no weights: the features are the pooled ones
    assert features.boundary(model) == (4, None)
    model = parse_architecture(residual("stem"), "t").build()
    model.freeze({0, 1})             # add reads stem (0) and b (2, trained): layer 1 is no single boundary, 0 is
    assert features.boundary(model) == (0, None)
    model = parse_architecture(residual("input"), "t").build()
    model.freeze({0, 1})             # add reads the input: no boundary holds it
    k, why = features.boundary(model)
    assert k is None and why.startswith("layers[3] reads the input across the frozen prefix's end")
    model.freeze({1, 2})
    assert features.boundary(model)[0] is None


def test_the_tail_computes_what_the_whole_network_computes_after_the_boundary():
    model = parse_architecture(residual("a"), "t").build(seed=3)
    model.freeze({0, 1, 2})
    tail = features.Tail(model, 1)
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype(np.float32)
    boundary = model.forward(x, stop=1)
    assert boundary.shape == (5, 8, 8, 3)
    np.testing.assert_allclose(tail.forward(boundary), model.forward(x), rtol=1e-5, atol=1e-6)
    assert [k for k, _, _ in tail.named_params()] == ["layers.2.weight", "layers.2.bias", "layers.5.weight",
                                                      "layers.5.bias"]
    assert [k for k, _, _ in tail.trainable_params()] == ["layers.5.weight", "layers.5.bias"]   # 2 stays frozen
    assert tail.layers[0].params is model.layers[2].params        # one set of arrays: the checkpoint's


def test_a_fold_across_the_boundary_is_not_used():
    m = Model((6, 6, 3), [("conv", {"filters": 4, "size": 3, "bias": False}), ("batchnorm", {}), ("relu", {}),
                          ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})], seed=0)
    assert 1 in features.prefix_plan(m, 2) and features.prefix_plan(m, 0) == {}


# --- train.freeze_batchnorm --------------------------------------------------------------------

def test_freeze_batchnorm_keeps_running_statistics_while_weights_train(tmp_path):
    before = parse_architecture(arch(), "t").build(seed=1).state_dict()
    said = Said()
    result = train(config(tmp_path, freeze_batchnorm=True), reporter=said)
    after = weights(result.output / "last.npz")
    stats = [k for k in before if "running" in k]
    assert len(stats) == 4
    for k in stats:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for k in ("layers.0.weight", "layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.7.weight"):
        assert not np.array_equal(after[k], before[k]), k
    assert any("train.freeze_batchnorm" in line and "other 2 batchnorm" in line for line in said.lines)
    moved = weights(train(config(tmp_path, "moved"), reporter=Said()).output / "last.npz")
    assert not np.array_equal(moved["layers.1.running_mean"], before["layers.1.running_mean"])


# --- training from a checkpoint keeps best.npz only where validation improves --------------------

def test_best_npz_stays_the_starting_checkpoint_unless_an_epoch_beats_it(tmp_path):
    first = train(config(tmp_path, "first", freeze="features", epochs=3), reporter=Said()).output / "best.npz"
    said = Said()
    # Adam at lr 1 moves every weight by about 1: the epoch is worse than where it started
    wrecked = train(config(tmp_path, "wrecked", init=str(first), lr=1.0, epochs=1, freeze_batchnorm=True),
                    reporter=said)
    start = [line for line in said.lines if line.startswith("start: ")]
    assert len(start) == 1 and "best.npz holds them until an epoch does better" in start[0]
    assert wrecked.state.best["epoch"] == 0
    assert any(line.startswith("done: no epoch beat the starting weights (train.init)") for line in said.lines)
    a, b = weights(first), weights(wrecked.output / "best.npz")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(weights(wrecked.output / "last.npz")["layers.7.weight"], a["layers.7.weight"])
    gentle = train(config(tmp_path, "gentle", init=str(first), lr=0.01, epochs=2), reporter=Said())
    row = gentle.state.history[gentle.state.best["epoch"] - 1] if gentle.state.best["epoch"] else None
    assert row is None or row["val_acc"] >= float(start[0].split("val_acc ")[1].split(",")[0]) - 1e-4


def test_a_cached_run_resumes_with_its_optimizer_state(tmp_path):
    path = config(tmp_path, "r", freeze="features", epochs=1)
    train(path, reporter=Said())
    said = Said()
    result = train(None, ["train.epochs=2"], resume=tmp_path / "r", reporter=said)
    assert result.state.epoch == 2 and any(line.startswith("feature cache: on:") and "read from" in line
                                           for line in said.lines)
    assert int(weights(tmp_path / "r" / "last.npz")["optim.step"]) == 2 * 5   # 18 images, batch 4: 5 steps an epoch
