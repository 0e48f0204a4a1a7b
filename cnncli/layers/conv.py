"""conv: nf filters of fh x fw x d/g slide over an h x w x d input (cross-correlation, no flip).

groups g (PyTorch's rule): filter f reads only input channels [k d/g, (k+1) d/g), k = f // (nf/g).
g == d is a depthwise convolution (nf = d*m, m filters per channel), which has kernels of its own.
"""

import math

import numpy as np

from ..conv_algorithm import keeps_columns, plan as conv_plan
from .base import (Layer, LayerError, activation_name, alpha_arg, boolean, fmt_shape, he_or_glorot, onnx_pads,
                   padding_arg, pair, positive_int, resolve_padding, stride_pad)


class Conv(Layer):
    kind = "conv"
    activation_key = "activation"
    conv_like = True
    has_filters = True
    init_role = "supplies"
    kernels = ("activation", "conv", "depthwise", "direct", "winograd")
    keeps_input = True        # dw = x * dz

    def __init__(self, filters, size=3, stride=1, padding="valid", groups=1, bias=True, activation=None,
                 alpha=0.01):
        super().__init__()
        self.filters = positive_int(filters, "filters")
        self.size = pair(size, "size")
        self.stride = pair(stride, "stride")
        self.padding = padding_arg(padding)
        self.groups = positive_int(groups, "groups")
        self.bias = boolean(bias, "bias")
        self.activation = activation_name(activation)
        self.alpha = alpha_arg(alpha)

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"filters": self.filters, "size": list(self.size), "stride": list(self.stride),
                "padding": pad, "groups": self.groups, "bias": self.bias, "activation": self.activation,
                "alpha": self.alpha}

    def geometry(self, in_shape):
        """-> (pads (top, bottom, left, right), (out_h, out_w)) for an h x w x c input."""
        if len(in_shape) != 3:
            raise LayerError(f"conv needs an h x w x channels input, got {fmt_shape(in_shape)}")
        h, w, c = in_shape
        if c % self.groups or self.filters % self.groups:
            raise LayerError(_groups_advice(self.groups, c, self.filters), "groups")
        pads, out_hw = resolve_padding(self.padding, (h, w), self.size, self.stride)
        ph, pw = h + pads[0] + pads[1], w + pads[2] + pads[3]
        if self.size[0] > ph or self.size[1] > pw:
            raise LayerError(f"the {self.size[0]}x{self.size[1]} filter is larger than its "
                             f"{'padded ' if ph > h or pw > w else ''}input {ph}x{pw}: use a smaller "
                             "'size', or padding: same", "size")
        return pads, out_hw

    def output_shape(self, in_shape):
        _, (oh, ow) = self.geometry(in_shape)
        return (oh, ow, self.filters)

    def build(self, in_shape):
        out = super().build(in_shape)
        self.pads, self.out_hw = self.geometry(self.in_shape)
        # the algorithm that runs this layer, decided once (inspect shows it; the kernels take it)
        self.plan = conv_plan(self.in_shape[2], self.size, self.stride, self.pads, self.groups, self.filters,
                         self.in_shape[:2], self.out_hw)
        return out

    @property
    def algorithm(self):
        return self.plan.algorithm

    def depthwise(self):
        """groups == channels (> 1): the depthwise kernels, not im2col."""
        return self.algorithm == "depthwise"

    def param_shapes(self):
        c = self.in_shape[2] // self.groups
        shapes = {"weight": (self.filters, c, self.size[0], self.size[1])}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def macs(self):
        oh, ow, f = self.out_shape
        return oh * ow * f * self.size[0] * self.size[1] * (self.in_shape[2] // self.groups)

    def scratch_bytes(self, batch_size):
        """The im2col columns, when the layer keeps them from forward to backward (all groups'
        columns together are as many as an ordinary conv's; depthwise builds none)."""
        p = self.plan
        if p.algorithm in ("depthwise", "winograd") or p.direct:
            return 0
        depth = self.size[0] * self.size[1] * self.in_shape[2]
        return p.positions * depth * 4 if keeps_columns(batch_size, p.positions, depth, p.pointwise) else 0

    def direct(self):
        """Does each group convolve directly, with no im2col columns (ConvPlan.direct)?"""
        return self.plan.direct

    def describe(self):
        grouping = "" if self.groups == 1 else " depthwise" if self.depthwise() else f" g{self.groups}"
        depth = self.in_shape[2] // self.groups
        return (f"{self.filters}× {self.size[0]}×{self.size[1]}×{depth}{grouping}, " + stride_pad(self)
                + (", winograd" if self.algorithm == "winograd" else "")
                + (", direct" if self.direct() else ""))

    def receptive(self):
        return self.size, self.stride

    def init_params(self, rng, dtype, init_activation):
        fh, fw = self.size
        c, f = self.in_shape[2] // self.groups, self.filters
        # internal layout (FH, FW, C/g, F): the GEMM right-hand side, rows in im2col order
        # (group k's filters are its columns [k F/g, (k+1) F/g); depthwise: (FH, FW, 1, C*m))
        self.params["weight"] = he_or_glorot(rng, (fh, fw, c, f), fh * fw * c, fh * fw * f // self.groups,
                                             init_activation, dtype)
        if self.bias:
            self.params["bias"] = np.zeros(f, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def onnx(self, g, xs, w, prefix, out):
        inputs = [xs[0], g.const(f"{prefix}.weight", w["weight"])]
        if self.bias:
            inputs.append(g.const(f"{prefix}.bias", w["bias"]))
        return g.node("Conv", inputs, out, kernel_shape=list(self.size), strides=list(self.stride),
                      pads=onnx_pads(self.pads), group=self.groups)

    def forward(self, x, ctx):
        # (N, H, W, C) -> (N, OH, OW, F); training reuses the columns array next step (a direct
        # layer has none), inference keeps nothing alive. record (inference with a backward
        # after, Grad-CAM) computes as inference does, bit for bit, and its backward builds the
        # columns again where the layer uses them. ctx.tiles: this step's Winograd filters,
        # transformed once for all the threads
        training = ctx.training
        workspace = getattr(self, "_workspace", None) if training else None
        tiles = ctx.tiles.get(self.index)
        weight, ready = (tiles[0], True) if tiles is not None else (self.params["weight"], False)
        z, cols = self._convolve(x, weight, self.params.get("bias"), self.kernel_activation(ctx), self.alpha,
                                 workspace, keep=training, ready=ready)
        y, kept = self.finish_activation(z, ctx)
        self._workspace = cols if training else None
        self._cache = (x, kept, cols) if training or ctx.record else None
        return y

    def inference_filters(self, weight):
        """The filters in the form this layer's kernel takes them (Winograd: U = G g G^T), for
        Model.inference_plan to compute once per evaluation instead of once per batch."""
        from ..kernels.winograd import filter_tiles

        return filter_tiles(weight) if self.algorithm == "winograd" else weight

    def absorbs_affine(self):
        return self.activation == "linear"

    def inference_entry(self, affine=None, act="linear", alpha=0.01):
        """With a batchnorm after it (affine = (s, t)): filters w s and bias b s + t, computed in
        float64. Without: the Winograd filters transformed once, or None (nothing to fold)."""
        if affine is None:
            if self.algorithm != "winograd":
                return None
            return (self.inference_filters(self.params["weight"]), self.params.get("bias"), self.activation,
                    self.alpha)
        scale, shift = affine
        dtype = self.params["weight"].dtype
        bias = shift + (self.params["bias"] * scale if self.bias else 0.0)
        weight = (self.params["weight"] * scale).astype(dtype)     # (FH, FW, C/g, F): F is last
        return self.inference_filters(weight), bias.astype(dtype), act, alpha

    def step_tiles(self):
        """Work on the filters done once per training step for all the threads (Winograd's
        (U, turned U)), or None; the shards pass it to each thread in ctx.tiles."""
        if self.algorithm != "winograd":
            return None
        from ..kernels.winograd import filter_tiles, turned_tiles

        return filter_tiles(self.params["weight"]), turned_tiles(self.params["weight"])

    def pointwise(self):
        return (self.size == (1, 1) and tuple(self.stride) == (1, 1) and not any(self.pads) and self.groups == 1
                and self.algorithm == "im2col")

    def takes_row_gradient(self):
        return self.pointwise() and self.activation == "linear"   # _pointwise_backward, nothing to apply

    def takes_pointwise(self):
        return self.algorithm == "depthwise" and self.filters == self.in_shape[2]   # one filter a channel

    def forward_folded(self, x, filters, bias, activation, alpha, expand=None, project=None):
        """Inference with other parameters: batchnorm folded in, and the activation after it
        (Model.inference_plan). filters: as inference_filters returns them. Keeps nothing.
        expand, project: the 1x1 layers before and after this depthwise one, each (index,
        filters, bias, activation, alpha) or None; x is then the expansion's input, and the
        output the projection's (fusion._pointwise_stages)."""
        if expand is not None or project is not None:
            from ..kernels.depthwise import banded_depthwise_forward
            return banded_depthwise_forward(x, filters, bias, activation, self.stride, self.pads, self.out_hw, alpha,
                                            expand and expand[1:], project and project[1:])
        return self._convolve(x, filters, bias, activation, alpha, None, keep=False, ready=True)[0]

    def _convolve(self, x, weight, bias, activation, alpha, workspace, keep, ready=False):
        """-> (y, the kept im2col columns or None), by this layer's algorithm. keep: backward will
        follow, so small layers keep their columns; inference builds cache-sized pieces instead of
        a batch-wide buffer of up to KEEP_COLUMNS_BYTES per layer (the same speed, measured on
        LeNet-5: 44,259 vs 44,313 images/s).
        ready: the weight is already in the kernel's form (inference_filters)."""
        from ..kernels.conv import conv2d_forward, grouped_conv2d_forward
        from ..kernels.depthwise import depthwise_forward

        if self.algorithm == "winograd":
            from ..kernels.winograd import filter_tiles, winograd_conv
            u = weight if ready else filter_tiles(weight)
            return winograd_conv(x, u, self.pads, self.out_hw, bias, activation, alpha), None
        args = (weight, bias, activation, self.stride, self.pads, self.out_hw)
        if self.algorithm == "depthwise":
            return depthwise_forward(x, *args, alpha), None
        if self.groups > 1:
            return grouped_conv2d_forward(x, *args, self.groups, alpha, workspace, keep, self.plan)
        return conv2d_forward(x, *args, alpha, workspace, keep, self.plan)

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.conv import conv2d_backward, grouped_conv2d_backward
        from ..kernels.depthwise import depthwise_backward

        x, kept, cols = self._cache
        dy, act = self.activation_backward(dy, kept)
        args = (dy, x, kept, self.params["weight"], act, self.stride, self.pads)
        if self.algorithm == "depthwise":
            dx, dw, db = depthwise_backward(*args, need_dx, self.alpha, need_db=self.bias)
        elif self.algorithm == "winograd":   # dx is a 3x3 convolution too; dw from the same tiles
            from ..kernels.winograd import winograd_backward
            tiles = ctx.tiles.get(self.index)
            dx, dw, db = winograd_backward(dy, x, kept, self.params["weight"], act, self.alpha, self.pads,
                                           need_dx, self.bias, None if tiles is None else tiles[1])
        elif self.groups > 1:
            dx, dw, db = grouped_conv2d_backward(*args, self.out_hw, self.groups, need_dx, self.alpha, cols, self.plan)
        else:
            dx, dw, db = conv2d_backward(*args, self.out_hw, need_dx, self.alpha, cols, self.plan, need_db=self.bias)
        self.grads["weight"] += dw
        if self.bias:
            self.grads["bias"] += db
        self._cache = None
        return dx

    def export(self):
        # (FH, FW, C/g, F) -> (F, C/g, FH, FW), PyTorch's and ONNX's layout for any groups
        out = {"weight": np.ascontiguousarray(self.params["weight"].transpose(3, 2, 0, 1))}
        if self.bias:
            out["bias"] = self.params["bias"].copy()
        return out

    def load(self, arrays):
        self.params["weight"][...] = np.asarray(arrays["weight"]).transpose(2, 3, 1, 0)
        if self.bias:
            self.params["bias"][...] = arrays["bias"]


def _groups_advice(g, c, f):
    """The one-line error for groups that do not divide the channels or the filters."""
    common = math.gcd(c, f)
    ok = [str(d) for d in range(1, common + 1) if common % d == 0]
    fix = ok[0] if len(ok) == 1 else ", ".join(ok[:-1]) + " or " + ok[-1]
    also = f", or filters a multiple of {g}" if c % g == 0 else ""
    return f"groups {g} must divide both the {c} input channels and the {f} filters: use groups {fix}{also}"
