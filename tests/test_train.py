"""`cnncli train`: outputs, the checkpoint contract, reproducibility, exact resume, failures."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import yaml

from cnncli.model import checkpoint
from cnncli.errors import CnnError
from cnncli.engine.progress import QuietReporter
from cnncli.engine.trainer import Interrupted
from cnncli.commands.train import train

from .imagegen import make_folder

MODEL = {"input": [12, 12, 3], "layers": [
    {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}},
    {"maxpool": {"size": 2}},
    {"dropout": {"rate": 0.3}},
    "flatten",
    {"dense": {"units": 3, "activation": "softmax"}},
]}


def write_config(tmp_path, name="run", augment=None, **train_kw):
    data = tmp_path / "data"
    if not data.exists():
        make_folder(data, per_class=12)
    cfg = {"model": MODEL,
           "data": {"train": str(data), "val_split": 0.25, "cache_dir": str(tmp_path / "cache"),
                    "augment": augment or {"flip": True, "crop_padding": 1, "brightness": 0.1}},
           "train": {"epochs": 3, "batch_size": 5, "optimizer": "adam", "lr": 0.01, "schedule": "cosine",
                     "warmup_epochs": 1, "seed": 3, **train_kw},
           "output": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(run_dir, name="last.npz"):
    with np.load(run_dir / name, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files if k != "meta"}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_outputs_and_checkpoint_contract(tmp_path):
    res = train(write_config(tmp_path), reporter=QuietReporter())
    out = res.output
    for name in ("config.yaml", "metrics.csv", "last.npz", "best.npz", "skipped.txt"):
        assert (out / name).exists(), name
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds,images_per_s,data_wait"
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    with np.load(out / "best.npz", allow_pickle=False) as z:
        assert z["layers.0.weight"].shape == (4, 3, 3, 3) and z["layers.4.weight"].shape == (3, 4 * 6 * 6)
        meta = json.loads(str(z["meta"]))
    assert meta["format"] == "cnncli-checkpoint" and meta["format_version"] == 1
    assert meta["classes"] == ["a", "b", "c"]
    pre = meta["preprocessing"]
    assert pre["input"] == [12, 12, 3] and len(pre["mean"]) == 3 and pre["resize"] == "stretch"
    assert meta["architecture"]["layers"][0] == {"conv": MODEL["layers"][0]["conv"]}
    last = weights(out)
    assert "optim.step" in last and int(last["optim.step"]) == 3 * 6   # 27 images / 5 -> 6 batches
    model, meta, _ = checkpoint.load_model(out / "best.npz")
    assert model.n_classes == 3
    # resolved config is a valid training config
    again = yaml.safe_load((out / "config.yaml").read_text())
    assert again["train"]["seed"] == 3 and again["model"]["input"] == [12, 12, 3]


def test_each_epoch_writes_last_npz_once(tmp_path, monkeypatch):
    """last.npz is written once per epoch, the last one included (it was written a second time
    after the final epoch, to mark the run finished), and the run is marked finished."""
    from cnncli.engine import trainer

    saved = []
    real = trainer.checkpoint.save
    monkeypatch.setattr(trainer.checkpoint, "save", lambda path, *a, **k: (saved.append(path.name), real(path, *a, **k)))
    res = train(write_config(tmp_path), reporter=QuietReporter())
    assert saved.count("last.npz") == 3
    _, meta, _ = checkpoint.load_model(res.output / "last.npz")
    assert meta["state"]["finished"] == "epochs"


def test_resume_without_a_usable_last_npz_says_how_to_start_again(tmp_path):
    res = train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    last = res.output / "last.npz"
    last.write_bytes(last.read_bytes()[:100])                       # truncated
    with pytest.raises(CnnError) as e:
        train(resume=res.output, reporter=QuietReporter())
    run = f"cnncli train {res.output / 'config.yaml'}"
    assert "cannot be resumed" in str(e.value)       # from best.npz, in a new folder: nothing is cleared
    assert f"{run} --set train.init={res.output / 'best.npz'} --set output={res.output}-restart" in str(e.value)
    last.unlink()
    (res.output / "best.npz").unlink()
    with pytest.raises(CnnError, match="no last.npz to resume from") as e:
        train(resume=res.output, reporter=QuietReporter())
    assert f"{run} --set output={res.output} --force" in str(e.value)    # the output named, not the config's relative one


def test_a_mistake_made_with_set_on_resume_names_set(tmp_path):
    res = train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    with pytest.raises(CnnError) as e:
        train(resume=res.output, overrides=["train.epochs=abc"], reporter=QuietReporter())
    assert "'epochs' must be an integer" in str(e.value) and "(with --set train.epochs=abc)" in str(e.value)


def test_same_config_same_seed_bit_identical(tmp_path):
    a = train(write_config(tmp_path, "a"), reporter=QuietReporter())
    b = train(write_config(tmp_path, "b"), reporter=QuietReporter())
    assert_same_weights(weights(a.output), weights(b.output))
    c = train(write_config(tmp_path, "c", seed=4), reporter=QuietReporter())
    assert not np.array_equal(weights(a.output)["layers.0.weight"], weights(c.output)["layers.0.weight"])


class InterruptAt(QuietReporter):
    """Sends this process a real SIGINT at the given (epoch, batch)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def epoch_start(self, epoch, epochs, n_batches, start_batch):
        super().epoch_start(epoch, epochs, n_batches, start_batch)
        self.epoch = epoch

    def batch(self, done, loss, acc, images_per_s):
        if (self.epoch, done) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("epoch,batch", [(1, 2), (0, 6), (2, 1)])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, epoch, batch):
    whole = train(write_config(tmp_path, "whole"), reporter=QuietReporter())
    cfg = write_config(tmp_path, "cut")
    with pytest.raises(Interrupted):
        train(cfg, reporter=InterruptAt(epoch, batch))
    meta = checkpoint.load(tmp_path / "cut" / "last.npz")[1]
    assert meta["state"]["finished"] is None
    res = train(resume=tmp_path / "cut", reporter=QuietReporter())
    assert res.state.epoch == 3
    assert_same_weights(weights(whole.output), weights(res.output))
    assert_same_weights(weights(whole.output, "best.npz"), weights(res.output, "best.npz"))
    a = (whole.output / "metrics.csv").read_text().splitlines()
    b = (res.output / "metrics.csv").read_text().splitlines()
    strip = lambda rows: [r.rsplit(",", 3)[0] for r in rows]  # noqa: E731  (timings differ)
    assert strip(a) == strip(b)


EVERY = {"flip": True, "vflip": True, "crop_padding": 1, "rotate": 15, "scale": [0.9, 1.1], "translate": 0.1,
         "shear": 10, "random_resized_crop": {"scale": [0.6, 1], "ratio": [0.8, 1.25]}, "brightness": 0.1,
         "contrast": 0.2, "saturation": 0.2, "cutout": {"size": 3, "count": 2}, "mixup": 0.4, "cutmix": 1.0}


def test_every_augmentation_and_ema_resume_exactly(tmp_path):
    """SIGINT mid-epoch with every augmentation and the moving average on: the same weights, the
    same average, the same best.npz as the run that never stopped."""
    whole = train(write_config(tmp_path, "whole", augment=EVERY, ema=0.9), reporter=QuietReporter())
    cfg = write_config(tmp_path, "cut", augment=EVERY, ema=0.9)
    with pytest.raises(Interrupted):
        train(cfg, reporter=InterruptAt(1, 2))
    assert any(k.startswith("ema.") for k in weights(tmp_path / "cut"))
    res = train(resume=tmp_path / "cut", reporter=QuietReporter())
    assert_same_weights(weights(whole.output), weights(res.output))
    assert_same_weights(weights(whole.output, "best.npz"), weights(res.output, "best.npz"))
    strip = lambda rows: [r.rsplit(",", 3)[0] for r in rows]  # noqa: E731  (timings differ)
    assert strip((whole.output / "metrics.csv").read_text().splitlines()) == \
        strip((res.output / "metrics.csv").read_text().splitlines())


def test_resume_with_more_epochs_equals_longer_run(tmp_path):
    longer = train(write_config(tmp_path, "long", epochs=4, schedule="constant", warmup_epochs=0),
                   reporter=QuietReporter())
    train(write_config(tmp_path, "short", epochs=2, schedule="constant", warmup_epochs=0), reporter=QuietReporter())
    with pytest.raises(CnnError, match="already finished"):
        train(resume=tmp_path / "short", reporter=QuietReporter())
    res = train(resume=tmp_path / "short", overrides=["train.epochs=4"], reporter=QuietReporter())
    assert_same_weights(weights(longer.output), weights(res.output))


def test_refuses_to_overwrite_a_run_unless_forced(tmp_path):
    cfg = write_config(tmp_path, epochs=1)
    train(cfg, reporter=QuietReporter())
    before = weights(tmp_path / "run")
    with pytest.raises(CnnError, match="already holds a run"):
        train(cfg, reporter=QuietReporter())
    assert_same_weights(before, weights(tmp_path / "run"))
    train(cfg, force=True, reporter=QuietReporter())


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_good(tmp_path):
    # lr * 1e30 from epoch 2 on: epoch 1 trains normally, epoch 2 diverges
    kw = dict(optimizer="sgd", schedule="step", step_size=1, gamma=1e30, lr=0.01, warmup_epochs=0)
    with pytest.raises(CnnError, match=r"diverged: loss is (nan|inf) at epoch 2, batch \d+: lower train.lr "
                                       r"\(now 1e\+28\).*last.npz \(after epoch 1\) is intact"):
        train(write_config(tmp_path, "diverged", epochs=3, **kw), reporter=QuietReporter())
    one = train(write_config(tmp_path, "one", epochs=1, **kw), reporter=QuietReporter())
    assert_same_weights(weights(one.output), weights(tmp_path / "diverged"))


def test_early_stopping_keeps_the_best(tmp_path):
    res = train(write_config(tmp_path, epochs=6, lr=1e-12, schedule="constant", warmup_epochs=0, patience=2),
                reporter=QuietReporter())
    assert res.state.finished == "early_stop"
    assert res.state.epoch == 3 and res.state.best["epoch"] == 1


def test_bad_files_are_skipped_and_listed(tmp_path):
    cfg = write_config(tmp_path, epochs=1)
    (tmp_path / "data" / "a" / "zero.png").write_bytes(b"")
    (tmp_path / "data" / "b" / "text.jpg").write_text("not a jpeg")
    res = train(cfg, reporter=QuietReporter())
    listed = (res.output / "skipped.txt").read_text().splitlines()
    assert len(listed) == 2 and len(res.skipped) == 2
    assert any("zero.png\tempty file" in line for line in listed)
    assert any("text.jpg\tnot an image" in line for line in listed)


def test_warm_start_from_a_checkpoint(tmp_path):
    first = train(write_config(tmp_path, "first", epochs=1), reporter=QuietReporter())
    from cnncli.commands.finetune import warm_start
    from cnncli.model import Model
    m = Model((12, 12, 3), [(k, v) for layer in MODEL["layers"]
                            for k, v in ((layer, {}) if isinstance(layer, str) else next(iter(layer.items())),)])
    warm_start(m, first.output / "best.npz")
    np.testing.assert_array_equal(m.state_dict()["layers.0.weight"], weights(first.output, "best.npz")["layers.0.weight"])
    other = Model((12, 12, 3), [("conv", {"filters": 5, "size": 3}), ("flatten", {}), ("dense", {"units": 3}),
                                ("softmax", {})])
    with pytest.raises(CnnError, match=r"layers\[0\] \(conv\) weight has shape \(4, 3, 3, 3\) in the checkpoint"):
        warm_start(other, first.output / "best.npz")


def test_interrupted_checkpoint_write_leaves_the_old_one(tmp_path, monkeypatch):
    train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    before = weights(tmp_path / "run")

    def torn(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt   # a kill in the middle of the write
    monkeypatch.setattr(np, "savez", torn)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "run" / "last.npz", {"x": np.zeros(3)}, {})
    assert_same_weights(before, weights(tmp_path / "run"))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_cli_train_plain_output_and_errors(tmp_path):
    cfg = write_config(tmp_path, epochs=2)
    env = dict(os.environ, CNNCLI_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "cnncli", "train", str(cfg)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert "val_acc" in lines[-2] and "\x1b[" not in proc.stdout   # no terminal escapes in logs
    again = subprocess.run([sys.executable, "-m", "cnncli", "train", str(cfg)], capture_output=True, text=True, env=env)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr


def test_output_units_must_match_the_classes(tmp_path):
    cfg = write_config(tmp_path, epochs=1)
    with pytest.raises(CnnError, match=r"ends in 5 output\(s\) \(5 classes\) but .* has 3 classes \(a, b, c\): "
                                       r"give layers\[4\] 3 units"):
        train(cfg, overrides=["model.layers.4.dense.units=5"], reporter=QuietReporter())
    assert not (tmp_path / "run" / "last.npz").exists()


def test_resume_refuses_changes_that_would_break_exactness(tmp_path):
    train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    for item in ("train.batch_size=7", "train.optimizer=sgd", "model.layers.0.conv.filters=8", "train.lr=1"):
        with pytest.raises(CnnError, match="only train.epochs and train.patience can change"):
            train(resume=tmp_path / "run", overrides=[item], reporter=QuietReporter())


def test_early_stopped_run_goes_on_when_patience_is_raised(tmp_path):
    cfg = write_config(tmp_path, epochs=8, lr=1e-12, schedule="constant", warmup_epochs=0, patience=1)
    res = train(cfg, reporter=QuietReporter())
    assert res.state.finished == "early_stop" and res.state.epoch == 2
    with pytest.raises(CnnError, match=r"stopped early after epoch 2 .*--set train.patience=6"):
        train(resume=tmp_path / "run", reporter=QuietReporter())
    more = train(resume=tmp_path / "run", overrides=["train.patience=3"], reporter=QuietReporter())
    assert more.state.finished == "early_stop" and more.state.epoch == 4


def test_given_mean_is_used_and_missing_std_computed(tmp_path):
    res = train(write_config(tmp_path, epochs=1), overrides=["data.mean=[0.1]"], reporter=QuietReporter())
    pre = checkpoint.load(res.output / "best.npz")[1]["preprocessing"]
    assert pre["mean"] == [0.1, 0.1, 0.1] and all(0.05 < s < 0.5 for s in pre["std"])


def test_rich_progress_on_a_terminal(tmp_path):
    import io

    from rich.console import Console

    from cnncli.engine.progress import RichReporter

    rep = RichReporter()
    buf = io.StringIO()
    rep.console = Console(file=buf, force_terminal=True, width=140)
    train(write_config(tmp_path, epochs=2), reporter=rep)
    out = buf.getvalue()
    assert "epoch 1/2" in out and "epoch 2/2" in out and "img/s" in out and "val_acc" in out
    assert "preparing kernels" in out and "done: best epoch" in out


# --- the graph issue's defects, each through train --------------------------------------------

def test_force_with_a_bad_data_path_keeps_the_previous_run(tmp_path):
    cfg = write_config(tmp_path, epochs=1)
    train(cfg, reporter=QuietReporter())
    before_last, before_best = weights(tmp_path / "run"), weights(tmp_path / "run", "best.npz")
    with pytest.raises(CnnError, match="typo"):
        train(cfg, overrides=[f"data.train={tmp_path / 'typo'}"], force=True, reporter=QuietReporter())
    assert_same_weights(before_last, weights(tmp_path / "run"))
    assert_same_weights(before_best, weights(tmp_path / "run", "best.npz"))
    # a new run that fails its checks leaves no folder behind
    with pytest.raises(CnnError):
        train(cfg, overrides=[f"data.train={tmp_path / 'typo'}", f"output={tmp_path / 'fresh'}"],
              reporter=QuietReporter())
    assert not (tmp_path / "fresh").exists()


def test_a_last_batch_of_one_image_joins_the_one_before(tmp_path):
    from cnncli.data.batches import Batches

    images = np.zeros((27, 4, 4, 1), np.uint8)
    b = Batches(images, np.zeros(27, np.int64), np.arange(27), [0.0], [1.0], batch_size=13)
    assert len(b) == 2 and [len(y) for _, y in b.epoch(None)] == [13, 14]
    assert [len(y) for _, y in Batches(images, np.zeros(27, np.int64), np.arange(26), [0.0], [1.0], 5)
            .epoch(None)] == [5, 5, 5, 5, 6]
    assert [len(y) for _, y in Batches(images, np.zeros(27, np.int64), np.arange(27), [0.0], [1.0], 5)
            .epoch(None)] == [5, 5, 5, 5, 5, 2]
    assert [len(y) for _, y in Batches(images[:1], np.zeros(1, np.int64), [0], [0.0], [1.0], 5).epoch(None)] == [1]
    # 27 training images at batch 13, batchnorm after a dense layer: 2 steps an epoch, no batch of 1
    model = {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 6}}, "batchnorm", "relu",
                                              {"dense": {"units": 3, "activation": "softmax"}}]}
    cfg = write_config(tmp_path, epochs=2, batch_size=13)
    raw = yaml.safe_load(cfg.read_text())
    raw["model"] = model
    cfg.write_text(yaml.safe_dump(raw))
    res = train(cfg, reporter=QuietReporter())
    assert int(weights(res.output)["optim.step"]) == 2 * 2
    assert np.all(weights(res.output)["layers.2.running_var"] > 0.05)


def test_batch_size_one_with_batchnorm_on_single_values_is_refused(tmp_path):
    cfg = write_config(tmp_path, epochs=1, batch_size=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["model"] = {"input": [12, 12, 3], "layers": ["flatten", {"dense": {"units": 6}}, "batchnorm",
                                                     {"dense": {"units": 3, "activation": "softmax"}}]}
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(CnnError, match=r"batch_size 1 leaves layers\[2\] \(batchnorm\) one value per channel"):
        train(cfg, reporter=QuietReporter())


def _imbalanced(tmp_path):
    data = tmp_path / "data"
    make_folder(data, classes=("a", "b"), per_class=12)
    make_folder(data, classes=("c",), per_class=4, seed=5)
    return data


def test_class_weights_auto_are_inverse_frequency_and_recorded(tmp_path):
    _imbalanced(tmp_path)
    # val_split 0.25: a and b keep 9 training images each, c keeps 3; N = 21, K = 3
    res = train(write_config(tmp_path, epochs=1, class_weights="auto"), reporter=QuietReporter())
    _, meta = checkpoint.load(res.output / "best.npz")
    assert meta["class_weights"] == pytest.approx([21 / 27, 21 / 27, 21 / 9])
    again = yaml.safe_load((res.output / "config.yaml").read_text())
    assert again["train"]["class_weights"] == "auto"
    res = train(write_config(tmp_path, "listed", epochs=1, class_weights=[1, 2, 3.5]), reporter=QuietReporter())
    assert checkpoint.load(res.output / "last.npz")[1]["class_weights"] == [1.0, 2.0, 3.5]
    with pytest.raises(CnnError, match=r"class_weights lists 2 weights but .* has 3 classes \(a, b, c\)"):
        train(write_config(tmp_path, "short", epochs=1, class_weights=[1, 2]), reporter=QuietReporter())
    with pytest.raises(CnnError, match="'class_weights' must be 'auto' or a list of positive numbers"):
        train(write_config(tmp_path, "bad", epochs=1, class_weights=[1, -2, 3]), reporter=QuietReporter())


def test_evaluate_loss_equals_the_val_loss_training_recorded(tmp_path):
    from cnncli.commands.evaluate import evaluate

    make_folder(tmp_path / "val", per_class=7, seed=9)
    cfg = write_config(tmp_path, epochs=2, label_smoothing=0.1, class_weights=[1, 2, 3])
    res = train(cfg, overrides=[f"data.val={tmp_path / 'val'}"], reporter=QuietReporter())
    rows = list(csv.DictReader((res.output / "metrics.csv").open()))
    best = rows[res.state.best["epoch"] - 1]
    report = evaluate(res.output / "best.npz", tmp_path / "val", cache_dir=tmp_path / "cache")
    assert report["loss"] == pytest.approx(float(best["val_loss"]), rel=1e-5)
    assert report["accuracy"] == pytest.approx(float(best["val_acc"]))
