"""`cnncli init --data labels.csv`: a starter fitted to a label file, single- or multi-label, as
init.py fits one to a folder of classes (input size, colour, flip, epochs); its val rows, when
its split column has some, validate."""

from pathlib import Path

from ..errors import CnnError


def _listing(file):
    """-> (Listing of the training rows, multi-label description or None, has val rows)."""
    from ..data.labels import list_data
    from ..data.multilabel import describe, read_sets, to_listing

    sets = read_sets(file)
    if sets is not None:
        ml = to_listing(sets, split="train" if sets.has_split else None)
        return ml.listing, describe(sets, ml), any(r[2] == "val" for r in sets.rows)
    listing, table = list_data(file)
    if table.has_split:
        listing, table = list_data(file, split="train")
    return listing, None, table.has_split and any(r.split == "val" for r in table.rows)


def fit_to_label_file(file, directory="."):
    """A label file -> (model text, train text, lines saying what was chosen and why)."""
    from .init import (choose_flip, choose_input, describe_model, estimate, look_at, model_text,
                       train_text)

    file = Path(file)
    listing, multilabel, val_rows = _listing(file)
    if not listing.files:
        raise CnnError(f"{file}: none of its paths exists: a path is relative to the label file's folder")
    look = look_at(listing.files, file)
    side, channels, resize, (mw, mh), aspect = choose_input(look)
    flip, flip_why = choose_flip(look)
    k = len(listing.classes)
    n_train = look.images if val_rows else int(look.images * 0.9)
    batch = 64 if n_train >= 20000 else 32
    steps = max(1, n_train // batch)
    epochs = int(min(60, max(10, -(-3000 // steps))))     # as init.fit_to_folder
    model, filters = model_text(side, channels, k, file, multilabel is not None)
    arch, model_line = describe_model(model, filters, "a sigmoid per label" if multilabel else "a softmax")
    train = train_text(directory, (file, None, None), resize, flip, epochs, batch, file, val_rows)
    kind = multilabel or f"single-label: {k} classes"
    why = [f"data: {file} ({kind}; {', '.join(listing.classes[:6])}{', ...' if k > 6 else ''}), "
           f"{look.images:,} training images; validation: " + ("its val rows" if val_rows else "10% of them"),
           f"input: {side}x{side}x{channels}: the images are typically {mw}x{mh}"
           + (f", resized by centre crop (aspect {aspect:.1f})" if resize == "crop" else "")
           + ("; all grayscale" if look.gray else "; colour"),
           model_line,
           f"train: {epochs} epochs at batch {batch}, AdamW lr 0.002 with a cosine schedule; " + flip_why,
           estimate(arch, epochs, batch, n_train, look.images - n_train)]
    return model, train, why


def write_fitted_labels(directory, file, force=False):
    """`cnncli init DIR --data labels.csv` -> (written paths, lines saying what was chosen)."""
    from .init import _write

    model, train, why = fit_to_label_file(file, directory)
    return _write(Path(directory), {"model.yaml": model, "train.yaml": train}, force), why
