"""Reading a config file: YAML -> a raw dict, --set overrides applied to it, and the checks and
messages every part of a config shares (ConfigError, did_you_mean, check_keys, numbers as YAML 1.1
reads them)."""

import difflib
import math
import re
from pathlib import Path

import yaml

from ..errors import CnnError


class ConfigError(CnnError):
    pass


# --- YAML -------------------------------------------------------------------------------

def read_yaml(path):
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file: check the path, or write a starter config with "
                          "`cnncli init DIR --data DATA_FOLDER`")
    if path.is_dir():
        images = any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())
        hint = (f" (to train on the images in it, write a config first: cnncli init DIR --data {path})"
                if images else "")
        raise ConfigError(f"{path}: is a folder; give a YAML file{hint}")
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
        node, parent_key, node_list = raw, None, None
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


# A number in scientific notation that YAML 1.1 (PyYAML) leaves as text: 1e-5 (no dot), 1.5e3
# (no sign in the exponent). Only these: 'nan', 'inf' or a quoted '0.5' stay text, as the file says.
YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def as_number(value):
    """The one rule for numbers YAML 1.1 reads as text: '1e-5' -> 1e-05; anything else unchanged."""
    if isinstance(value, str) and YAML11_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def yaml11_numbers(value):
    """as_number on a value and on the items of a list (a layer's argument)."""
    if isinstance(value, list):
        return [yaml11_numbers(v) for v in value]
    return as_number(value)
