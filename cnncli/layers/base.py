"""The Layer contract, and the argument checks and padding rule that layers share.

A layer's config is its constructor's keyword arguments. Shape inference (`output_shape`) is
pure and never touches a kernel, so `inspect` walks a network without importing numba; `build`
fixes the input shape and derives what forward needs (paddings, output size).
Shapes here are per image: (H, W, C) for feature maps, (D,) for vectors. A merge layer
(`n_inputs = None`: add, concat, scale) takes a list of shapes and a list of arrays.

Gradients add up: backward does `grads[name] += ...`, and the model zeroes them once per step,
so a parameter's gradient is right however many paths reach it.

forward(x, ctx) and backward(dy, ctx) take the step's Context (context.py): the training flag,
dropout's streams, the batchnorm reducer, Winograd tiles. A layer keeps between its forward and
its backward only what its backward needs, and nothing outside it writes its attributes.

A layer answers for itself what the rest of cnncli asks of each kind (tests/test_layer_contract.py
fails when a kind leaves one out): its ONNX nodes (`onnx`), whether Grad-CAM counts it as
conv-like (`conv_like`), what the He / Glorot look-ahead does at it (`init_role`), the kernel
modules it runs (`kernels`: the JIT warm-up and cache counts derive from them), and its row in
docs/layers.md.
"""

import math

import numpy as np

from .functions import FUNCTIONS

ACTIVATIONS = tuple(FUNCTIONS)


class LayerError(ValueError):
    """A bad layer argument or an impossible shape; `key` names the argument when there is one."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


# --- argument checks: every layer argument passes through one of these ---------------------

def positive_int(value, key):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayerError(f"'{key}' must be a positive integer, got {value!r}", key)
    return value


def pair(value, key, minimum=1):
    """An int or a [h, w] list -> (h, w) of ints >= minimum."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        items = tuple(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = (value, value)
    else:
        raise LayerError(f"'{key}' must be an integer or a list [height, width], got {value!r}", key)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise LayerError(f"'{key}' values must be integers >= {minimum}, got {value!r}", key)
    return items


def rate(value, key, low=0.0, high=1.0, include_low=True):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise LayerError(f"'{key}' must be a number, got {value!r}", key)
    ok = (value >= low if include_low else value > low) and value < high
    if not ok:
        lo = "[" if include_low else "("
        raise LayerError(f"'{key}' must be in {lo}{low}, {high}), got {value!r}", key)
    return float(value)


def boolean(value, key):
    if not isinstance(value, bool):
        raise LayerError(f"'{key}' must be true or false, got {value!r}", key)
    return value


def alpha_arg(value, key="alpha"):
    """leaky_relu's slope for negative inputs: in [0, 1), so that the sign of the output is the
    sign of the input (backward reads the sign from the output)."""
    return rate(value, key)


def activation_name(value, key="activation"):
    if value is None or value == "none":
        return "linear"
    if value not in ACTIVATIONS:
        raise LayerError(f"'{key}' must be one of {', '.join(ACTIVATIONS)}; got {value!r}", key)
    return value


def padding_arg(value, key="padding"):
    """'valid' | 'same' | int | [ph, pw] | [top, bottom, left, right] -> 'valid' | 'same' | a tuple."""
    if value in ("valid", "same"):
        return value
    if isinstance(value, str):
        raise LayerError(f"'{key}' must be 'valid', 'same', an integer, [ph, pw] or [top, bottom, left, right]; "
                         f"got {value!r}", key)
    if isinstance(value, (list, tuple)) and len(value) == 4:
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise LayerError(f"'{key}' [top, bottom, left, right] must be four integers >= 0; got {value!r}", key)
        return tuple(value)
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise LayerError(f"'{key}' must be an integer, [ph, pw] or [top, bottom, left, right]; got {value!r}", key)
    return pair(value, key, minimum=0)


# --- the padding rule shared by convolution and pooling -----------------------------------

def resolve_padding(padding, in_hw, size, stride):
    """-> ((top, bottom, left, right), (out_h, out_w)).

    valid:  no padding, out = floor((h - f) / s) + 1
    (p, q): p rows top and bottom, q columns left and right, out = floor((h + 2p - f) / s) + 1
    (t, b, l, r): t rows on top, b at the bottom, l columns left, r right (ONNX's asymmetric pads),
            out = floor((h + t + b - f) / s) + 1
    same:   TensorFlow's rule: out = ceil(h / s); total = max((out - 1) * s + f - h, 0),
            top = total // 2, bottom = total - top (an odd extra row goes to the bottom / right).
    """
    pads, out = [], []
    for dim in range(2):
        h, f, s = in_hw[dim], size[dim], stride[dim]
        if padding == "same":
            o = -(-h // s)
            total = max((o - 1) * s + f - h, 0)
            lo, hi = total // 2, total - total // 2
        else:
            if padding == "valid":
                lo = hi = 0
            elif len(padding) == 4:
                lo, hi = padding[2 * dim], padding[2 * dim + 1]
            else:
                lo = hi = padding[dim]
            o = (h + lo + hi - f) // s + 1 if h + lo + hi >= f else 0
        pads += [lo, hi]
        out.append(o)
    return tuple(pads), tuple(out)


class Layer:
    """One node of the network graph: shapes, parameters, forward and backward."""

    kind = "layer"          # the name used in YAML and in the registry
    activation = "linear"   # layers with a fused activation override this
    activation_key = None   # the constructor argument naming it ("activation"; "fn")
    n_inputs = 1            # None: two or more inputs, passed as lists (merge layers)
    index = None            # its place in the model (Model sets it once, at build): its key in a Context
    # per-kind answers, declared by every kind (tests/test_layer_contract.py):
    conv_like = None        # Grad-CAM: does its output hold features computed from the image?
    init_role = None        # He / Glorot look-ahead: "supplies" (its activation decides),
    #                         "through" (look on to its reader) or "stops"
    kernels = None          # the kernel modules (cnncli/kernels/<name>.py) its forward and backward run
    has_filters = False     # its output channels are filter responses (explain draws its maps)
    random = False          # draws random numbers in training (dropout): its stream is ctx.rngs[index]
    batch_statistics = False  # training sums over the batch (batchnorm): ctx.reduce, and no 1-value batches
    takes_activation = False  # forward(x, ctx, then=(function, alpha)) applies the activation layer after it
    gives_row_gradient = False  # backward(..., rows=True) returns dx as an object whose rows(lo, hi) computes them
    keeps_input = False     # a training forward keeps its input for backward (conv, dense, batchnorm):
    #                         inspect's memory estimate counts an output that a reader keeps

    def __init__(self):
        self.params = {}    # name -> array, internal layout
        self.grads = {}     # name -> array, same shapes as params
        self.buffers = {}   # non-trainable state saved in checkpoints (batchnorm running stats)
        self.in_shape = self.out_shape = None

    # --- description (no kernels) ---
    def config(self):
        """The constructor's arguments, normalised: cls(**layer.config()) rebuilds the layer."""
        return {}

    def output_shape(self, in_shape):
        """The output shape for this input shape; pure (changes nothing)."""
        return tuple(in_shape)

    def build(self, in_shape):
        """Fix the input shape (a list of shapes for a merge layer) -> the output shape."""
        in_shape = [tuple(s) for s in in_shape] if self.n_inputs is None else tuple(in_shape)
        out_shape = tuple(self.output_shape(in_shape))
        if any(d < 1 for d in out_shape):
            shown = fmt_shape(in_shape) if self.n_inputs == 1 else ", ".join(map(fmt_shape, in_shape))
            raise LayerError(f"output shape {fmt_shape(out_shape)} is empty: the input "
                             f"{shown} is too small for this layer")
        self.in_shape, self.out_shape = in_shape, out_shape
        return out_shape

    def param_shapes(self):
        """Trainable parameter shapes in the boundary (PyTorch / ONNX) layout."""
        return {}

    def buffer_shapes(self):
        return {}

    def n_params(self):
        return sum(math.prod(s) for s in self.param_shapes().values())

    def n_buffers(self):
        return sum(math.prod(s) for s in self.buffer_shapes().values())

    def macs(self):
        """Multiply-accumulates per image (convolution and dense layers; 0 elsewhere)."""
        return 0

    def scratch_bytes(self, batch_size):
        """Bytes per image a training forward keeps for backward beyond its output (for inspect)."""
        return 0

    @property
    def keeps_output(self):
        """Does a training forward keep this layer's output for backward? A layer with an
        activation keeps y for a derivative taken from the output (linear included: the kernels
        hand back z = y), and z beside y for one that needs the input (activation_bytes)."""
        return self.activation_key is not None and FUNCTIONS[self.activation].keeps != "input"

    def activation_bytes(self):
        """Bytes per image a training forward keeps for its fused activation's derivative beyond
        its output: the input z, for the functions whose derivative needs it."""
        return math.prod(self.out_shape) * 4 if FUNCTIONS[self.activation].keeps == "input" else 0

    def describe(self):
        """Short text for the layer table: filter size, stride, padding, units..."""
        return ""

    def receptive(self):
        """(kernel, stride) per axis for the receptive-field walk; (1, 1) for point-wise layers."""
        return (1, 1), (1, 1)

    def onnx(self, g, xs, w, prefix, out):
        """Emit this layer's ONNX nodes (before its fused activation) into g (export/graph.py's
        Graph): xs the input tensor names, w its arrays in the checkpoint layout, prefix
        'layers.<i>', out the name the result should take -> the output tensor's name."""
        raise NotImplementedError(f"{self.kind} has no ONNX export")

    def split_head(self):
        """-> (its activation, the same layer without it), for the model's last layer: the loss
        fuses the softmax / sigmoid, so the network itself computes logits."""
        if self.activation_key is None:
            return "linear", self
        return self.activation, type(self)(**{**self.config(), self.activation_key: "linear"})

    # --- inference folding (model/fusion.fold): None / False where a layer takes no part ---
    def inference_affine(self):
        """At inference, y = scale x + shift per channel? -> (scale, shift) in float64 (batchnorm)."""
        return None

    def absorbs_affine(self):
        """Can this layer take a following per-channel affine map into its own parameters?"""
        return False

    def inference_entry(self, affine=None, act="linear", alpha=0.01):
        """The arguments of forward_folded for this layer, with `affine` (scale, shift) folded
        in and `act` applied after it; None when it has no folded form."""
        return None

    def standalone_function(self):
        """(function, alpha) for a layer that only applies an activation function, else None."""
        return None

    def pointwise(self):
        """Is this a plain 1x1 convolution (stride 1, no padding, one group), which a
        takes_pointwise layer before or after it may compute a band of rows at a time?"""
        return False

    def takes_pointwise(self):
        """Can forward_folded take the pointwise layers before and after it as expand and
        project, each (index, filters, bias, activation, alpha) or None (fusion._pointwise_stages)?"""
        return False

    def takes_row_gradient(self):
        """Can backward take its dy as a gives_row_gradient layer's rows object, reading a run
        of rows at a time (fusion.row_gradients)?"""
        return False

    # --- what a step split over threads draws and computes once, before the split ---
    def draw(self, shape, dtype, rng):
        """A random layer's draw for a whole batch of this shape from its stream (a dropout
        mask), made before the batch is split so that threads draw what one thread would."""
        return None

    def step_tiles(self):
        """Work on the parameters done once per step for all the threads (Winograd's filter
        tiles), or None."""
        return None

    # --- computation ---
    def init_params(self, rng, dtype, init_activation):
        """Create parameters; init_activation picks He (FUNCTIONS[...].he) or Glorot."""

    def forward(self, x, ctx):
        """x (N, ...) -> y. ctx.training: batch statistics, dropout, and keep what backward
        needs. ctx.record: keep what backward needs in inference too (gradients of an
        inference-mode output, as Grad-CAM takes). Neither: keep nothing alive after it returns."""
        raise NotImplementedError

    def backward(self, dy, ctx, need_dx=True):
        """dL/dy -> dL/dx (a list for a merge layer; None where not needed); adds into grads."""
        raise NotImplementedError

    # --- a fused activation: what the kernel applies, and what backward keeps ---
    def kernel_activation(self, ctx):
        """The activation the kernel applies in this call: all of it, unless a backward follows
        and the derivative needs the input z (FUNCTIONS[...].keeps): then none, and
        finish_activation applies it after, keeping z."""
        if (ctx.training or ctx.record) and FUNCTIONS[self.activation].keeps == "input":
            return "linear"
        return self.activation

    def finish_activation(self, z, ctx):
        """The kernel's output z (kernel_activation applied) -> (y, what backward keeps): y
        itself, or z beside a new y where the derivative needs the input."""
        if self.kernel_activation(ctx) == self.activation:
            return z, z
        from ..kernels.activation import activated

        return activated(z, self.activation, self.alpha), z

    def activation_backward(self, dy, kept):
        """-> (dL/d(what the kernel's backward takes), the activation it applies): an activation
        kept from its output goes to the kernel fused; one kept from its input is taken here."""
        if FUNCTIONS[self.activation].keeps != "input":
            return dy, self.activation
        from ..kernels.activation import activation_grad

        return activation_grad(dy, kept, self.activation, self.alpha, split=True), "linear"

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def forget(self, workspace=True):
        """Drop what the last forward kept for backward (the layers an inference plan folds away
        run no forward of their own), and any reusable workspace unless workspace=False (a shard
        between training steps keeps its conv columns buffer, as a layer does)."""
        for name in ("_cache", "_kept", "_mask") + (("_workspace",) if workspace else ()):
            if hasattr(self, name):
                setattr(self, name, None)

    # --- the boundary layout (checkpoints) ---
    def export(self):
        """Parameters and buffers in the boundary layout, as new arrays."""
        out = {k: v.copy() for k, v in self.params.items()}
        out.update({k: v.copy() for k, v in self.buffers.items()})
        return out

    def load(self, arrays):
        """Inverse of export: take boundary-layout arrays into the internal layout."""
        for k in self.params:
            self.params[k][...] = arrays[k]
        for k in self.buffers:
            self.buffers[k][...] = arrays[k]


def stride_pad(layer):
    """'s2, same' / 's1,2, pad 1,0' / 's1, pad 0,1,0,1 (t,b,l,r)' for the layer table."""
    sh, sw = layer.stride
    s = f"s{sh}" if sh == sw else f"s{sh},{sw}"
    p = layer.padding
    if isinstance(p, tuple) and len(p) == 4:
        p = "pad " + ",".join(map(str, p)) + " (t,b,l,r)"
    elif isinstance(p, tuple):
        p = f"pad {p[0]}" if p[0] == p[1] else f"pad {p[0]},{p[1]}"
    return f"{s}, {p}"


def onnx_pads(pads):
    """cnncli (top, bottom, left, right) -> ONNX (top, left, bottom, right)."""
    top, bottom, left, right = pads
    return [top, left, bottom, right]


def fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def he_or_glorot(rng, shape, fan_in, fan_out, activation, dtype):
    """He normal, std = sqrt(2 / fan_in), for the relu family (FUNCTIONS[...].he); Glorot
    uniform otherwise. rng None: zeros (the weights are about to be loaded)."""
    if rng is None:
        return np.zeros(shape, dtype)
    if FUNCTIONS[activation].he:
        w = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    else:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, size=shape)
    return w.astype(dtype)
