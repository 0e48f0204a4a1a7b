"""A Sequential network: layers built from specs, forward, backward, parameters, checkpoints.

Inside, feature maps are NHWC float32. At the boundary (export / load) arrays use the
PyTorch / ONNX layout: conv weight (F, C, FH, FW), dense weight (units, in_features),
dense after flatten sees (C, H, W) order, batchnorm weight / bias / running_mean / running_var.
"""

import contextlib

import numpy as np

from .layers import ALIASES, LAYERS, LayerError
from .losses import LOSSES


class SpecError(ValueError):
    """A layer that cannot be built; carries the layer's index and, when known, the key."""

    def __init__(self, index, message, key=None):
        super().__init__(message)
        self.index, self.key = index, key


def build_layer(kind, args, index=None):
    """('conv', {...}) -> a Layer. Raises SpecError naming the index and key."""
    if kind in ALIASES:
        kind, preset = ALIASES[kind]
        args = {**preset, **args}
    cls = LAYERS.get(kind)
    if cls is None:
        raise SpecError(index, f"unknown layer type {kind!r}")
    try:
        return cls(**args)
    except LayerError as e:
        raise SpecError(index, str(e), e.key) from None


class Model:
    """layers: list of (type, args) specs; input_shape: (H, W, C)."""

    def __init__(self, input_shape, specs, seed=0, dtype=np.float32, build_params=True, init=True):
        self.input_shape = tuple(input_shape)
        self.specs = [(kind, dict(args)) for kind, args in specs]
        self.layers = [build_layer(kind, args, i) for i, (kind, args) in enumerate(self.specs)]
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            try:
                shape = layer.build(shape)
            except LayerError as e:
                raise SpecError(i, str(e), e.key) from None
        self.output_shape = shape
        self.head = self._find_head()
        self.dtype = np.dtype(dtype)
        if build_params:
            self.init_params(seed if init else None)

    # --- structure ---
    def _find_head(self):
        """The output activation that the loss fuses: 'softmax' or 'sigmoid'."""
        last = self.layers[-1]
        if len(self.output_shape) != 1:
            raise SpecError(len(self.layers) - 1, f"the network ends in a {len(self.output_shape)}-D "
                            "feature map: end it with flatten + dense, or a global pooling layer")
        if last.activation == "softmax":
            return "softmax"
        if last.activation == "sigmoid":
            if self.output_shape[0] != 1:
                raise SpecError(len(self.layers) - 1, "a sigmoid output must have 1 unit (two "
                                "classes); use softmax for more classes", "activation")
            return "sigmoid"
        raise SpecError(len(self.layers) - 1, "the last layer must end in softmax (or sigmoid with "
                        "1 unit for two classes): set activation: softmax", "activation")

    @property
    def n_classes(self):
        return 2 if self.head == "sigmoid" else self.output_shape[0]

    def _init_activations(self):
        """The activation that follows each layer, looking past batchnorm and dropout:
        decides He or Glorot initialisation for conv -> batchnorm -> relu as for conv+relu."""
        acts = []
        for i, layer in enumerate(self.layers):
            act = layer.activation
            if act == "linear":
                for nxt in self.layers[i + 1:]:
                    if nxt.kind == "activation":
                        act = nxt.activation
                        break
                    if nxt.kind not in ("batchnorm", "dropout"):
                        break
            acts.append(act)
        return acts

    def init_params(self, seed):
        """Every random number comes from this one seed: a child stream per layer.
        seed None: zeros, for weights about to be loaded."""
        children = np.random.SeedSequence(seed if seed is not None else 0).spawn(len(self.layers))
        for layer, child, act in zip(self.layers, children, self._init_activations()):
            rng = np.random.default_rng(child) if seed is not None else None
            layer.init_params(rng, self.dtype, act)
            if layer.kind == "dropout":
                layer.rng = rng or np.random.default_rng(0)

    def named_params(self):
        """[(key, param, grad)] with keys 'layers.<i>.<name>' as in checkpoints."""
        return [(f"layers.{i}.{name}", p, layer.grads[name])
                for i, layer in enumerate(self.layers) for name, p in layer.params.items()]

    def n_params(self):
        return sum(layer.n_params() for layer in self.layers)

    # --- computation ---
    @contextlib.contextmanager
    def _logits(self):
        """The last layer's softmax / sigmoid is fused into the loss: it runs linear here."""
        last = self.layers[-1]
        act, last.activation = last.activation, "linear"
        try:
            yield
        finally:
            last.activation = act

    def forward(self, x, training=False):
        """(N, H, W, C) -> logits (N, K): the output activation is left to the loss."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        with self._logits():
            for layer in self.layers:
                x = layer.forward(x, training)
        return x

    def backward(self, dlogits):
        """Back-propagate dL/dlogits; fills each layer's grads."""
        dy = dlogits
        with self._logits():
            for i in range(len(self.layers) - 1, -1, -1):
                dy = self.layers[i].backward(dy, need_dx=i > 0)

    def loss(self, x, labels, smoothing=0.0, training=True):
        """Forward + fused loss + backward: returns (loss, probabilities)."""
        logits = self.forward(x, training=training)
        loss, dlogits, probs = LOSSES[self.head](logits, labels, smoothing)
        self.backward(dlogits)
        return loss, probs

    def predict_proba(self, x):
        """(N, H, W, C) -> class probabilities (N, n_classes), inference mode."""
        logits = self.forward(x, training=False)
        if self.head == "sigmoid":
            from .losses import sigmoid
            p = sigmoid(logits[:, 0])
            return np.stack([1 - p, p], axis=1)
        from .losses import softmax
        return softmax(logits)

    # --- the boundary layout ---
    def state_dict(self):
        """{'layers.<i>.<name>': array} in the PyTorch / ONNX layout."""
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.export().items()}

    def load_state_dict(self, arrays):
        for i, layer in enumerate(self.layers):
            names = list(layer.param_shapes()) + list(layer.buffer_shapes())
            layer.load({k: arrays[f"layers.{i}.{k}"] for k in names})


__all__ = ["Model", "SpecError", "build_layer"]
