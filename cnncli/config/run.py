"""YAML -> validated, typed config objects. The only module that reads raw dicts.

Two kinds of file:
  architecture:  {input: [h, w, c], layers: [...]}
  training:      {model: PATH-or-architecture, data: {...}, train: {...}, output: PATH}
Every mistake raises ConfigError: one line naming the file, the key (and layer index), and the fix.
"""

import dataclasses
import difflib
import inspect as pyinspect
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import CnnError
from ..layers import ALIASES, LAYERS, WIRING
from ..engine.optim import SCHEDULES


class ConfigError(CnnError):
    pass


# --- YAML -------------------------------------------------------------------------------

def read_yaml(path):
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file: check the path, or write a starter config with "
                          "`cnncli init DIR --data DATA_FOLDER`")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e.__class__.__name__}): is it a YAML text file?") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config (thousands of [ or {{ levels)") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; see `cnncli init` for a starter config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (input:, layers:, or model:, data:, train:), "
                          f"got a {type(data).__name__}")
    return data


def apply_overrides(raw, overrides, where="--set"):
    """['train.lr=0.001', 'model.layers.8.units=10'] -> raw updated in place (YAML-typed values).

    Inside `layers`, an index picks a layer and the next key is one of its arguments (the layer's
    type may be named too: model.layers.0.conv.filters=8). Indices are those of the file's list
    (a block's use counts as one item)."""
    for item in overrides or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} {item!r}: expected KEY=VALUE, e.g. --set train.lr=0.001")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        except RecursionError:
            raise ConfigError(f"{where} {item!r}: the value is nested too deeply") from None
        parts = key.strip().split(".")
        node, parent_key = raw, None
        for i, part in enumerate(parts[:-1]):
            path = ".".join(parts[:i + 1])
            node = _child(node, part, path, where, item)
            if parent_key == "layers" and isinstance(node_list, list) and isinstance(node, (dict, str)):
                # a layer item: into its arguments
                node = _layer_args(node_list, int(part), parts[i + 1], path, where, item)
            node_list, parent_key = node, part
        last = parts[-1]
        if isinstance(node, list):
            node[_index(node, last, key, where, item)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{where} {item!r}: {'.'.join(parts[:-1])!r} is not a mapping")
    return raw


def _layer_args(layers, index, next_part, path, where, item):
    """The arguments mapping of layers[index] (a bare '- flatten' becomes '- flatten: {}'), or the
    item itself when the next key names the layer's type."""
    layer = layers[index]
    if isinstance(layer, str):
        layer = layers[index] = {layer: {}}
    if len(layer) != 1:
        return layer
    (kind, args), = layer.items()
    if next_part == kind:
        return layer
    if args is None:
        args = layer[kind] = {}
    if not isinstance(args, dict):
        raise ConfigError(f"{where} {item!r}: {path} ({kind}) is written in short form; write it as a "
                          f"mapping (- {kind}: {{...}}) to set its keys")
    return args


def _index(node, part, path, where, item):
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{where} {item!r}: {path!r} needs a list index below {len(node)}")
    return int(part)


def _child(node, part, path, where, item):
    if isinstance(node, list):
        return node[_index(node, part, path, where, item)]
    if not isinstance(node, dict):
        raise ConfigError(f"{where} {item!r}: {path!r} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


# --- checks -------------------------------------------------------------------------------

# Names users bring from Keras and PyTorch, lower-cased without '_' -> ours, first that applies.
FOREIGN = {
    "conv2d": ["conv"], "convolution2d": ["conv"], "maxpooling2d": ["maxpool"], "maxpool2d": ["maxpool"],
    "averagepooling2d": ["avgpool"], "avgpool2d": ["avgpool"], "globalaveragepooling2d": ["globalavgpool"],
    "adaptiveavgpool2d": ["globalavgpool"], "globalmaxpooling2d": ["globalmaxpool"],
    "adaptivemaxpool2d": ["globalmaxpool"], "linear": ["dense"], "fc": ["dense"],
    "batchnormalization": ["batchnorm"], "batchnorm2d": ["batchnorm"], "batchnorm1d": ["batchnorm"],
    "leakyrelu": ["leaky_relu"], "concatenate": ["concat"], "cat": ["concat"], "sum": ["add"],
    "kernelsize": ["size"], "kernel": ["size"], "poolsize": ["size"], "strides": ["stride"],
    "units": ["filters"], "filters": ["units"], "outchannels": ["filters"], "outfeatures": ["units"],
    "usebias": ["bias"], "p": ["rate"], "dropout": ["rate"], "negativeslope": ["alpha"], "epsilon": ["eps"],
    "learningrate": ["lr"], "batch": ["batch_size"], "numepochs": ["epochs"], "nepochs": ["epochs"],
    "maxepochs": ["epochs"], "validationsplit": ["val_split"], "optim": ["optimizer"],
    "scheduler": ["schedule"], "lrscheduler": ["schedule"], "decay": ["weight_decay"], "wd": ["weight_decay"],
    "labelsmoothing": ["label_smoothing"], "classweight": ["class_weights"],
    "randomseed": ["seed"], "earlystoppingpatience": ["patience"], "nesterovmomentum": ["nesterov"],
    "hflip": ["flip"], "horizontalflip": ["flip"], "randomhorizontalflip": ["flip"], "verticalflip": ["vflip"],
    "randomverticalflip": ["vflip"], "rotation": ["rotate"], "degrees": ["rotate"], "randomrotation": ["rotate"],
    "randomresizedcrop": ["random_resized_crop"], "randomerasing": ["cutout"], "erasing": ["cutout"],
    "emadecay": ["ema"], "modelema": ["ema"], "movingaverage": ["ema"], "randomaffine": ["rotate"],
}


def did_you_mean(word, choices):
    """' (did you mean 'x'?)' for a misspelling, a wrong case, or a Keras / PyTorch name."""
    choices = list(choices)
    w = str(word)
    flat = w.lower().replace("_", "")
    for name in [c for c in choices if c.lower() == w.lower()] + FOREIGN.get(flat, []):
        if name in choices:
            return f" (did you mean '{name}'?)"
    close = difflib.get_close_matches(w, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(mapping, allowed, where):
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; "
                              f"allowed: {', '.join(allowed)}")


def _type_error(where, key, want, value):
    return ConfigError(f"{where}: '{key}' must be {want}, got {value!r}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- the architecture ---------------------------------------------------------------------

@dataclass
class Architecture:
    input: tuple            # (h, w, c)
    layers: list            # [(type, args)]: blocks expanded, aliases resolved, args validated
    source: str = "<inline>"
    origins: list = None    # per layer: None, or the block use it came from (for error lines)

    def to_dict(self):
        return {"input": list(self.input), "layers": [{k: dict(a)} for k, a in self.layers]}

    def build(self, seed=0, build_params=True, init=True):
        """-> Model; raises ConfigError naming the layer (or saying it does not fit in memory).
        init=False allocates zeros, for weights about to be loaded from a checkpoint."""
        from ..model import Model, SpecError
        try:
            return Model(self.input, self.layers, seed=seed, build_params=build_params, init=init)
        except SpecError as e:
            raise ConfigError(self._where(e.index, e.key) + f": {e}") from None
        except MemoryError:
            model = Model(self.input, self.layers, build_params=False)
            raise ConfigError(f"{self.source}: the network's {model.n_params():,} parameters "
                              f"({model.n_params() * 4 / 1e9:.1f} GB) do not fit in memory: "
                              "shrink the input or the dense layers") from None

    def _where(self, index, key=None):
        if index is None:
            return self.source
        kind = self.layers[index][0]
        origin = self.origins[index] if self.origins else None
        return (f"{self.source}: layers[{index}] ({kind}" + (f", '{key}'" if key else "")
                + (f", {origin}" if origin else "") + ")")


def parse_architecture(raw, source):
    check_keys(raw, ("input", "layers", "blocks"), source)
    if "input" not in raw:
        raise ConfigError(f"{source}: missing 'input': give the image size as [height, width, channels], e.g. [28, 28, 1]")
    if "layers" not in raw:
        raise ConfigError(f"{source}: missing 'layers': list the layers, e.g. - conv: {{filters: 8, size: 3}}")
    inp = raw["input"]
    if not (isinstance(inp, list) and len(inp) == 3 and all(is_int(v) and v > 0 for v in inp)):
        raise ConfigError(f"{source}: 'input' must be [height, width, channels] of positive integers, got {inp!r}")
    layers = raw["layers"]
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{source}: 'layers' must be a non-empty list, got {layers!r}")
    items, origins = expand_blocks(layers, raw.get("blocks"), source)
    specs = [_parse_layer(item, i, source, origin) for i, (item, origin) in enumerate(zip(items, origins))]
    arch = Architecture(tuple(inp), specs, source, origins if any(origins) else None)
    arch.build(build_params=False)  # wiring and shapes: a bad 'from', a filter larger than its input...
    return arch


def _split_item(item, where):
    """A list item of 'layers' -> (type, args): '- flatten', '- conv: {...}', '- dropout: 0.5'."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and len(item) == 1:
        (kind, args), = item.items()
        if not isinstance(kind, str):
            raise ConfigError(f"{where}: the layer type must be a name, got {kind!r}")
        return kind, {} if args is None else args
    raise ConfigError(f"{where}: write a layer as '- flatten' or '- conv: {{filters: 8, size: 3}}' "
                      f"(one type per list item), got {item!r}")


def _parse_layer(item, index, source, origin=None):
    where = f"{source}: layers[{index}]"
    kind, args = _split_item(item, where + (f" ({origin})" if origin else ""))
    names = list(LAYERS) + list(ALIASES)
    if kind not in names:
        raise ConfigError(f"{where}: unknown layer type {kind!r}{did_you_mean(kind, names)}; "
                          f"known: {', '.join(LAYERS)} (and {', '.join(ALIASES)} as short for activation)")
    def label(key=None):
        return f"{where} ({kind}" + (f", '{key}'" if key else "") + (f", {origin}" if origin else "") + ")"
    real, preset = ALIASES.get(kind, (kind, {}))
    cls = LAYERS[real]
    params = [p for p in pyinspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.name not in preset]
    if not isinstance(args, dict):
        if not params:
            raise ConfigError(f"{label()}: takes no arguments, got {args!r}")
        args = {params[0].name: args}   # '- activation: relu', '- dropout: 0.5', '- dense: 10'
    allowed = [p.name for p in params] + list(WIRING)
    check_keys(args, allowed, label())
    args = {k: (v if k in WIRING else yaml11_numbers(v)) for k, v in args.items()}
    required = [p.name for p in params if p.default is pyinspect.Parameter.empty]
    for name in required:
        if name not in args:
            raise ConfigError(f"{label()}: missing '{name}'")
    try:
        cls(**{**preset, **{k: v for k, v in args.items() if k not in WIRING}})  # argument checks
    except Exception as e:  # LayerError carries the key
        key = getattr(e, "key", None)
        raise ConfigError(f"{label(key)}: {e}") from None
    return real, {**preset, **args}


YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def yaml11_numbers(value):
    """YAML 1.1 (PyYAML) reads 1e-5 (no dot) as text; users mean a number: '1e-5' -> 1e-05."""
    if isinstance(value, str) and YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [yaml11_numbers(v) for v in value]
    return value


# --- blocks: a list of layers defined once and used like a layer type --------------------

def expand_blocks(layers, blocks, source):
    """Replace each use of a block by its layers -> (items, origins).

    blocks: {name: [layer, ...]}. Inside a block, a value written "$p" is a parameter, given
    where the block is used: `- basic: {filters: 32, repeat: 3, name: stage1}` (repeat: how many
    copies in a row, default 1; name: names the block's output, its last layer). Offsets in
    `from` are relative, so -1 inside a block's first layer is the layer before the block; a
    `name` inside a block is local to each copy and becomes '<block><copy>.<name>' (basic2.in).
    """
    if blocks is None:
        return list(layers), [None] * len(layers)
    if not isinstance(blocks, dict):
        raise ConfigError(f"{source}: 'blocks' must map block names to lists of layers, got {blocks!r}")
    for bname, body in blocks.items():
        if not isinstance(body, list) or not body:
            raise ConfigError(f"{source}: blocks.{bname} must be a non-empty list of layers, got {body!r}")
        if bname in LAYERS or bname in ALIASES:
            raise ConfigError(f"{source}: blocks.{bname}: '{bname}' is a layer type; give the block another name")
    items, origins, copies = [], [], {}
    for i, item in enumerate(layers):
        kind, args = _split_item(item, f"{source}: layers[{i}]")
        if kind not in blocks:
            items.append(item)
            origins.append(None)
            continue
        where = f"{source}: layers[{i}] (block {kind})"
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: give the block's parameters as a mapping, e.g. "
                              f"- {kind}: {{repeat: 2}}; got {args!r}")
        args = dict(args)
        repeat = args.pop("repeat", 1)
        if not is_int(repeat) or repeat < 1:
            raise _type_error(where, "repeat", "an integer >= 1", repeat)
        out_name = args.pop("name", None)
        wanted = sorted(_block_params(blocks[kind]))
        for key in args:
            if key not in wanted:
                raise ConfigError(f"{where}: unknown parameter {key!r}{did_you_mean(key, wanted)}; "
                                  f"the block's parameters: {', '.join(wanted) or 'none'}, and repeat, name")
        for key in wanted:
            if key not in args:
                raise ConfigError(f"{where}: missing parameter '{key}' (written ${key} in blocks.{kind})")
        for r in range(repeat):
            copies[kind] = copies.get(kind, 0) + 1
            body = _instantiate(blocks[kind], args, f"{kind}{copies[kind]}", f"{where} ")
            if out_name is not None and r == repeat - 1:
                body[-1] = _with_name(body[-1], out_name, where)
            items += body
            origins += [f"block {kind} at layers[{i}] of the file" + (f", copy {r + 1}" if repeat > 1 else "")] * len(body)
    return items, origins


def _block_params(value):
    """The $names used anywhere in a block."""
    if isinstance(value, str) and value.startswith("$"):
        return {value[1:]}
    if isinstance(value, list):
        return set().union(*(_block_params(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_block_params(v) for v in value.values())) if value else set()
    return set()


def _fill(value, params, local):
    """Substitute $parameters; rename local names (in 'name' and 'from')."""
    if isinstance(value, str) and value.startswith("$"):
        return params[value[1:]]
    if isinstance(value, list):
        return [_fill(v, params, local) for v in value]
    if isinstance(value, dict):
        out = {k: _fill(v, params, local) for k, v in value.items()}
        for key in ("name", "from"):
            if key in out:
                ref = out[key]
                out[key] = [local.get(r, r) if isinstance(r, str) else r for r in ref] if isinstance(ref, list) \
                    else local.get(ref, ref) if isinstance(ref, str) else ref
        return out
    return value


def _instantiate(body, params, copy, where):
    local = {}
    for item in body:
        if isinstance(item, dict) and len(item) == 1:
            args = next(iter(item.values()))
            if isinstance(args, dict) and isinstance(args.get("name"), str):
                local[args["name"]] = f"{copy}.{args['name']}"
    return [_fill(item, params, local) for item in body]


def _with_name(item, name, where):
    kind, args = _split_item(item, where)
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: the block's last layer must be written as a mapping to take 'name'")
    return {kind: {**args, "name": name}}


def resolved_yaml(d):
    """YAML of a resolved config (architecture or training): blocks expanded, each layer on one
    line followed by its final index, the index that 'from', checkpoints and errors use (--set
    model.layers.N counts the file's own list, where a block's use is one item)."""
    arch = d["model"] if "model" in d else d
    marker = "@@LAYERS@@"
    text = yaml.safe_dump({**d, "model": {**arch, "layers": marker}} if "model" in d
                          else {**d, "layers": marker}, sort_keys=False)
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("layers:") and marker in line:
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(f"{indent}layers:")
            for i, item in enumerate(arch["layers"]):
                flow = yaml.safe_dump(item, default_flow_style=True, width=10 ** 6, sort_keys=False).strip()
                lines.append(f"{indent}- {flow}  # {i}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def load_architecture(path):
    path = Path(path)
    return parse_architecture(read_yaml(path), str(path))


# --- the training config ------------------------------------------------------------------

def as_number(value):
    """YAML 1.1 reads 1e-3 (no dot) as text; users mean a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check(where, key, value, kind, **opt):
    """One typed value. kind: int | number | bool | str | path | choice | floats."""
    if kind == "number":
        value = as_number(value)
    elif kind in ("floats", "range") and isinstance(value, list):
        value = [as_number(v) for v in value]
    if kind == "int":
        lo = opt.get("min", 1)
        if not is_int(value) or value < lo:
            raise _type_error(where, key, f"an integer >= {lo}", value)
    elif kind == "number":
        lo, hi, closed = opt.get("min", 0.0), opt.get("max"), opt.get("closed")
        ok = is_number(value) and (value > lo if opt.get("open") else value >= lo) and (
            hi is None or (value <= hi if closed else value < hi))
        if not ok:
            rng = f"> {lo}" if opt.get("open") else f">= {lo}"
            top = f" and {'<=' if closed else '<'} {hi}" if hi is not None else ""
            raise _type_error(where, key, f"a number {rng}{top}", value)
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise _type_error(where, key, "true or false", value)
    elif kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise _type_error(where, key, "a text value" if kind == "str" else "a path", value)
    elif kind == "choice":
        if value not in opt["choices"]:
            raise ConfigError(f"{where}: '{key}' must be one of {', '.join(opt['choices'])}, got {value!r}"
                              f"{did_you_mean(value, opt['choices'])}")
    elif kind == "weights":
        value = [as_number(v) for v in value] if isinstance(value, list) else value
        if value != "auto" and not (isinstance(value, list) and value and all(is_number(v) and v > 0 for v in value)):
            raise _type_error(where, key, "'auto' or a list of positive numbers, one per class", value)
        if isinstance(value, list):
            value = [float(v) for v in value]
    elif kind == "floats":
        n, lo, hi = opt["n"], opt.get("min"), opt.get("max")
        ok = isinstance(value, list) and len(value) in n and all(is_number(v) for v in value)
        if ok and lo is not None:
            ok = all(lo <= v < hi for v in value)
        if not ok:
            bounds = f" in [{lo}, {hi})" if lo is not None else ""
            raise _type_error(where, key, f"a list of {' or '.join(map(str, n))} numbers{bounds}", value)
        value = [float(v) for v in value]
    elif kind == "range":
        lo, hi = opt["min"], opt["max"]
        ok = (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)
              and lo < value[0] <= value[1] <= hi)
        if not ok:
            raise _type_error(where, key, f"[low, high] with {lo} < low <= high <= {hi:g}", value)
        value = [float(v) for v in value]
    return value


@dataclass
class RandomResizedCrop:
    """A crop of a random share of the area (scale) and aspect ratio (ratio), resized to the input.
    The defaults, [1, 1] and [1, 1], crop the whole image: off."""
    scale: list = field(default_factory=lambda: [1.0, 1.0])
    ratio: list = field(default_factory=lambda: [1.0, 1.0])

    SPEC = {"scale": ("range", {"min": 0.0, "max": 1.0}), "ratio": ("range", {"min": 0.0, "max": 10.0})}


@dataclass
class Cutout:
    """`count` squares of `size` x `size` pixels erased to the mean (random erasing); size 0: off."""
    size: int = 0
    count: int = 1

    SPEC = {"size": ("int", {"min": 0}), "count": ("int", {"min": 1})}


@dataclass
class Augment:
    """Training-time augmentation, each key off by default, each drawn per image from the epoch's
    generator (the geometric ones compose into one affine warp per image)."""
    flip: bool = False
    vflip: bool = False
    crop_padding: int = 0
    rotate: float = 0.0
    scale: list = field(default_factory=lambda: [1.0, 1.0])
    translate: float = 0.0
    shear: float = 0.0
    random_resized_crop: RandomResizedCrop = field(default_factory=RandomResizedCrop)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    cutout: Cutout = field(default_factory=Cutout)
    mixup: float = 0.0
    cutmix: float = 0.0

    SPEC = {"flip": ("bool",), "vflip": ("bool",), "crop_padding": ("int", {"min": 0}),
            "rotate": ("number", {"max": 180.0, "closed": True}), "scale": ("range", {"min": 0.0, "max": 10.0}),
            "translate": ("number", {"max": 1.0}), "shear": ("number", {"max": 80.0, "closed": True}),
            "random_resized_crop": ("section", RandomResizedCrop), "brightness": ("number", {"max": 1.0}),
            "contrast": ("number", {"max": 1.0}), "saturation": ("number", {"max": 1.0, "closed": True}),
            "cutout": ("section", Cutout), "mixup": ("number", {"max": 100.0, "closed": True}),
            "cutmix": ("number", {"max": 100.0, "closed": True})}


@dataclass
class Data:
    train: str = None
    val: str = None
    val_split: float = 0.1
    resize: str = "stretch"
    mean: list = None
    std: list = None
    augment: Augment = field(default_factory=Augment)
    cache_dir: str = None
    workers: int = None

    SPEC = {"train": ("path",), "val": ("path",), "val_split": ("number", {"max": 1.0}),
            "resize": ("choice", {"choices": ("stretch", "crop")}),
            "mean": ("floats", {"n": (1, 3)}), "std": ("floats", {"n": (1, 3)}),
            "augment": ("section", Augment), "cache_dir": ("path",), "workers": ("int",)}


@dataclass
class Train:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.9
    nesterov: bool = False
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    shuffle: bool = True
    seed: int = 0
    patience: int = None
    monitor: str = "val_acc"
    init: str = None
    class_weights: object = None   # None | "auto" | [one weight per class]
    ema: float = 0.0               # decay of the weights' moving average; 0: off

    SPEC = {"epochs": ("int",), "batch_size": ("int",),
            "optimizer": ("choice", {"choices": ("sgd", "adam", "adamw")}),
            "lr": ("number", {"open": True}), "momentum": ("number", {"max": 1.0}),
            "nesterov": ("bool",), "betas": ("floats", {"n": (2,), "min": 0.0, "max": 1.0}),
            "weight_decay": ("number",), "schedule": ("choice", {"choices": SCHEDULES}),
            "warmup_epochs": ("number",), "step_size": ("int",), "gamma": ("number", {"open": True}),
            "min_lr": ("number",), "label_smoothing": ("number", {"max": 1.0}), "shuffle": ("bool",),
            "seed": ("int", {"min": 0}), "patience": ("int",),
            "monitor": ("choice", {"choices": ("val_acc", "val_loss")}), "init": ("path",),
            "class_weights": ("weights",), "ema": ("number", {"max": 1.0})}


def parse_section(cls, raw, where):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of keys, got {raw!r}")
    check_keys(raw, list(cls.SPEC), where)
    values = {}
    for key, value in raw.items():
        kind, *opt = cls.SPEC[key]
        if kind == "section":
            values[key] = parse_section(opt[0], value, f"{where}.{key}")
        elif value is not None:
            values[key] = _check(where, key, value, kind, **(opt[0] if opt else {}))
    return cls(**values)


def section_dict(obj):
    return {f.name: (section_dict(v) if dataclasses.is_dataclass(v := getattr(obj, f.name)) else v)
            for f in dataclasses.fields(obj)}


@dataclass
class RunConfig:
    model: Architecture
    data: Data
    train: Train
    output: str
    source: str

    def to_dict(self):
        return {"model": self.model.to_dict(), "data": section_dict(self.data),
                "train": section_dict(self.train), "output": self.output}


def parse_run(raw, source, base_dir):
    """A training config (raw dict) -> RunConfig.

    A model path is relative to the config file (base_dir); data, init and output paths are
    relative to the working directory, as in the shell the user types them in."""
    check_keys(raw, ("model", "data", "train", "output"), source)
    model = raw.get("model")
    if model is None:
        raise ConfigError(f"{source}: missing 'model': a path to an architecture file, "
                          "or the architecture inline (input:, layers:)")
    if isinstance(model, str):
        model_path = _resolve(model, base_dir)
        if not model.strip() or not model_path.exists():
            raise ConfigError(f"{source}: 'model': no such file {model!r}: give an architecture file")
        if model_path.is_dir():
            raise ConfigError(f"{source}: 'model': {model_path} is a folder: give an architecture file")
        arch = load_architecture(model_path)
    elif isinstance(model, dict):
        arch = parse_architecture(model, f"{source}: model")
    else:
        raise ConfigError(f"{source}: 'model' must be a path or a mapping with input: and layers:, got {model!r}")
    data = parse_section(Data, raw.get("data"), f"{source}: data")
    train = parse_section(Train, raw.get("train"), f"{source}: train")
    for key in ("train", "val", "cache_dir"):
        if getattr(data, key):
            setattr(data, key, str(_resolve(getattr(data, key), Path.cwd())))
    if train.init:
        train.init = str(_resolve(train.init, Path.cwd()))
    output = raw.get("output")
    if output is None:
        output = f"runs/{Path(source).stem}"
    elif not isinstance(output, str) or not output:
        raise ConfigError(f"{source}: 'output' must be a folder path, got {output!r}")
    return RunConfig(arch, data, train, os.path.normpath(output), source)


def _resolve(p, base_dir):
    """A path as the user wrote it, relative to base_dir, normalised for messages (no a/../b;
    symlinks left alone)."""
    p = Path(p).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else Path(base_dir) / p))


def is_architecture(raw):
    return "layers" in raw or "input" in raw


def load(path, overrides=()):
    """Read an architecture or training file -> Architecture or RunConfig (overrides applied)."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw.get("model"), str) and any(o.strip().startswith("model.") for o in overrides or ()):
        model_path = _resolve(raw["model"], path.parent)   # --set into a model file's layers: inline it
        if model_path.is_file():
            raw["model"] = read_yaml(model_path)
    raw = apply_overrides(raw, overrides)
    try:
        return _parse(raw, path)
    except ConfigError as e:
        if not overrides:
            raise
        try:                       # the file alone is fine: the mistake came in with --set
            _parse(read_yaml(path), path)
        except ConfigError:
            raise e from None
        raise from_overrides(e, overrides) from None


def from_overrides(error, overrides):
    """A config error that came in with --set, saying so: the items whose last key the message
    names (all of them when none does)."""
    named = [o for o in overrides if f"'{o.partition('=')[0].strip().split('.')[-1]}'" in str(error)]
    return ConfigError(f"{error} (with --set {' '.join(named or overrides)})")


def _parse(raw, path):
    if is_architecture(raw):
        return parse_architecture(raw, str(path))
    return parse_run(raw, str(path), path.parent)


def load_run(path, overrides=()):
    cfg = load(path, overrides)
    if isinstance(cfg, Architecture):
        raise ConfigError(f"{path}: this is an architecture file; training needs a training config "
                          "with model:, data: and train: (see `cnncli init`)")
    return cfg
