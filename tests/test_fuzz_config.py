"""Property-based fuzzing of configs: every input either validates or gets one clean ConfigError line.
Never another exception, never a hang."""

import os
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnncli import config
from cnncli.config import ConfigError
from cnncli.layers import ALIASES, LAYERS

KEYS = ["input", "layers", "model", "data", "train", "output", "filters", "size", "stride", "padding",
        "activation", "units", "rate", "bias", "alpha", "momentum", "eps", "fn", "epochs", "batch_size",
        "optimizer", "lr", "schedule", "val_split", "augment", "flip", "crop_padding", "mean", "std",
        "seed", "patience", "monitor", "betas", "resize", "warmup_epochs", "rotate", "scale", "ratio",
        "random_resized_crop", "cutout", "count", "mixup", "cutmix", "ema", "vflip", "shear", "translate"]
WORDS = list(LAYERS) + list(ALIASES) + ["same", "valid", "relu", "sgd", "adam", "cosine", "crop", "x", ""]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(WORDS),
    st.text(string.printable, max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS + WORDS), inner, max_size=5)), max_leaves=25)

layer = st.one_of(
    st.sampled_from(WORDS),
    st.builds(lambda k, v: {k: v}, st.sampled_from(list(LAYERS) + list(ALIASES) + ["conv2"]),
              st.one_of(st.none(), scalars, st.dictionaries(st.sampled_from(KEYS), values, max_size=4))))
architecture = st.fixed_dictionaries(
    {"input": st.one_of(st.lists(st.integers(-1, 40), min_size=0, max_size=4), values),
     "layers": st.one_of(st.lists(layer, max_size=8), values)})
training = st.fixed_dictionaries(
    {"model": st.one_of(architecture, values),
     "data": st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=4), values),
     "train": st.one_of(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), values)})

# Deterministic under CI (CI=true) so a red build always reproduces; random locally to keep finding new cases.
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=os.environ.get("CI") == "true")


def _one_clean_line(msg, path):
    """A config error as the user must see it: one line, naming the file or the --set item."""
    return bool(msg) and "\n" not in msg and (str(path) in msg or msg.startswith("--set"))


def _check(tmp_path, text, overrides=()):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        cfg = config.load(path, overrides)
    except ConfigError as e:
        msg = str(e)
        assert _one_clean_line(msg, path), msg
        return None
    # accepted: it must then describe a network whose shapes can be walked
    arch = cfg if isinstance(cfg, config.Architecture) else cfg.model
    arch.build(build_params=False)
    return cfg


@SETTINGS
@given(doc=st.one_of(architecture, training, values))
def test_fuzzed_documents(tmp_path_factory, doc):
    _check(tmp_path_factory.mktemp("f"), yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(text=st.text(string.printable + "ü€{}[]:-&*!|>%@`", max_size=200))
def test_fuzzed_text(tmp_path_factory, text):
    _check(tmp_path_factory.mktemp("t"), text)


@SETTINGS
@given(sets=st.lists(st.builds(lambda k, v: f"{k}={v}",
                               st.sampled_from(["train.lr", "train.epochs", "data.augment.flip", "model.layers.0",
                                                "model.layers.9.conv.size", "output", "train", "x.y.z", "",
                                                "model.input.1", "data.val_split", "model", "data.augment.scale",
                                                "data.augment.cutout", "data.augment.random_resized_crop.ratio",
                                                "train.ema", "data.augment.mixup"]),
                               st.sampled_from(["0.1", "1e-3", "-5", "[1, 2]", "{a: 1}", "", "true", "[", "null",
                                                "'x'", "nan", ".inf"])), max_size=4))
def test_fuzzed_overrides(tmp_path_factory, sets):
    doc = {"model": {"input": [8, 8, 1], "layers": [{"conv": {"filters": 2, "size": 3}}, "globalavgpool", "softmax"]},
           "train": {"epochs": 1}}
    _check(tmp_path_factory.mktemp("o"), yaml.safe_dump(doc), sets)


def test_deep_nesting_and_alias_bombs_are_clean(tmp_path):
    for text in ["[" * 5000 + "]" * 5000, "input: " + "[" * 3000 + "1" + "]" * 3000,
                 "a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n"
                 "d: &d [*c,*c,*c,*c,*c,*c,*c,*c]\nlayers: [*d,*d,*d,*d,*d,*d,*d,*d]\ninput: [8, 8, 1]\n"]:
        _check(tmp_path, text)


def test_the_message_check_refuses_two_lines_even_from_set(tmp_path):
    """`a and b and c or d` passed on d alone: a two-line message starting with --set got through."""
    path = tmp_path / "fuzz.yaml"
    assert _one_clean_line(f"{path}: train: 'lr' must be a number > 0, got -1", path)
    assert _one_clean_line("--set 'train.lr': expected KEY=VALUE, e.g. --set train.lr=0.001", path)
    assert not _one_clean_line("--set 'train.lr': bad\nTraceback (most recent call last):", path)
    assert not _one_clean_line(f"{path}: bad\nsecond line", path)
    assert not _one_clean_line("train: 'lr' must be a number > 0, got -1", path)     # no file, no --set
