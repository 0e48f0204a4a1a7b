"""Optimizers and learning-rate schedules.

Weight decay applies to weights (conv / dense kernels, ndim > 1) only, never to biases or
batchnorm parameters. SGD and Adam add it to the gradient (L2); AdamW decouples it.
  SGD:      v = mu v + g;         w -= lr (g + mu v) if nesterov else lr v
  Adam(W):  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr m_hat / (sqrt(v_hat) + eps)
State (velocities, moments, step count) is a flat dict of arrays, saved in checkpoints for resume.

An optimizer keeps no parameter or gradient arrays: step(params) is handed Model.trainable_params()
as they are at that step, so a gradient array replaced after the optimizer was built (MPI's views
of its flat buffer) cannot leave it stepping on stale zeros, whatever order things were built in.
"""

import math

import numpy as np


class Optimizer:
    def __init__(self, params, lr, weight_decay=0.0):
        """params: [(key, param, grad)] from Model.trainable_params(), for the shapes of the slots."""
        self.lr = lr
        self.weight_decay = weight_decay
        self.step_count = 0

    def decays(self, p):
        return self.weight_decay > 0 and p.ndim > 1

    def state(self):
        out = {"step": np.array(self.step_count, dtype=np.int64)}
        for name, slots in self.slots.items():
            for key, arr in slots.items():
                out[f"{name}.{key}"] = arr
        return out

    def load_state(self, state):
        self.step_count = int(state["step"])
        for name, slots in self.slots.items():
            for key in slots:
                slots[key][...] = state[f"{name}.{key}"]


class SGD(Optimizer):
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.slots = {"velocity": {k: np.zeros_like(p) for k, p, _ in params}} if momentum else {}

    def step(self, params):
        """One update of every (key, param, grad) in params (Model.trainable_params())."""
        from ..kernels.optim import sgd_update   # here: `cnncli inspect` imports this module, never numba

        self.step_count += 1
        for key, p, g in params:
            if self.momentum:     # one pass, the velocity's subnormals flushed (kernels/optim.py)
                sgd_update(p, g, self.slots["velocity"][key], self.lr, self.momentum, self.weight_decay,
                           self.decays(p), self.nesterov)
                continue
            dt = p.dtype.type
            if self.decays(p):
                g = g + dt(self.weight_decay) * p
            p -= dt(self.lr) * g


class Adam(Optimizer):
    decoupled = False

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps = betas, eps
        self.slots = {"m": {k: np.zeros_like(p) for k, p, _ in params},
                      "v": {k: np.zeros_like(p) for k, p, _ in params}}

    def step(self, params):
        """One update of every (key, param, grad) in params (Model.trainable_params())."""
        self.step_count += 1
        b1, b2 = self.betas
        t = self.step_count
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        from ..kernels.optim import adam_update

        for key, p, g in params:   # one pass, the moments' subnormals flushed (kernels/optim.py)
            adam_update(p, g, self.slots["m"][key], self.slots["v"][key], self.lr, self.betas, self.eps,
                        self.weight_decay, self.decays(p), self.decoupled, c1, c2)


class AdamW(Adam):
    decoupled = True


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def from_config(params, t):
    """The optimizer a training config's `train` section names, with its settings (training and
    lr-find build it here, so they cannot drift apart)."""
    if t.optimizer == "sgd":
        return SGD(params, t.lr, t.momentum, t.nesterov, t.weight_decay)
    return OPTIMIZERS[t.optimizer](params, t.lr, tuple(t.betas), weight_decay=t.weight_decay)


def learning_rate(step, steps_per_epoch, epochs, lr, schedule="constant", warmup_epochs=0.0,
                  step_size=10, gamma=0.1, min_lr=0.0):
    """The learning rate for optimizer step `step` (0-based).

    warmup: linear from lr / warmup_steps up to lr over the first warmup_epochs;
    constant: lr;  step: lr * gamma ** (epoch // step_size);
    cosine: min_lr + (lr - min_lr) (1 + cos(pi t)) / 2, t going 0 -> 1 over the steps after warmup.
    """
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * gamma ** (step // steps_per_epoch // step_size)
    if schedule == "cosine":
        total = max(epochs * steps_per_epoch - warmup, 1)
        t = min((step - warmup) / total, 1.0)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}")


SCHEDULES = ("constant", "step", "cosine")
