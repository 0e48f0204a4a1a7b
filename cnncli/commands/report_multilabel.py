"""`cnncli report` for a multi-label run: mAP, exact-match and Hamming accuracy, the per-label
table (precision, recall, F1, AP at the checkpoint's thresholds) and the curves; no confusion
matrix or mistake grid, which belong to one label per image."""

from ..errors import CnnError


def is_multilabel(cfg):
    return cfg.model.build(build_params=False).head == "multilabel"


def score_validation(ckpt, cfg, data):
    """The images to judge a multi-label checkpoint on: `data`, else data.val, else the training
    file's val rows, else the images data.val_split held out. -> (ScoredLabels, description)."""
    from ..data.dataset import stratified_split
    from ..data.multilabel import read_sets
    from .evaluate import score_folder

    cache = cfg.data.cache_dir
    if data is not None:
        return score_folder(ckpt, data, cache), f"{data}"
    if cfg.data.val:
        return score_folder(ckpt, cfg.data.val, cache), f"{cfg.data.val} (the run's validation file)"
    if not cfg.data.train:
        raise CnnError("the run's config names no data: give the images to evaluate with --data FILE")
    sets = read_sets(cfg.data.train, None, cfg.data.label_separator, "multilabel")
    if sets is not None and any(r[2] == "val" for r in sets.rows):
        return (score_folder(ckpt, cfg.data.train, cache, split="val"),
                f"{cfg.data.train}: its val rows (best.npz and the thresholds were chosen on them)")
    split = cfg.data.val_split
    scored = score_folder(ckpt, cfg.data.train, cache, select=lambda labels: stratified_split(labels, split, cfg.train.seed)[1])
    return scored, (f"{cfg.data.train}: the {len(scored.targets)} images data.val_split {split} held out (best.npz "
                    "and the thresholds were chosen on them: the figure flatters the model; --data FILE gives "
                    "an honest one)")


def sections(html, rep, ckpt, best_epoch, where):
    """-> [(title, html)]: the metrics and the per-label table."""
    m = "n/a" if rep["map"] is None else f"{rep['map']:.3f}"
    items = [(m, f"mAP of {ckpt.name} over {rep['map_labels']} labels"), (f"{rep['exact_match']:.1%}", "exact match"),
             (f"{rep['hamming_accuracy']:.1%}", "Hamming accuracy"), (f"{rep['loss']:.4f}", "loss (binary cross-entropy)"),
             (f"{rep['images']:,}", "images"), (f"{best_epoch}", f"epoch of {ckpt.name}")]
    note = f'<p class="note">{html.esc(ckpt.name)} scored on {html.esc(where)}.'
    if rep["no_positive"]:
        note += f" Left out of mAP (no positive image): {html.esc(', '.join(rep['no_positive']))}."
    rows = [[c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
             "-" if c["ap"] is None else f"{c['ap']:.3f}", c["support"], f"{c['threshold']:.3f}"] for c in rep["per_label"]]
    table = html.table(["label", "precision", "recall", "F1", "AP", "support", "threshold"], rows,
                       numeric=(1, 2, 3, 4, 5, 6), id_="per-label")
    return [("Final metrics", html.cards(items) + note + "</p>"), ("Per label", table)]
