"""How long training will take: a few steps of the network timed on this machine (init), and the
time left of a run from the epochs done so far (train's progress)."""

import time

import numpy as np


def duration(seconds):
    """41 -> '41s', 185 -> '3m05s', 4500 -> '1h15m'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def time_step(arch, train, budget=2.0, steps=3):
    """Seconds of one training step of `arch` at train.batch_size with train's optimizer, timed on
    random images after the kernels are compiled or loaded -> (step seconds, warm-up seconds,
    compiled anything?). train.freeze holds layers fixed as in training (model/freeze.py's apply:
    forward everywhere, backward and the optimizer only for the trainable layers), so a frozen
    backbone is timed as it will run. The timing stops after `steps` steps or `budget` seconds."""
    from ..model.freeze import apply
    from .losses import Loss
    from .optim import from_config
    from .trainer import warm_up

    model = arch.build(seed=train.seed)
    apply(model, train.freeze)
    warm_seconds, compiled = warm_up(arch, model, min(2, train.batch_size))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((train.batch_size,) + tuple(arch.input)).astype(np.float32)
    y = rng.integers(0, max(model.n_classes, 2), train.batch_size) % max(model.n_classes, 1)
    if model.head == "multilabel":
        y = rng.integers(0, 2, (train.batch_size, model.n_classes))
    loss, opt = Loss(model.head), from_config(model.trainable_params(), train)
    rngs = {i: np.random.default_rng(i) for i in model.random_layers()}
    times, start = [], time.perf_counter()
    while len(times) < steps and (not times or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        model.train_step(x, y, loss, opt, rngs=rngs)
        times.append(time.perf_counter() - t0)
    # the first full-size step also allocates the batch's arrays: the later ones are the rate
    return float(np.median(times[1:] if len(times) > 1 else times)), warm_seconds, compiled


def run_seconds(step_seconds, n_train, n_val, batch_size, epochs):
    """A run's training time from one step's: every epoch's steps, and validation at about a third
    of a step's cost per image (a forward pass of the three a step makes)."""
    per_epoch = step_seconds * (-(-n_train // batch_size) + n_val / batch_size / 3)
    return per_epoch * epochs


def time_left(elapsed, epochs_done, epochs_left):
    """The time the remaining epochs take at the mean pace of those done in this session."""
    return elapsed / max(epochs_done, 1) * epochs_left
