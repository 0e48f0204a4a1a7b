"""batchnorm: normalise each channel (after conv) or unit (after dense) over the batch.

Training: y = weight * (x - mean_B) / sqrt(var_B + eps) + bias, with batch statistics, and
running_mean/var <- (1 - momentum) * running + momentum * batch (unbiased var, as PyTorch).
Inference: the same formula with the running statistics (constants: dL/dx = weight inv_std dL/dy).
A step over several threads or processes passes `ctx.reduce` (a function summing float64 arrays
over them): the batch statistics are then those of the whole batch, as with one process
(synchronised batchnorm); `ctx.keeps_running` says whether this call updates the running ones.
"""

import numpy as np

from .base import Layer, LayerError, rate


class BatchNorm(Layer):
    kind = "batchnorm"
    conv_like = True          # a conv -> batchnorm block's output
    init_role = "through"
    kernels = ("batchnorm",)
    keeps_input = True        # x, with the batch's mean and 1 / std: x_hat again in backward
    batch_statistics = True
    takes_activation = True
    gives_row_gradient = True

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = rate(momentum, "momentum", 0.0, 1.0, include_low=False)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise LayerError(f"'eps' must be a positive number, got {eps!r}", "eps")
        self.eps = float(eps)

    def config(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def describe(self):
        return f"per {'channel' if len(self.in_shape) == 3 else 'unit'}"

    def param_shapes(self):
        c = self.in_shape[-1]
        return {"weight": (c,), "bias": (c,)}

    def buffer_shapes(self):
        c = self.in_shape[-1]
        return {"running_mean": (c,), "running_var": (c,)}

    def init_params(self, rng, dtype, init_activation):
        c = self.in_shape[-1]
        self.params = {"weight": np.ones(c, dtype), "bias": np.zeros(c, dtype)}
        self.buffers = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def onnx(self, g, xs, w, prefix, out):
        # inference form: weight * (x - running_mean) / sqrt(running_var + eps) + bias, per channel (axis 1)
        names = [g.const(f"{prefix}.{k}", w[k]) for k in ("weight", "bias", "running_mean", "running_var")]
        return g.node("BatchNormalization", [xs[0], *names], out, epsilon=self.eps)

    def inference_affine(self):
        # y = s x + t with the running statistics: s = weight / sqrt(var + eps), t = bias - mean s
        var = self.buffers["running_var"].astype(np.float64)
        scale = self.params["weight"].astype(np.float64) / np.sqrt(var + self.eps)
        return scale, self.params["bias"] - self.buffers["running_mean"].astype(np.float64) * scale

    def forward(self, x, ctx, then=None):
        """then: (function, alpha) of the activation layer that alone reads this one, applied in
        the same pass (Model.forward hands it over where that layer's backward needs only its output)."""
        from ..kernels.batchnorm import batch_stats, normalize

        c = x.shape[-1]
        x2 = np.ascontiguousarray(x).reshape(-1, c)  # (M, C): each position of each image is a sample
        dt = x.dtype.type
        training = ctx.training
        if training:
            mean, var, m = batch_stats(x2, ctx.reduce)  # float64; m: rows of the whole batch
            if ctx.keeps_running:
                mom = dt(self.momentum)
                unbiased = (var * (m / max(m - 1, 1))).astype(x.dtype)
                self.buffers["running_mean"] *= dt(1) - mom
                self.buffers["running_mean"] += mom * mean.astype(x.dtype)
                self.buffers["running_var"] *= dt(1) - mom
                self.buffers["running_var"] += mom * unbiased
        else:
            mean = self.buffers["running_mean"].astype(np.float64)
            var = self.buffers["running_var"].astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        scale = self.params["weight"] * inv_std            # float64, as the shift from it
        shift = self.params["bias"] - mean * scale
        scale, shift = scale.astype(x.dtype), shift.astype(x.dtype)
        y = normalize(x2, scale, shift, *(then or ("linear", 0.01)))
        # backward differs: batch statistics depend on x; running statistics are constants. With
        # `then`, backward recomputes the activation's output from x, scale and shift
        self._cache = (x2, mean, inv_std, training, scale, shift) if training or ctx.record else None
        return y.reshape(x.shape)

    def backward(self, dy, ctx, need_dx=True, then=None, rows=False):
        """then: (function, alpha) of the activation forward applied after this layer
        (Model.backward hands it over): dy is then dL/d(its output), which the kernel recomputes
        from x with the forward's scale and shift (kernels/batchnorm.py). rows: dx as a RowGradient,
        for the 1x1 conv before this layer to compute by runs of rows (Model.backward)."""
        from ..kernels.batchnorm import batchnorm_backward

        if self._cache is None:
            raise RuntimeError("batchnorm backward needs a forward that kept its input (training or record)")
        x2, mean, inv_std, batch, scale, shift = self._cache
        self._cache = None
        dy2 = np.ascontiguousarray(dy).reshape(x2.shape)
        if then is not None:
            then = then + (scale, shift)
        dx, dgamma, dbeta = batchnorm_backward(dy2, x2, mean, inv_std, self.params["weight"], need_dx, batch,
                                               ctx.reduce, then, rows)
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        return None if dx is None else dx if rows else dx.reshape(dy.shape)
