"""`cnncli lr-find`: an exponential learning-rate sweep (Smith 2017, "Cyclical learning rates",
section 3.3; fastai's lr_find). The model as training would start it (the config's seed, or
train.init's weights with a head for other classes reinitialised, as train does) takes one training step per
rate, the rate growing geometrically from `start` to `end`, until the loss diverges; the loss
against the rate shows where learning is fastest. train.freeze holds the same layers fixed as
train does (commands/finetune.py's apply_freeze; the optimizer gets only the trainable
parameters), so the rate suggested is the one for the layers that will train. Nothing is written
but the picture: no run folder is made or touched, and no earlier run is read (train.init is a
weights file the config names, read as train reads it)."""

import math

import numpy as np

from ..errors import CnnError

SMOOTHING = 0.9    # exponential moving average of the loss, bias-corrected (a 10-step window: fastai's 0.98 lags far behind over 100 steps)
DIVERGED = 4.0     # stop once the smoothed loss exceeds 4x the lowest seen
MIN_STEPS = 5


def rates(start, end, steps):
    """The sweep: `steps` rates, start * (end / start) ** (i / (steps - 1))."""
    return np.geomspace(start, end, steps)


def smooth(losses, beta=SMOOTHING):
    """avg_i = beta avg_(i-1) + (1 - beta) loss_i, reported as avg_i / (1 - beta ** (i + 1))."""
    out, avg = [], 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return np.array(out)


def valley(smoothed):
    """The suggested rate's index, by the "valley" rule (fastai's `valley`): find the longest
    valley, the longest run of steps (not necessarily adjacent) along which the smoothed loss
    keeps falling, i.e. its longest strictly decreasing subsequence; suggest the step half-way
    along it, where the loss is clearly falling yet still far from the blow-up at the valley's end.
    -> (index, (valley start index, valley end index))."""
    n = len(smoothed)
    length, before = [1] * n, [-1] * n   # longest decreasing run ending at i, and its previous step
    for i in range(n):
        for j in range(i):
            if smoothed[i] < smoothed[j] and length[j] + 1 > length[i]:
                length[i], before[i] = length[j] + 1, j
    end = int(np.argmax(length))
    start = end
    while before[start] != -1:
        start = before[start]
    return start + (end - start) // 2, (start, end)


def lr_find(config_path, overrides=(), out="lr_find.png", start=1e-7, end=10.0, steps=100):
    """Sweep and draw out -> {"lrs", "losses", "smoothed", "suggestion", "valley", "stopped", "notes", ...};
    notes: the lines train.init's warm start says (a head reinitialised)."""
    from .. import config
    from ..data.dataset import prepare
    from ..engine.losses import Loss
    from ..model import Diverged
    from ..engine.optim import from_config
    from .finetune import apply_freeze, warm_start
    from .train import _check_classes, _class_weights

    if not (0 < start < end) or not all(math.isfinite(v) for v in (start, end)):
        raise CnnError(f"the sweep needs 0 < --start-lr < --end-lr, got {start:g} and {end:g}")
    if steps < MIN_STEPS:
        raise CnnError(f"--steps must be at least {MIN_STEPS}, got {steps}")
    cfg = config.load_run(config_path, overrides)
    t = cfg.train
    model = cfg.model.build(seed=t.seed)
    frozen = apply_freeze(cfg, model)             # as train: the frozen layers neither step nor backpropagate
    notes = _Notes()
    if t.init:                                    # as train starts: a sweep over random frozen features means nothing
        warm_start(model, t.init, notes)
    data = prepare(cfg, multilabel=model.head == "multilabel")
    _check_classes(cfg, model, data.classes, data.multilabel is not None)
    loss = Loss(model.head, t.label_smoothing, _class_weights(cfg, data))
    opt = from_config(model.trainable_params(), t)
    sweep = rates(start, end, steps)
    losses, stopped = [], "end"
    with np.errstate(over="ignore", invalid="ignore"):
        for lr, (x, y, rngs) in zip(sweep, _batches(data.train, model, t)):
            opt.lr = float(lr)
            try:
                value, _ = model.train_step(x, y, loss, opt, rngs=rngs)
            except Diverged:
                stopped = "diverged"
                break
            losses.append(value)
            s = smooth(losses)
            if len(losses) > MIN_STEPS and s[-1] > DIVERGED * s.min():
                stopped = "diverged"
                break
    if len(losses) < MIN_STEPS:
        raise CnnError(f"the loss diverged within {len(losses) + 1} steps, at a rate of {sweep[len(losses)]:.3g}: "
                       "start the sweep lower with --start-lr")
    smoothed = smooth(losses)
    i, (a, b) = valley(smoothed)
    lrs = sweep[:len(losses)]
    result = {"lrs": lrs.tolist(), "losses": [float(v) for v in losses], "smoothed": smoothed.tolist(),
              "suggestion": float(lrs[i]), "valley": [float(lrs[a]), float(lrs[b])], "stopped": stopped,
              "steps": len(losses), "config": str(config_path), "png": str(out),
              "frozen": frozen, "init": t.init, "notes": notes}
    from ..viz.figure import save_png
    from ..viz.lr_plot import draw_lr_find
    save_png(draw_lr_find(result, f"learning-rate sweep: {cfg.source}"), out, "learning-rate plot")
    return result


class _Notes(list):
    """A reporter that keeps what it is told."""
    message = list.append


def _batches(train, model, t):
    """(x, y, the random layers' streams): training batches, epoch after epoch, seeded as
    training's epoch e is (data order, dropout)."""
    e = 0
    while True:
        rngs = {i: np.random.default_rng([t.seed, e, 1, i]) for i in model.random_layers()}
        for x, y in train.epoch(np.random.default_rng([t.seed, e, 0]), shuffle=t.shuffle):
            yield x, y, rngs
        e += 1
