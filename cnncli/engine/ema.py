"""An exponential moving average of a model's weights, batchnorm running statistics included (timm's
ModelEmaV2 / V3 keep buffers too), for validation and best.npz.

After optimizer step t (1, 2, ...), for every parameter and buffer w:
  d_t = min(decay, (1 + t) / (10 + t))        the warm-up of TensorFlow's ExponentialMovingAverage
  avg <- d_t avg + (1 - d_t) w                (float32, in place)
Without the warm-up, the random initial weights would still hold decay^t of the average after t
steps (0.999^1200 = 0.30): small data sets train for few steps.
"""

import contextlib


def ema_decay(decay, step):
    """The decay used after optimizer step `step` (1-based)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    def __init__(self, model, decay):
        self.model, self.decay = model, decay
        self.targets = [a for layer in model.layers for a in (*layer.params.values(), *layer.buffers.values())]
        self.average = [a.copy() for a in self.targets]

    def update(self, step):
        """Fold the model's current weights into the average, after optimizer step `step`."""
        d = ema_decay(self.decay, step)
        for avg, w in zip(self.average, self.targets):
            dt = avg.dtype.type
            avg *= dt(d)
            avg += dt(1.0 - d) * w

    @contextlib.contextmanager
    def applied(self):
        """Within: the model holds the averaged weights; after: its own again, bit for bit."""
        live = [a.copy() for a in self.targets]
        for a, avg in zip(self.targets, self.average):
            a[...] = avg
        try:
            yield self.model
        finally:
            for a, own in zip(self.targets, live):
                a[...] = own

    def state(self):
        """{'ema.layers.<i>.<name>': array} in the checkpoint (boundary) layout."""
        with self.applied():
            return {f"ema.{k}": v for k, v in self.model.state_dict().items()}

    def load_state(self, arrays):
        """The inverse of state(): arrays holds 'ema.layers.<i>.<name>' entries."""
        prefix = "ema."
        averaged = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        with self.applied():        # the model's own weights come back after
            self.model.load_state_dict(averaged)
            for avg, a in zip(self.average, self.targets):
                avg[...] = a


def has_state(arrays):
    return any(k.startswith("ema.") for k in arrays)

