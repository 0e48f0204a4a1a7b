"""The network: a graph of layers, built from specs; forward, backward, one training step, one
evaluation, and the checkpoint (PyTorch / ONNX) layout.

The graph is a list in which each layer reads earlier outputs (Ultralytics' `from`, Darknet's
`[route]`): `sources[i]` holds the indices layer i reads, INPUT (-1) being the network's input.
A list with back-references is already in topological order, so forward walks it front to back
and backward back to front. The last layer is the output.

Inside, feature maps are NHWC float32. At the boundary (export / load) arrays use the
PyTorch / ONNX layout: conv weight (F, C/groups, FH, FW), dense weight (units, in_features),
dense after flatten sees (C, H, W) order, batchnorm weight / bias / running_mean / running_var.
"""

import difflib
import math

import numpy as np

from ..engine.losses import Loss
from ..layers import ALIASES, LAYERS, WIRING, Context, LayerError
from .fusion import activations_taken, fold, row_gradients
from ..parallel.threads import Shards

INPUT = -1  # the source index of the network's input


class SpecError(ValueError):
    """A layer that cannot be built; carries the layer's index and, when known, the key."""

    def __init__(self, index, message, key=None):
        super().__init__(message)
        self.index, self.key = index, key


class Diverged(ArithmeticError):
    """The loss of a training batch is NaN or infinite."""

    def __init__(self, loss):
        super().__init__(f"loss is {loss}")
        self.loss = loss


def build_layer(kind, args, index=None):
    """('conv', {...}) -> a Layer (wiring keys left out). Raises SpecError naming the index and key."""
    if kind in ALIASES:
        kind, preset = ALIASES[kind]
        args = {**preset, **args}
    cls = LAYERS.get(kind)
    if cls is None:
        raise SpecError(index, f"unknown layer type {kind!r}")
    try:
        return cls(**{k: v for k, v in args.items() if k not in WIRING})
    except LayerError as e:
        raise SpecError(index, str(e), e.key) from None


def resolve_sources(specs):
    """[(type, args)] -> [tuple of source indices] per layer, from each layer's `from` (default -1:
    the previous layer). Every mistake is a SpecError naming the layer and the key."""
    names, later = {}, {}
    for i, (_, args) in enumerate(specs):
        name = args.get("name")
        if name is None:
            continue
        if not isinstance(name, str) or not name.strip() or name == "input":
            raise SpecError(i, f"'name' must be a text other than 'input', got {name!r}", "name")
        if name in later:
            raise SpecError(i, f"name {name!r} is already used by layers[{later[name]}]: names must be unique", "name")
        later[name] = i
    sources = []
    for i, (kind, args) in enumerate(specs):
        ref = args.get("from", -1)
        refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
        many = LAYERS[ALIASES.get(kind, (kind,))[0]].n_inputs is None
        if many and (not isinstance(ref, (list, tuple)) or len(refs) < 2):
            raise SpecError(i, f"{kind} joins two or more inputs: give 'from' as a list, e.g. from: [-3, -1]; "
                            f"got {ref!r}", "from")
        if not many and len(refs) != 1:
            raise SpecError(i, f"{kind} reads one input: give 'from' one layer, got {ref!r}", "from")
        sources.append(tuple(_resolve_ref(r, i, names, later) for r in refs))
        if args.get("name") is not None:
            names[args["name"]] = i
    return sources


def _resolve_ref(ref, i, names, later):
    """One entry of `from` for layer i -> an absolute index, or INPUT."""
    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise SpecError(i, f"'from' entries are layer offsets (-1), indices (0, 1, ...), 'input' or a "
                        f"layer's name; got {ref!r}", "from")
    if isinstance(ref, str):
        if ref == "input":
            return INPUT
        if ref in names:
            return names[ref]
        if ref in later:
            where = "itself" if later[ref] == i else f"layers[{later[ref]}], which comes later"
            raise SpecError(i, f"'from: {ref}' refers to {where}: a layer reads only earlier layers", "from")
        close = difflib.get_close_matches(ref, list(names), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SpecError(i, f"'from: {ref}' names no earlier layer{hint}; names so far: "
                        f"{', '.join(names) or 'none'}", "from")
    j = i + ref if ref < 0 else ref
    if j >= i:
        where = "itself" if j == i else f"layers[{j}], which comes later"
        raise SpecError(i, f"'from: {ref}' refers to {where}: a layer reads only earlier layers "
                        "(-1 is the previous one)", "from")
    if j < INPUT:
        raise SpecError(i, f"'from: {ref}' reaches before the input: layers[{i}] can go back at most "
                        f"{i + 1} (-{i + 1} is the input)", "from")
    return j


class Model:
    """specs: list of (type, args); input_shape: (H, W, C)."""

    def __init__(self, input_shape, specs, seed=0, dtype=np.float32, build_params=True, init=True):
        self.input_shape = tuple(input_shape)
        self.specs = [(kind, dict(args)) for kind, args in specs]
        self.layers = [build_layer(kind, args, i) for i, (kind, args) in enumerate(self.specs)]
        self.sources = resolve_sources(self.specs)
        self.readers = [[] for _ in self.layers]   # readers[j]: the layers that read layer j
        for i, src in enumerate(self.sources):
            for j in src:
                if j != INPUT:
                    self.readers[j].append(i)
        for j, rd in enumerate(self.readers[:-1]):
            if not rd:
                raise SpecError(j, "its output is never used (a dead branch): read it with 'from' in "
                                "a later layer, or remove it")
        shapes = {INPUT: self.input_shape}
        for i, layer in enumerate(self.layers):
            ins = [shapes[j] for j in self.sources[i]]
            try:
                shapes[i] = layer.build(ins if layer.n_inputs is None else ins[0])
            except LayerError as e:
                raise SpecError(i, str(e), e.key) from None
        self.output_shape = shapes[len(self.layers) - 1]
        self.head = self._find_head()
        # the loss fuses the output's softmax / sigmoid: the last layer computes logits
        last = self.layers[-1].split_head()[1]
        last.build(self.layers[-1].in_shape)
        self.layers[-1] = last
        for i, layer in enumerate(self.layers):
            layer.index = i
        self.dtype = np.dtype(dtype)
        self.shards = Shards(self)
        self.rngs = {i: np.random.default_rng(0) for i in self.random_layers()}   # init_params seeds them
        self._plans = {}      # inference_plan's last plans (by `within`), with copies of what they folded
        self._takes = activations_taken(self)
        self._rows = row_gradients(self)     # {batchnorm: the 1x1 conv that takes its dx by rows}
        self.frozen = self.still = self._dead = frozenset()   # freeze() sets them: still = in inference mode
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
        if last.activation == "sigmoid":   # 1 unit: two classes; K units: K labels, each present or not
            return "sigmoid" if self.output_shape[0] == 1 else "multilabel"
        raise SpecError(len(self.layers) - 1, "the last layer must end in softmax (or sigmoid: 1 unit for "
                        "two classes, K units for K labels of a multi-label set): set activation: softmax",
                        "activation")

    @property
    def n_classes(self):
        return 2 if self.head == "sigmoid" else self.output_shape[0]

    def _init_activations(self):
        """The activation that follows each layer, looking through the layers whose init_role
        is "through" (batchnorm, dropout) to the first reader: decides He or Glorot
        initialisation for conv -> batchnorm -> relu (or an add with relu) as for conv+relu."""
        acts = []
        for i, layer in enumerate(self.layers):
            act, j = layer.activation, i
            while act == "linear" and self.readers[j]:
                j = self.readers[j][0]
                nxt = self.layers[j]
                if nxt.init_role == "supplies":
                    act = nxt.activation
                    break
                if nxt.init_role != "through":
                    break
            acts.append(act)
        return acts

    def init_params(self, seed):
        """Every random number comes from this one seed: a child stream per layer, which also
        becomes the layer's random stream (dropout) in `rngs` until a trainer passes its own.
        seed None: zeros, for weights about to be loaded."""
        children = np.random.SeedSequence(seed if seed is not None else 0).spawn(len(self.layers))
        self.rngs = {}
        for i, (layer, child, act) in enumerate(zip(self.layers, children, self._init_activations())):
            rng = np.random.default_rng(child) if seed is not None else None
            layer.init_params(rng, self.dtype, act)
            if layer.random:
                self.rngs[i] = rng or np.random.default_rng(0)

    def random_layers(self):
        """The indices of the layers that draw random numbers in training (dropout)."""
        return [i for i, layer in enumerate(self.layers) if layer.random]

    def named_params(self):
        """[(key, param, grad)] with keys 'layers.<i>.<name>' as in checkpoints."""
        return [(f"layers.{i}.{name}", p, layer.grads[name])
                for i, layer in enumerate(self.layers) for name, p in layer.params.items()]

    def n_params(self):
        return sum(layer.n_params() for layer in self.layers)

    def freeze(self, frozen, batchnorm_statistics=False):
        """Hold the layers at these indices fixed in training (model/freeze.py): inference mode in
        forward, no optimizer step, and no backward below the lowest trainable layer.
        batchnorm_statistics (train.freeze_batchnorm): every batch-statistics layer (batchnorm) also
        runs on its running statistics and leaves them as they are, while its weight and bias train."""
        from .freeze import dead_layers

        self.frozen = frozenset(frozen)
        self.still = self.frozen | frozenset(i for i, layer in enumerate(self.layers)
                                             if batchnorm_statistics and layer.batch_statistics)
        self._dead = dead_layers(self, self.frozen)
        self.shards.stop()
        self.shards = Shards(self)   # shards copy the model: none made before this may be used

    def trainable_params(self):
        """named_params() without the frozen layers': what the optimizer steps."""
        return [(f"layers.{i}.{name}", p, layer.grads[name]) for i, layer in enumerate(self.layers)
                if i not in self.frozen for name, p in layer.params.items()]

    def n_trainable(self):
        return sum(layer.n_params() for i, layer in enumerate(self.layers) if i not in self.frozen)

    # --- computation ---
    def context(self, training=False, record=False, rngs=None, reduce=None):
        """A step's Context (layers/context.py); rngs default to the model's own streams."""
        return Context(training=training, record=record, rngs=self.rngs if rngs is None else rngs, reduce=reduce,
                       frozen=self.still if training else frozenset())

    def forward(self, x, training=False, record=False, keep=(), plan=None, ctx=None, stop=None):
        """(N, H, W, C) -> logits (N, K): the output activation is left to the loss.
        stop: run layers 0..stop only and -> layer stop's output (the frozen-feature cache's boundary).
        An output is dropped as soon as the last layer that reads it has run, unless its index
        is in `keep`: then -> (logits, {index: output}). record: inference, but keep what
        backward needs (for gradients of an inference-mode output, as Grad-CAM takes).
        plan: inference_plan()'s folded layers (nothing recorded or kept); in training only
        frozen_plan()'s, the layers no backward reaches.
        ctx: the step's Context, when the caller made one (training and record then come from it)."""
        ctx = ctx or self.context(training, record)
        if plan and (ctx.record or keep or ctx.training and not set(plan) <= self._dead):
            raise ValueError("a folded plan is for plain inference (in training: of the layers no backward reaches)")
        plan = plan or {}
        outs = {INPUT: np.ascontiguousarray(x, dtype=self.dtype)}
        unread = {INPUT: sum(src.count(INPUT) for src in self.sources)}
        kept, applied = {}, set()    # applied: activation layers a batchnorm before them applied
        still = frozen_contexts(ctx)
        last = len(self.layers) - 1 if stop is None else stop
        for i, layer in enumerate(self.layers[:last + 1]):
            ins = [outs[j] for j in self.sources[i]]
            for j in self.sources[i]:
                unread[j] -= 1
                if not unread[j]:
                    del outs[j]
            if i in plan:   # folded: into the conv before it (None), or the conv doing it all
                layer.forget()
                outs[i] = ins[0] if plan[i] is None else layer.forward_folded(ins[0], *plan[i])
            else:
                lctx = still[i not in self._dead] if still and i in ctx.frozen else ctx
                j = self._takes.get(i)
                if i in applied:
                    outs[i] = layer.applied(ins[0], lctx)
                elif j is not None and i != last and i not in keep and j not in plan:
                    outs[i] = layer.forward(ins[0], lctx, then=self.layers[j].standalone_function())
                    applied.add(j)
                else:
                    outs[i] = layer.forward(ins if layer.n_inputs is None else ins[0], lctx)
            unread[i] = len(self.readers[i])
            if i in keep:
                kept[i] = outs[i]
            del ins
        logits = outs[last]
        return (logits, kept) if keep else logits

    def backward(self, dlogits, keep=(), ctx=None):
        """Back-propagate dL/dlogits; adds into each layer's grads. A layer read by several
        others gets the sum of their gradients. -> {index: dL/d output} for the indices in keep;
        with keep, the walk stops at the lowest kept layer (layers below it get no gradients).
        ctx: the forward's Context (its batchnorm reducer, its Winograd tiles)."""
        if INPUT in keep:
            raise ValueError("keep names layers (0, 1, ...): the input has no gradient kept here")
        ctx = ctx or self.context()
        lowest = min(keep, default=INPUT)
        dead = self._dead if ctx.frozen else ()   # no trainable parameter at or below them: no backward
        pending = {len(self.layers) - 1: dlogits}
        kept, then = {}, {}     # then: {batchnorm: its activation's (function, alpha)}
        taken = {j: i for i, j in self._takes.items()}
        for i in range(len(self.layers) - 1, -1, -1):
            if i in dead:
                self.layers[i].forget(workspace=False)
            if i not in pending or i < lowest:  # keep stops the walk at its lowest layer
                continue
            layer, src = self.layers[i], self.sources[i]
            if i in keep:
                kept[i] = pending[i]
            b = taken.get(i)
            if b is not None and b not in keep and b not in dead and b >= lowest:
                handed = layer.handed_over()    # its batchnorm applied it: its derivative goes there too
                if handed is not None:
                    then[b], pending[b] = handed, pending.pop(i)
                    continue
            need_dx = any(j != INPUT and j not in dead for j in src) and i > lowest
            extra = {"then": then.pop(i)} if i in then else {}
            if need_dx and i in self._rows and self._rows[i] not in keep:
                extra["rows"] = True       # dx by rows, inside the 1x1 conv's backward (fusion.row_gradients)
            dx = layer.backward(pending.pop(i), ctx, need_dx=need_dx, **extra)
            if not need_dx:
                continue
            for j, d in zip(src, dx if layer.n_inputs is None else [dx]):
                if j != INPUT and j not in dead:
                    pending[j] = d if j not in pending else pending[j] + d  # never in place: d may be shared
        return kept

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def gradients(self, x, labels, loss, rngs=None, reduce=None):
        """Zero the gradients, forward, fused loss, finite check, backward -> (loss, probabilities).
        Raises Diverged when the loss is NaN or infinite: before backward on one thread; where
        parallel/threads.py says so, each thread runs its share of the batch through the whole
        network and its part of the loss, and the check follows their backward (before any
        optimizer step either way).
        rngs: {layer index: Generator} for the random layers (default: the model's own);
        reduce: batchnorm's sum over the processes sharing the batch (MPI), else None."""
        self._plans.pop(None, None)   # the parameters are about to change: no folded copies kept meanwhile
        plan = self.frozen_plan()
        self.zero_grad()
        ctx = self.context(training=True, rngs=rngs, reduce=reduce)
        if self.shards.usable(len(x), ctx):
            return self.shards.gradients(x, labels, loss, _check_finite, ctx, plan)
        value, dlogits, probs = loss(self.forward(x, ctx=ctx, plan=plan), labels)
        value = loss.finish(value, probs, labels)
        _check_finite(value)
        self.backward(dlogits, ctx=ctx)
        return value, probs

    def train_step(self, x, labels, loss, optimizer, gradients_ready=None, rngs=None, reduce=None):
        """The one training step -> (loss, probabilities). `gradients_ready(model)` is called at
        the point where the batch's gradients are complete, before the optimizer reads them:
        the place for an all-reduce across processes, clipping or accumulation. The optimizer
        is handed the gradient arrays the layers hold now, so an array replaced after it was
        built (a view of MPI's flat buffer) is the one it reads."""
        value, probs = self.gradients(x, labels, loss, rngs, reduce)
        if gradients_ready is not None:
            gradients_ready(self)
        optimizer.step(self.trainable_params())
        return value, probs

    def step_tiles(self):
        """{layer index: its Winograd filter tiles for this step's parameters} (Layer.step_tiles),
        made once per step and handed to every shard in ctx.tiles."""
        return {i: t for i, t in ((i, layer.step_tiles()) for i, layer in enumerate(self.layers)) if t is not None}

    def frozen_plan(self):
        """The inference plan of the layers no training step's backward reaches (freeze's dead
        layers: frozen, in inference mode), folded among themselves: a frozen backbone's convs take
        its batchnorm and activation as predict's do, and its Winograd filters are transformed once,
        not every step."""
        return self.inference_plan(within=self._dead) if self._dead else {}

    def inference_plan(self, within=None):
        """fusion.fold(within)'s plan, kept between evaluations until what it folds changes: each call compares
        the conv and batchnorm arrays, and the activation settings, with the copies kept beside the
        plan (exact equality, a fraction of folding's cost) and folds again only when one differs.
        A training step drops it (gradients), so that it holds no memory while the model trains.
        Measured, batch 64, 2 threads, predict_proba images/s: ResNet-20 3,901-3,941 -> 4,086-4,193
        (folding took 0.74 ms a call), VGG-CIFAR 6,200 -> 6,855."""
        settings = [(layer.kind, getattr(layer, "activation", None), getattr(layer, "alpha", None),
                     getattr(layer, "eps", None)) for layer in self.layers]

        def folded(plan):      # the arrays the plan was made from (which layers: the settings decide)
            return [a for i in sorted(plan) for a in (*self.layers[i].params.values(), *self.layers[i].buffers.values())]

        kept = self._plans.get(within)
        if kept is not None and kept[0] == settings:
            arrays = folded(kept[2])
            if len(arrays) == len(kept[1]) and all(a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
                                                   for a, b in zip(arrays, kept[1])):
                return kept[2]
        plan = fold(self, within)
        self._plans[within] = (settings, [a.copy() for a in folded(plan)], plan)
        return plan

    def evaluate(self, batches, views=1, temperature=1.0):
        """The one evaluation, in inference mode: train's validation, `evaluate` and `predict` all
        call it. batches: (x, labels or None) pairs -> (probabilities (N, K), mean loss or None).
        temperature: the logits are divided by it first (a calibrated checkpoint's T).
        The loss is the head's plain cross-entropy (no label smoothing, no class weights).
        views > 1 (test-time augmentation): each x holds `views` versions of its B images, view
        after view ((V B, ...)); their probabilities are averaged, p = mean_v p_v, and the loss is
        -log p[label], computed as logsumexp_v(log p_v) - log V."""
        loss = Loss(self.head)
        probs, total, seen = [], 0.0, 0
        plan = self.inference_plan()
        for x, labels in batches:
            split = self.shards.usable(len(x), self.context())
            logits = self.shards.forward(x, plan) if split else self.forward(x, training=False, plan=plan)
            if temperature != 1.0:
                logits = logits / logits.dtype.type(temperature)
            if views > 1 and self.head == "multilabel":   # p = mean_v p_v per label; BCE of the means
                p = loss.probabilities(logits).reshape(views, -1, logits.shape[1]).mean(axis=0)
                probs.append(p)
                if labels is not None:
                    total += _bce_of(p, labels) * len(labels)
                    seen += len(labels)
                continue
            if views > 1:
                log_p = _mean_of_views(loss.log_probabilities(logits), views)
                probs.append(np.exp(log_p))
                if labels is not None:
                    total -= float(log_p[np.arange(len(labels)), labels].astype(np.float64).sum())
                    seen += len(labels)
                continue
            if labels is None:
                probs.append(loss.probabilities(logits))
                continue
            value, _, p = loss(logits, labels)
            probs.append(p)
            total += value * len(labels)
            seen += len(labels)
        out = np.concatenate(probs) if probs else np.zeros((0, self.n_classes), self.dtype)
        return out, (total / seen if seen else None)

    def predict_proba(self, x):
        """(N, H, W, C) -> class probabilities (N, n_classes), inference mode."""
        return self.evaluate([(x, None)])[0]

    # --- the boundary layout ---
    def state_dict(self):
        """{'layers.<i>.<name>': array} in the PyTorch / ONNX layout."""
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.export().items()}

    def load_state_dict(self, arrays):
        for i, layer in enumerate(self.layers):
            names = list(layer.param_shapes()) + list(layer.buffer_shapes())
            layer.load({k: arrays[f"layers.{i}.{k}"] for k in names})


def frozen_contexts(ctx):
    """A training step's ctx -> the contexts its frozen layers get: {False: inference, keeping
    nothing (no backward reaches them), True: inference keeping what backward needs (a trainable
    layer lies below)}. Outside training (or with nothing frozen) there are none to give."""
    if not ctx.training or not ctx.frozen:
        return {}
    return {False: ctx.but(training=False, record=False), True: ctx.but(training=False, record=True)}


def _check_finite(loss):
    if not math.isfinite(loss):
        raise Diverged(loss)


def _bce_of(p, t):
    """Mean binary cross-entropy of probabilities p (N, K) against targets t (N, K)."""
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    t = np.asarray(t, np.float64)
    return float(-(t * np.log(p) + (1 - t) * np.log1p(-p)).mean())


def _mean_of_views(log_p, views):
    """(V B, K) log-probabilities, view after view -> (B, K) log of their mean over the V views."""
    lp = log_p.reshape(views, -1, log_p.shape[1])
    top = lp.max(axis=0)
    return top + np.log(np.exp(lp - top).sum(axis=0)) - log_p.dtype.type(math.log(views))


__all__ = ["Model", "SpecError", "Diverged", "build_layer", "INPUT"]
