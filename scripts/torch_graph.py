"""A cnncli network rebuilt in PyTorch (NCHW), layer for layer: the yardstick of scripts/bench.py
and scripts/torch_parity.py. PyTorch is imported here only; cnncli itself never needs it.

    from torch_graph import torch_graph
    net = torch_graph(model, model.state_dict())   # model: a cnncli.model.Model
    net.eval(); probs = net.probabilities(x_nchw)

TorchGraph walks the same graph as cnncli: `model.sources[i]` are the outputs layer i reads
(-1: the network input), the last layer is the output. Its parameters and buffers carry
cnncli's checkpoint names ('layers.<i>.weight', ...), which are already PyTorch's layout, so a
cnncli state_dict loads as it is. forward() returns logits (the head's softmax / sigmoid left
to the loss, as cnncli's training does); probabilities() applies the head the way cnncli's
predict_proba does (a sigmoid head gives two columns [1 - p, p]).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT = -1


def _activate(x, name, alpha):
    if name == "linear":
        return x
    if name == "relu":
        return F.relu(x)
    if name == "leaky_relu":
        return F.leaky_relu(x, alpha)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "relu6":
        return F.relu6(x)
    if name == "hardsigmoid":
        return F.hardsigmoid(x)
    if name == "hardswish":
        return F.hardswish(x)
    if name == "silu":
        return F.silu(x)
    if name == "gelu":
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "softmax":
        return torch.softmax(x, dim=1)  # channels of a map (NCHW) or features of a vector
    raise ValueError(f"unknown activation {name!r}")


def _torch_pads(pads):
    """cnncli (top, bottom, left, right) -> F.pad's (left, right, top, bottom)."""
    t, b, left, r = pads
    return (left, r, t, b)


class _Node(nn.Module):
    """One layer: op, then the fused activation (skipped on the output layer in logits mode)."""

    def __init__(self, layer):
        super().__init__()
        self.kind = layer.kind
        self.act = getattr(layer, "activation", "linear")
        self.alpha = float(getattr(layer, "alpha", 0.01))

    def op(self, xs):
        raise NotImplementedError

    def forward(self, xs, activate=True):
        y = self.op(xs)
        return _activate(y, self.act, self.alpha) if activate else y


class Conv(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        c, f, g = layer.in_shape[2], layer.filters, getattr(layer, "groups", 1)
        fh, fw = layer.size
        self.stride, self.groups = tuple(layer.stride), g
        t, b, left, r = layer.pads
        self.pad = None if (t, left) == (b, r) else _torch_pads(layer.pads)
        self.padding = (t, left) if self.pad is None else (0, 0)
        self.weight = nn.Parameter(torch.empty(f, c // g, fh, fw))
        self.bias = nn.Parameter(torch.zeros(f)) if layer.bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # PyTorch's default, for the bench

    def op(self, xs):
        x = xs[0] if self.pad is None else F.pad(xs[0], self.pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)


class Pool(_Node):
    """maxpool pads with -inf; avgpool averages over the real cells only (count_include_pad=False).
    Symmetric padding within PyTorch's limit (<= half the window) goes to the pooling op itself;
    anything else is padded explicitly (avgpool then divides by a pooled mask of real cells)."""

    def __init__(self, layer):
        super().__init__(layer)
        self.size, self.stride = tuple(layer.size), tuple(layer.stride)
        t, b, left, r = layer.pads
        native = (t, left) == (b, r) and t <= self.size[0] // 2 and left <= self.size[1] // 2
        self.padding = (t, left) if native else (0, 0)
        self.pad = None if native else _torch_pads(layer.pads)

    def op(self, xs):
        x = xs[0]
        if self.kind == "maxpool":
            if self.pad is not None:
                x = F.pad(x, self.pad, value=-math.inf)
            return F.max_pool2d(x, self.size, self.stride, self.padding)
        if self.pad is None:
            return F.avg_pool2d(x, self.size, self.stride, self.padding, count_include_pad=False)
        ones = torch.ones((1, 1) + x.shape[2:], dtype=x.dtype, device=x.device)
        total = F.avg_pool2d(F.pad(x, self.pad), self.size, self.stride)
        cells = F.avg_pool2d(F.pad(ones, self.pad), self.size, self.stride)
        return total / cells


class GlobalPool(_Node):
    def op(self, xs):
        return xs[0].mean(dim=(2, 3)) if self.kind == "globalavgpool" else xs[0].amax(dim=(2, 3))


class Flatten(_Node):
    def op(self, xs):
        return torch.flatten(xs[0], 1)  # NCHW -> (c, h, w) order, as cnncli's flatten


class Dense(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        lin = nn.Linear(layer.in_shape[0], layer.units, bias=layer.bias)  # PyTorch's default init
        self.weight, self.bias = lin.weight, lin.bias

    def op(self, xs):
        return F.linear(xs[0], self.weight, self.bias)


class Dropout(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        self.rate = layer.rate

    def op(self, xs):
        return F.dropout(xs[0], self.rate, self.training)


class BatchNorm(_Node):
    """Over the channels of a map (2d) or the features of a vector (1d): F.batch_norm handles both
    (N, C, H, W) and (N, C). momentum and eps as cnncli's (PyTorch's convention)."""

    def __init__(self, layer):
        super().__init__(layer)
        c = layer.in_shape[-1]
        self.momentum, self.eps = layer.momentum, layer.eps
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def op(self, xs):
        return F.batch_norm(xs[0], self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class Activation(_Node):
    def op(self, xs):
        return xs[0]


class Add(_Node):
    def op(self, xs):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y


class Concat(_Node):
    def op(self, xs):
        return torch.cat(xs, dim=1)  # channels of NCHW maps, or features of vectors


class LRN(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        self.size, self.alpha, self.beta, self.bias = layer.size, layer.alpha, layer.beta, layer.bias

    def op(self, xs):
        return F.local_response_norm(xs[0], self.size, self.alpha, self.beta, self.bias)


class Shuffle(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        self.groups = layer.groups

    def op(self, xs):
        n, c, h, w = xs[0].shape
        return xs[0].reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Pad(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        self.pad = _torch_pads(layer.pads)

    def op(self, xs):
        return F.pad(xs[0], self.pad)     # zeros


class Slice(_Node):
    def __init__(self, layer):
        super().__init__(layer)
        self.start, self.stop = layer.start, layer.stop

    def op(self, xs):
        return xs[0][:, self.start:self.stop]    # channels of NCHW maps, or features of vectors


class Scale(_Node):
    def op(self, xs):
        x, s = xs
        return x * s.reshape(s.shape + (1,) * (x.dim() - 2))   # (N, C) -> (N, C, 1, 1)


NODES = {"conv": Conv, "maxpool": Pool, "avgpool": Pool, "globalavgpool": GlobalPool,
         "globalmaxpool": GlobalPool, "flatten": Flatten, "dense": Dense, "dropout": Dropout,
         "batchnorm": BatchNorm, "activation": Activation, "add": Add, "concat": Concat,
         "lrn": LRN, "shuffle": Shuffle, "scale": Scale, "pad": Pad, "slice": Slice}


class TorchGraph(nn.Module):
    """cnncli's graph in PyTorch. Input (N, C, H, W) float32 -> logits (N, K)."""

    def __init__(self, model):
        super().__init__()
        unknown = sorted({layer.kind for layer in model.layers} - set(NODES))
        if unknown:
            raise ValueError(f"TorchGraph has no PyTorch equivalent for layer kind(s) {', '.join(unknown)}")
        self.layers = nn.ModuleList(NODES[layer.kind](layer) for layer in model.layers)
        self.sources = [tuple(src) for src in model.sources]
        self.head = model.head
        # last_read[j]: the last layer that reads output j, so that forward drops it after
        last = {}
        for i, src in enumerate(self.sources):
            for j in src:
                last[j] = i
        self.drop_after = [[j for j, k in last.items() if k == i] for i in range(len(self.sources))]

    def forward(self, x):
        """Logits: the output layer's softmax / sigmoid is left out, as in cnncli's training."""
        outs = {INPUT: x}
        n = len(self.layers)
        for i, node in enumerate(self.layers):
            xs = [outs[j] for j in self.sources[i]]
            for j in self.drop_after[i]:
                del outs[j]
            outs[i] = node(xs, activate=i != n - 1)
            del xs
        return outs[n - 1]

    def probabilities(self, x):
        """Class probabilities as cnncli's predict_proba: softmax, or [1 - p, p] for a sigmoid head."""
        z = self(x)
        if self.head == "sigmoid":
            p = torch.sigmoid(z[:, 0])
            return torch.stack([1 - p, p], dim=1)
        return torch.softmax(z, dim=1)


def load_cnncli_state(net, arrays):
    """Copy a cnncli state_dict ({'layers.<i>.<name>': numpy array}, PyTorch layout) into net.
    Every parameter and buffer of net must be given, with its exact shape; extra keys (optimizer
    state in last.npz) are ignored."""
    own = net.state_dict()
    missing = [k for k in own if k not in arrays]
    if missing:
        raise KeyError(f"the cnncli state_dict lacks {', '.join(missing[:5])}")
    with torch.no_grad():
        for k, t in own.items():
            src = torch.as_tensor(arrays[k])
            if tuple(src.shape) != tuple(t.shape):
                raise ValueError(f"{k}: cnncli has shape {tuple(src.shape)}, PyTorch needs {tuple(t.shape)}")
            t.copy_(src.to(t.dtype))
    return net


def torch_graph(model, arrays=None):
    """cnncli Model -> TorchGraph; arrays (a cnncli state_dict) copied in when given, else
    PyTorch's default initialisation (enough for a speed race)."""
    net = TorchGraph(model)
    if arrays is not None:
        load_cnncli_state(net, arrays)
    return net


__all__ = ["TorchGraph", "torch_graph", "load_cnncli_state", "NODES"]
