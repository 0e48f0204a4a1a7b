"""The weights' moving average (train.ema): against its slow twin, swapped in and out bit for bit,
saved and loaded, and what training does with it (validation and best.npz use it)."""

import csv

import numpy as np
import pytest

from cnncli.engine.ema import EMA, ema_decay
from cnncli.engine.losses import Loss
from cnncli.model import Model
from cnncli.engine.optim import Adam

from . import naive

NET = [("conv", {"filters": 3, "size": 3, "padding": "same"}), ("batchnorm", {}), ("relu", {}),
       ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})]


def test_ema_matches_its_slow_twin_batchnorm_statistics_included(rng):
    model = Model((5, 5, 2), NET, seed=1)
    ema, opt, loss = EMA(model, 0.8), Adam(model.named_params(), 0.05), Loss(model.head)
    assert len(ema.targets) == 2 + 4 + 2          # conv w, b; batchnorm weight, bias, running mean, var; dense w, b
    history = [[a.copy() for a in ema.targets]]
    for _ in range(6):
        model.train_step(rng.standard_normal((4, 5, 5, 2)).astype(np.float32), rng.integers(0, 2, 4), loss, opt)
        ema.update(opt.step_count)
        history.append([a.copy() for a in ema.targets])
    for got, want in zip(ema.average, naive.ema(history, 0.8)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [ema_decay(0.8, t) for t in (1, 5, 100)] == pytest.approx([2 / 11, 0.4, 0.8])
    live = [a.copy() for a in ema.targets]
    with ema.applied():
        for a, avg in zip(ema.targets, ema.average):
            np.testing.assert_array_equal(a, avg)
    for a, own in zip(ema.targets, live):
        np.testing.assert_array_equal(a, own)
    other = EMA(Model((5, 5, 2), NET, seed=2), 0.8)
    other.load_state(ema.state())
    for a, b in zip(other.average, ema.average):
        np.testing.assert_array_equal(a, b)


def test_validation_and_best_use_the_average(tmp_path):
    from cnncli.model import checkpoint
    from cnncli.commands.evaluate import evaluate
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train

    from .imagegen import make_folder
    from .test_train import write_config

    make_folder(tmp_path / "val", per_class=5, seed=9)
    res = train(write_config(tmp_path, epochs=1, ema=0.9), overrides=[f"data.val={tmp_path / 'val'}"],
                reporter=QuietReporter())
    last, _ = checkpoint.load(res.output / "last.npz")
    best, _ = checkpoint.load(res.output / "best.npz")
    for key, value in best.items():        # best.npz holds the average; last.npz the live weights and the average
        if not key.startswith("calibration."):   # best.npz alone: fitted on validation after training
            np.testing.assert_array_equal(value, last[f"ema.{key}"])
    assert not np.array_equal(best["layers.0.weight"], last["layers.0.weight"])
    row = next(csv.DictReader((res.output / "metrics.csv").open()))
    report = evaluate(res.output / "best.npz", tmp_path / "val", cache_dir=tmp_path / "cache")
    assert report["loss"] == pytest.approx(float(row["val_loss"]), rel=1e-5)
