"""`cnncli train`: config -> data -> model -> the trainer, and the resume that rebuilds all three.

Under an MPI launcher every process runs this. Each checks what it can inside an agreement (a
failure in one stops all, with one line from rank 0); rank 0 alone touches the run folder (its
lock, checkpoints, metrics), reads the checkpoint it resumes or warm-starts from and broadcasts it.
"""

import math
from pathlib import Path

import numpy as np
import yaml

from .. import config
from ..model import checkpoint
from ..errors import CnnError
from ..files import unlock, write_text_atomic
from ..engine.run_folder import check_output, claim_output, lock_run
from ..engine.features import attach
from ..engine.trainer import Result, State, Trainer, live_curves, warm_up
from .finetune import apply_freeze, warm_start


def train(config_path=None, overrides=(), force=False, resume=None, init=None, reporter=None):
    """Train from a config file, or continue the run in folder `resume`. -> Result."""
    from ..parallel.single import fingerprint
    from ..parallel.world import world
    from ..engine.progress import PlainReporter, QuietReporter

    comm = world()
    report = (reporter or PlainReporter()) if comm.root else QuietReporter()
    with comm.agreement():
        if resume is not None and config_path is not None:
            raise CnnError(f"give either a config (a new run) or --resume {resume} (continue that run, with "
                           f"the config saved in it), not both; to train it longer: cnncli train --resume "
                           f"{resume} --set train.epochs=N")
        if resume is None and config_path is None:
            raise CnnError("give a training config (cnncli train CONFIG) or --resume RUN_DIR")
    if resume is not None:
        return _resume(Path(resume), overrides, report, comm)
    with comm.agreement() as agreed:
        cfg = config.load_run(config_path, overrides)
        if init:
            cfg.train.init = str(init)
        model = cfg.model.build(seed=cfg.train.seed)  # before decoding: too big for memory fails fast
        frozen = apply_freeze(cfg, model)
        _check_batch_statistics(cfg, model)
        comm.check_batch_size(cfg.train.batch_size)
        if comm.root:  # its weights are broadcast; only it writes
            if cfg.train.init:
                _warm_start(cfg, model, report)
            check_output(cfg.output, force)
        agreed.fingerprint = fingerprint(config=_shared_settings(cfg), force=force)
    for note in cfg.notes:
        report.message(f"warning: {note}")
    if frozen:
        report.message(frozen)
    curves = live_curves(cfg.output, cfg.train.epochs, report, comm)
    try:
        data, weights = _prepare(cfg, model, report, comm)
        comm.broadcast_model(model)
        kernels = _warm_up(cfg, report, model)   # a first run compiles for a while: before the old run is touched
        fed, trained = attach(cfg, model, data, comm, report)   # the frozen-feature cache, or the data and model as they are
        # everything is checked: only now is the folder made, locked, and an earlier run cleared (--force)
        with comm.agreement():
            lock = claim_output(cfg.output, force) if comm.root else None
        try:
            output = Path(cfg.output)
            comm.root_does(_write_start, output, cfg, data.skipped)
            trainer = Trainer(cfg, fed, report, output, model=trained, class_weights=weights, dist=comm, whole=model,
                              images=data, curves=curves)
            return _run(trainer, report, kernels)
        finally:
            unlock(lock)
    finally:
        curves.close()   # stops a helper that drew nothing (the run failed before an epoch ended)


# Settings each process of a job may hold its own way: paths (machines mount a shared folder in
# different places, or hold their own copies: the data is compared by its contents instead), the
# decode workers of its machine, and what only rank 0 reads or writes.
PER_PROCESS = (("data", "train"), ("data", "val"), ("data", "cache_dir"), ("data", "workers"),
               ("train", "init"), ("output",))


def _shared_settings(cfg):
    """The config that every process of a job must hold the same."""
    d = cfg.to_dict()
    for path in PER_PROCESS:
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1], None)
    return d


def _write_start(output, cfg, skipped):
    write_text_atomic(output / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    _write_skipped(output, skipped)


def _prepare(cfg, model, report, comm):
    """Every process reads the data (a folder that one cannot read stops all) -> (data cut to this
    process's share, class weights)."""
    with comm.agreement() as agreed:
        data = _prepare_data(cfg, report, model.head == "multilabel")
        if data.multilabel and comm.size > 1:     # in the agreement: one line, not one per process
            raise CnnError("multi-label training runs in one process: drop --processes / mpiexec")
        _check_classes(cfg, model, data.classes, data.multilabel is not None)
        weights = _class_weights(cfg, data)
        agreed.fingerprint = {"data": {
            "classes": data.classes, "training images": len(data.train.indices),
            "validation images": len(data.val.indices) if data.val else 0,
            "mean": [round(m, 5) for m in data.mean], "std": [round(v, 5) for v in data.std]}}
    return comm.share(data), weights


def _prepare_data(cfg, report, multilabel=False):
    import time

    from ..data.dataset import prepare

    start = time.perf_counter()
    data = prepare(cfg, progress=report.decoding, multilabel=multilabel)
    seconds = time.perf_counter() - start
    for w in data.warnings:
        report.message(f"warning: {w}")
    n_val = len(data.val.indices) if data.val else 0
    report.message(f"data: {len(data.train.indices)} training, {n_val} validation images, "
                   f"{len(data.classes)} classes ({', '.join(data.classes[:8])}"
                   f"{', ...' if len(data.classes) > 8 else ''})"
                   + (f"; read from the decode cache in {seconds:.1f}s" if data.decoded_from_cache
                      else f"; decoded in {seconds:.1f}s"))
    if data.multilabel:
        report.message(data.multilabel)
    if data.converted:
        report.message(f"converted: {data.converted}")
    if data.skipped:
        report.message(f"skipped {len(data.skipped)} unreadable file(s), listed in {cfg.output}/skipped.txt "
                       f"(first: {data.skipped[0][0]}: {data.skipped[0][1]})")
    return data


def _check_multilabel(cfg, model, classes, multilabel):
    last = len(cfg.model.layers) - 1
    k = len(classes)
    if not multilabel:
        raise CnnError(f"{cfg.source}: the model ends in {model.output_shape[0]} sigmoid outputs (multi-label) but "
                       f"{cfg.data.train} is read as single-label: give a label file with several labels per "
                       f"cell (a{cfg.data.label_separator}b) or one-hot columns, or end layers[{last}] in softmax")
    if model.head != "multilabel" or model.output_shape[0] != k:
        raise CnnError(f"{cfg.source}: {cfg.data.train} is multi-label with {k} labels "
                       f"({', '.join(classes[:6])}{', ...' if k > 6 else ''}) but the model ends in "
                       f"{model.output_shape[0]} {model.head} output(s): give layers[{last}] {k} units and "
                       "activation: sigmoid")


def _check_classes(cfg, model, classes, multilabel=False):
    """The output layer must have one unit per class (or 1 sigmoid unit for two classes); K
    sigmoid units for K labels of multi-label data, and multi-label data needs them."""
    if multilabel or model.head == "multilabel":
        _check_multilabel(cfg, model, classes, multilabel)
    elif model.n_classes != len(classes):
        last = len(cfg.model.layers) - 1
        want = "1 unit with sigmoid, or 2 with softmax" if len(classes) == 2 else f"{len(classes)} units"
        raise CnnError(f"{cfg.source}: the model ends in {model.output_shape[0]} output(s) "
                       f"({model.n_classes} classes) but {cfg.data.train} has {len(classes)} classes "
                       f"({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''}): give "
                       f"layers[{last}] {want}")


def _check_batch_statistics(cfg, model):
    """Batchnorm over one value per channel (batch size 1 after a dense layer or on a 1x1 map)
    would normalise every value to its bias and shrink running_var: refuse it."""
    if cfg.train.batch_size > 1:
        return
    for i, layer in enumerate(model.layers):
        if layer.batch_statistics and math.prod(layer.in_shape[:-1]) == 1:
            raise CnnError(f"{cfg.source}: train.batch_size 1 leaves layers[{i}] (batchnorm) one value per "
                           "channel to normalise: use train.batch_size 2 or more")


def _class_weights(cfg, data):
    """train.class_weights -> one weight per class, or None. 'auto': inverse class frequency."""
    from ..engine.losses import balanced_weights

    want = cfg.train.class_weights
    if want is None:
        return None
    if want == "auto" and data.multilabel:       # pos_weight per label: negatives / positives
        from ..engine.losses import balanced_pos_weights
        targets = data.train.labels[data.train.indices]
        return balanced_pos_weights(targets.sum(axis=0), len(targets))
    if want == "auto":
        counts = np.bincount(data.train.labels[data.train.indices], minlength=len(data.classes))
        return balanced_weights(counts)
    if len(want) != len(data.classes):
        raise CnnError(f"{cfg.source}: train.class_weights lists {len(want)} weights but {cfg.data.train} has "
                       f"{len(data.classes)} classes ({', '.join(data.classes[:6])}"
                       f"{', ...' if len(data.classes) > 6 else ''}): give one per class, in that order, or 'auto'")
    return list(want)


def _write_skipped(output, skipped):
    write_text_atomic(output / "skipped.txt", "".join(f"{p}\t{r}\n" for p, r in skipped))


def _warm_up(cfg, report, model):
    report.phase("preparing kernels (compiled on the first run, then loaded from the cache)...")
    images = min(2, cfg.train.batch_size)
    try:
        seconds, compiled = warm_up(cfg.model, model, images)
    except MemoryError:   # before the run folder is touched: nothing to lose
        shape = "x".join(str(v) for v in cfg.model.input)
        raise CnnError(f"out of memory running the network on {images} image(s) of "
                       f"{shape}: lower model.input (resize the images) or use a smaller network") from None
    return f"kernels {'compiled' if compiled else 'loaded from cache'} in {seconds:.1f}s"


def _run(trainer, report, kernels):
    report.message(kernels)
    try:
        state = trainer.run()
    finally:
        report.close()
    best = state.best
    if best and trainer.dist.root and trainer.model.head != "multilabel":   # multi-label: per-label thresholds instead
        _calibrate_best(trainer, report)
    if best and best["epoch"] == 0:
        report.message(f"done: no epoch beat the starting weights (train.init) on {best['monitor']}: best.npz holds "
                       f"them; last.npz in {trainer.output} holds the last epoch's")
    elif best:
        report.message(f"done: best epoch {best['epoch']} ({best['monitor']}), "
                       f"checkpoints in {trainer.output}/best.npz and last.npz")
    if trainer.data.val is not None and not trainer.cfg.data.val and "val" not in trainer.data.data_files:
        report.message(_honest_figure(trainer.cfg, trainer.output))
    return Result(trainer.output, state, trainer.data.classes, trainer.data.skipped)


def _calibrate_best(trainer, report):
    """Fit best.npz's temperature and unknown-image scores on the validation images (cnncli calibrate)."""
    from .calibrate import after_training

    cfg = trainer.cfg
    source = cfg.data.val or (f"the val rows of {cfg.data.train}" if "val" in trainer.data.data_files else
                              f"the images data.val_split held out of {cfg.data.train}")
    line = after_training(trainer.output / "best.npz", trainer.images.val, source)   # images, not cached features
    if line is not None:
        report.message(line)


def _honest_figure(cfg, output):
    """What a validation split carved from the training folder is worth, and where the honest
    figure comes from."""
    from ..data.folder import test_beside

    test = test_beside(cfg.data.train)
    where = (f"such as {test}: cnncli evaluate {output}/best.npz {test}" if test else
             f"kept apart from training: cnncli evaluate {output}/best.npz TEST_FOLDER")
    return (f"validation: its images were held out of {cfg.data.train} (val_split {cfg.data.val_split:g}): from "
            "the same source as the training images, and best.npz chosen on them, they flatter the model; "
            f"the honest figure is a separate test folder's, {where}")


def _warm_start(cfg, model, report):
    """train.init: its weights (a head for other classes reinitialised); a warning when the
    checkpoint's weights were trained on another normalisation than this run will use."""
    meta = warm_start(model, cfg.train.init, report)
    pre = meta.get("preprocessing") or {}
    if meta.get("kind") == "pretrained" and pre.get("mean") and pre.get("std") and cfg.data.mean is None:
        theirs, std = ([round(float(v), 6) for v in pre[k]] for k in ("mean", "std"))
        report.message(f"warning: train.init's weights were trained on pixels normalised with mean {theirs} "
                       f"and std {std}; this run normalises with the data's own: to fine-tune as they were "
                       f"trained, set data.mean: {theirs} and data.std: {std}")


# On --resume only these may change: anything else would make the result differ from the run
# that never stopped (another batch size re-cuts the saved batch position, and so on).
RESUMABLE = ("train.epochs", "train.patience")


def _resume(run_dir, overrides, report, comm):
    from ..parallel.single import fingerprint

    last = run_dir / "last.npz"
    lock = loaded = None
    try:
        with comm.agreement() as agreed:
            for item in overrides or ():
                key = item.partition("=")[0].strip()
                if key not in RESUMABLE:
                    raise CnnError(f"--resume continues the run exactly as configured; only "
                                   f"{' and '.join(RESUMABLE)} can change (got --set {item})")
            if comm.root:  # the run folder may be on rank 0's machine alone: it reads, the others receive
                if not run_dir.is_dir():
                    raise CnnError(f"--resume {run_dir}: no such run folder (give the output folder of a run)")
                if not last.exists():
                    raise CnnError(f"{run_dir} has no last.npz to resume from: no epoch finished yet? "
                                   f"{_restart_hint(run_dir)}")
                lock = lock_run(run_dir)
                try:
                    loaded = checkpoint.load(last)
                except checkpoint.CheckpointError as e:
                    raise CnnError(f"{e}; it cannot be resumed. {_restart_hint(run_dir)}") from None
            agreed.fingerprint = fingerprint(resume=str(run_dir), overrides=list(overrides or ()))
        arrays, meta = comm.bcast(loaded)
        return _resume_locked(run_dir, last, arrays, meta, overrides, report, comm)
    finally:
        unlock(lock)


def _restart_hint(run_dir):
    """How to start a run that cannot be resumed again, losing nothing: its config.yaml with the
    output named (a relative output in it would resolve against the current folder), from
    best.npz's weights in a new folder when there is one, else from scratch in the same folder."""
    run = f"cnncli train {run_dir / 'config.yaml'}"
    best = run_dir / "best.npz"
    if best.exists():
        return (f"Start again from best.npz's weights in a new folder with: {run} --set train.init={best} "
                f"--set output={run_dir}-restart")
    return f"Start it again with: {run} --set output={run_dir} --force"


def _resume_locked(run_dir, last, arrays, meta, overrides, report, comm):
    with comm.agreement():  # all from rank 0's checkpoint: every process finds the same problems
        if not isinstance(meta.get("state"), dict) or not isinstance(meta.get("config"), dict):
            raise CnnError(f"{last} holds no training state: it cannot be resumed")
        planned = meta["config"].get("train", {}).get("epochs") if isinstance(meta["config"].get("train"), dict) else None
        raw = config.apply_overrides(meta["config"], overrides)
        try:                   # the run's own config parsed when it began: a mistake here is --set's
            cfg = config.parse_run(raw, str(run_dir / "config.yaml"), run_dir)
        except config.ConfigError as e:
            raise config.from_overrides(e, overrides) from None
        cfg.output = str(run_dir)
        try:
            state = State(**meta["state"])
        except TypeError:
            raise CnnError(f"{last}: its training state is not one this cnncli understands") from None
        schedule_note = _reopen(state, cfg, run_dir, planned or cfg.train.epochs)
        comm.check_batch_size(cfg.train.batch_size)
        model = cfg.model.build(seed=cfg.train.seed, init=False)
        apply_freeze(cfg, model)
        checkpoint.check_arrays(model, arrays, last)
        model.load_state_dict(arrays)
        # normalise exactly as the run did (and skip recomputing the statistics)
        cfg.data.mean, cfg.data.std = meta["preprocessing"]["mean"], meta["preprocessing"]["std"]
    curves = live_curves(cfg.output, cfg.train.epochs, report, comm)
    try:
        return _resume_training(run_dir, last, arrays, meta, (cfg, model, state, schedule_note), report, comm, curves)
    finally:
        curves.close()


def _resume_training(run_dir, last, arrays, meta, run, report, comm, curves):
    """_resume_locked's second half: the data, the kernels, the trainer with the run's state."""
    cfg, model, state, schedule_note = run
    data, weights = _prepare(cfg, model, report, comm)
    kernels = _warm_up(cfg, report, model)
    fed, trained = attach(cfg, model, data, comm, report)
    with comm.agreement():
        if data.classes != meta["classes"]:
            raise CnnError(f"the classes in {cfg.data.train} ({', '.join(data.classes)}) differ from the run's "
                           f"({', '.join(meta['classes'])}): resume needs the same data")
        comm.adopt(state, report)
        trainer = Trainer(cfg, fed, report, run_dir, model=trained, state=state, class_weights=weights, dist=comm,
                          whole=model, images=data, curves=curves)
        optim = {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")}
        try:
            trainer.opt.load_state(optim)
        except (KeyError, ValueError):
            raise CnnError(f"{last}: its optimizer state does not match train.optimizer") from None
        if trainer.ema:
            from ..engine.ema import has_state
            if not has_state(arrays):
                raise CnnError(f"{last} holds no moving average of the weights (ema.*) for train.ema: "
                               f"it cannot be resumed exactly. {_restart_hint(run_dir)}")
            try:
                trainer.ema.load_state(arrays)
            except (KeyError, ValueError):
                raise CnnError(f"{last}: its moving average (ema.*) does not match the architecture") from None
    comm.root_does(_write_skipped, run_dir, data.skipped)
    report.message(f"resuming {run_dir} at epoch {state.epoch + 1}" +
                   (f", batch {state.batch + 1}" if state.batch else "") +
                   (f"; {schedule_note}" if schedule_note else ""))
    return _run(trainer, report, kernels)


def _reopen(state, cfg, run_dir, planned):
    """A finished run continues when --set raised train.epochs (or train.patience after an early
    stop). -> a note on what the lr schedule does, or None.

    Decision: a run that finished its epochs and is extended restarts its schedule over the added
    epochs (a warm restart: cosine from lr down to min_lr again, step from lr), since continuing
    a finished cosine would train the new epochs at about min_lr. A run stopped before its end
    whose epochs change has its schedule re-planned over the new total."""
    t = cfg.train
    note = None
    if state.finished == "epochs" and state.epoch < t.epochs:
        state.finished = None
        if t.schedule != "constant":
            state.schedule_start = state.epoch
            note = (f"the {t.schedule} schedule restarts for the {t.epochs - state.epoch} added epochs, from lr "
                    f"{t.lr:g}" + (f" down to {t.min_lr:g}" if t.schedule == "cosine" else ""))
    elif t.epochs != planned and t.schedule != "constant" and not state.finished:
        note = f"the {t.schedule} schedule is re-planned over {t.epochs} epochs (it was {planned})"
    if state.finished == "early_stop" and state.epoch < t.epochs and (not t.patience or state.bad_epochs < t.patience):
        state.finished = None
    if state.finished == "epochs":
        raise CnnError(f"{run_dir} already finished its {state.epoch} epochs: to train longer, add "
                       f"--set train.epochs={state.epoch + 10}")
    if state.finished == "early_stop":
        raise CnnError(f"{run_dir} stopped early after epoch {state.epoch} ({state.bad_epochs} epochs "
                       f"without improvement): to go on, add --set train.patience={state.bad_epochs + 5}"
                       + (f" --set train.epochs={state.epoch + 10}" if state.epoch >= t.epochs else ""))
    return note
