"""A training config's data: folders scanned, decoded through the cache, split, normalised."""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import CnnError
from .batches import Batches, channel_stats
from .cache import decode_folder, describe_conversions, merge_conversions
from .decode import COLOR_RULE, RESIZE_RULE
from .folder import scan
from .labels import is_label_file, read_table, to_listing
from .multilabel import describe, read_sets
from .multilabel import to_listing as ml_listing


@dataclass
class Prepared:
    classes: list
    train: Batches
    val: Batches = None
    mean: list = None
    std: list = None
    skipped: list = field(default_factory=list)    # [(path, reason)]
    warnings: list = field(default_factory=list)
    decoded_from_cache: bool = False
    converted: str = None   # one line on what decoding changed (sizes, colour), or None
    data_files: dict = field(default_factory=dict)  # {'train' | 'val': label file's path, rows, sha256}
    multilabel: str = None  # multi-label data: one line on how it was read (labels: (N, K) targets)
    keys: dict = field(default_factory=dict)   # {'train' | 'val': the decode cache key of its images array}

    def preprocessing(self, input_shape, resize):
        h, w, c = input_shape
        return {"input": [h, w, c], "channels": c, "mean": list(self.mean), "std": list(self.std),
                "resize": resize, "resize_rule": RESIZE_RULE[resize], "color_rule": COLOR_RULE,
                "scale": "x = (pixel / 255 - mean) / std",
                **({"data_files": self.data_files} if self.data_files else {})}


def stratified_split(labels, fraction, seed):
    """-> (train indices, val indices): each class gives round(fraction * n) images (at least one
    when it has two or more) to validation, chosen by a generator seeded from `seed`."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val += list(idx[:n_val])
        train += list(idx[n_val:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def _sources(cfg, multilabel=False):
    """data.train and data.val -> (train Listing, val Listing or None, {role: label file record},
    multi-label (train MultiListing, val MultiListing or None, one line) or None).
    A label file with a split column gives its train rows to training and, without data.val, its
    val rows (if any) to validation. multilabel: the model has K sigmoid outputs."""
    d = cfg.data
    columns = dataclasses.asdict(d.columns)
    _check_head(cfg, multilabel)
    if is_label_file(d.train):
        sets = read_sets(d.train, columns, d.label_separator, "multilabel" if multilabel else d.head)
        if sets is not None:
            return _multilabel_sources(cfg, sets, columns)
    if is_label_file(d.train):
        table = read_table(d.train, columns)
        listing = to_listing(table, split="train" if table.has_split else None)
    else:
        table, listing = None, scan(d.train, role="train")
    records = {"train": table.record()} if table else {}
    vlist = None
    if d.val and is_label_file(d.val):
        vtable = read_table(d.val, columns)
        vlist = to_listing(vtable, listing.classes, "val" if vtable.has_split else None, role="val")
        records["val"] = vtable.record()
    elif d.val:
        vlist = scan(d.val, classes=listing.classes, role="val")
    elif table and table.has_split and any(r.split == "val" for r in table.rows):
        vlist = to_listing(table, listing.classes, "val", role="val")
        records["val"] = records["train"]
    return listing, vlist, records, None


def _check_head(cfg, multilabel):
    """data.head must agree with the data and the model: it is never silently overridden."""
    d = cfg.data
    if d.head == "multilabel" and not is_label_file(d.train):
        raise CnnError(f"{cfg.source}: data.head is multilabel but data.train {d.train} is a folder of classes "
                       "(one label per image): give a label file (.csv, .tsv, .jsonl) or set data.head: auto")
    if d.head == "single" and multilabel:
        raise CnnError(f"{cfg.source}: data.head is single but the model ends in K sigmoid units (multi-label): "
                       "set data.head: multilabel (or auto), or end the last layer in softmax")


def _multilabel_sources(cfg, sets, columns):
    """_sources for a multi-label training file; data.val must be a label file too."""
    d = cfg.data
    train = ml_listing(sets, split="train" if sets.has_split else None)
    records, val = {"train": sets.record()}, None
    if d.val and not is_label_file(d.val):
        raise CnnError(f"{cfg.source}: data.train {d.train} is multi-label: data.val must be a label file "
                       f"(.csv, .tsv, .jsonl) too, not the folder {d.val}")
    if d.val:
        vsets = read_sets(d.val, columns, d.label_separator, "multilabel")
        val = ml_listing(vsets, train.listing.classes, "val" if vsets.has_split else None, role="val")
        records["val"] = vsets.record()
    elif sets.has_split and any(r[2] == "val" for r in sets.rows):
        val = ml_listing(sets, train.listing.classes, "val", role="val")
        records["val"] = records["train"]
    return train.listing, val and val.listing, records, (train, val, describe(sets, train))


def prepare(cfg, progress=None, multilabel=False):
    """RunConfig -> Prepared. `progress(role, done, total)` is called while decoding. multilabel:
    the model has K sigmoid outputs (its data is read as multi-label)."""
    d, t = cfg.data, cfg.train
    shape = cfg.model.input
    if shape[2] not in (1, 3):
        raise CnnError(f"{cfg.source}: the model's input has {shape[2]} channels; images load as 1 "
                       "(grayscale) or 3 (RGB): set input: [h, w, 1] or [h, w, 3]")
    if not d.train:
        raise CnnError(f"{cfg.source}: data.train is not set: give a folder with one sub-folder per class, "
                       "or a label file (.csv, .tsv, .jsonl)")
    listing, vlist, records, ml = _sources(cfg, multilabel)
    warnings = list(listing.warnings)

    def tick(role, total):
        return (lambda done: progress(role, done, total)) if progress else None

    dec = decode_folder(listing, shape, d.resize, d.cache_dir, d.workers, tick("train", len(listing.files)))
    skipped = listing.missing + list(dec.skipped)
    from_cache = dec.from_cache
    converted = [dec.converted]
    labels = ml[0].targets(dec.files) if ml else dec.labels
    present = set(np.flatnonzero(labels.sum(axis=0))) if ml else set(dec.labels.tolist())
    lost = [listing.classes[k] for k in range(len(listing.classes)) if k not in present]
    if lost and ml:
        warnings.append(f"label {lost[0]!r} has no readable training image: its output learns only 'absent'")
    elif lost:
        raise CnnError(f"class {lost[0]!r} in {d.train} has no readable images (all skipped; see the "
                       "skipped list): fix or remove them")
    if vlist is not None:
        warnings += vlist.warnings
        vdec = decode_folder(vlist, shape, d.resize, d.cache_dir, d.workers, tick("val", len(vlist.files)))
        skipped += vlist.missing + vdec.skipped
        from_cache = from_cache and vdec.from_cache
        converted.append(vdec.converted)
        train_idx = np.arange(len(dec.labels))
        val_images, val_idx, val_key = vdec.images, np.arange(len(vdec.labels)), vdec.key
        val_labels = ml[1].targets(vdec.files) if ml else vdec.labels
        if len(val_idx) == 0:
            warnings.append(f"the validation data {vlist.root} has no readable images: training without validation")
    else:
        train_idx, val_idx = stratified_split(dec.labels, d.val_split, t.seed)
        val_images, val_labels, val_key = dec.images, labels, dec.key
    if len(train_idx) == 0:
        raise CnnError(f"{d.train}: no readable training images")
    mean, std = _normalisation(cfg, dec.images, train_idx)
    train = Batches(dec.images, labels, train_idx, mean, std, t.batch_size, d.augment)
    val = None
    if len(val_idx):
        val = Batches(val_images, val_labels, val_idx, mean, std, t.batch_size)  # same memory as training
        warnings += _no_val_positive(listing.classes, val_labels[val_idx]) if ml else []
    return Prepared(listing.classes, train, val, [float(m) for m in mean], [float(s) for s in std],
                    skipped, warnings, from_cache, describe_conversions(merge_conversions(*converted), shape),
                    records, ml[2] if ml else None, {"train": dec.key, "val": val_key})


def _no_val_positive(classes, targets):
    """Multi-label: the labels no validation image has, said once (left out of val_mAP, threshold 0.5)."""
    none = [c for c, n in zip(classes, targets.sum(axis=0)) if n == 0]
    return [f"label(s) {', '.join(none)} have no validation image: left out of val_mAP; their thresholds "
            "stay 0.5"] if none else []


def _normalisation(cfg, images, train_idx):
    """data.mean / data.std, each from the training images where not given."""
    d, shape = cfg.data, cfg.model.input
    mean = _per_channel(d.mean, shape[2], "mean", cfg) if d.mean is not None else None
    std = _per_channel(d.std, shape[2], "std", cfg) if d.std is not None else None
    if std is not None and min(std) <= 0:
        raise CnnError(f"{cfg.source}: data.std must be positive, got {d.std}")
    if mean is None or std is None:  # what is not given comes from the training images
        m, s = channel_stats(images, train_idx)
        mean = m if mean is None else mean
        std = s if std is None else std
    return mean, std


def _per_channel(values, channels, key, cfg):
    if len(values) == channels:
        return np.array(values, np.float64)
    if len(values) == 1:
        return np.array(values * channels, np.float64)
    raise CnnError(f"{cfg.source}: data.{key} has {len(values)} values; the model has {channels} channel(s)")
