"""The epoch loop in Python: batches, optimizer steps, metrics, checkpoints, resume, Ctrl-C.

Randomness is a pure function of (seed, epoch): the data order and augmentation of epoch e come
from default_rng([seed, e, 0]) and dropout's masks from default_rng([seed, e, 1, layer]). A
mid-epoch checkpoint (Ctrl-C) also stores the batch position and dropout's generator states, so
`--resume` replays exactly the batches, masks and updates the uninterrupted run would have made.

Over several processes (`dist`, parallel/single.py) each trains on its share of every batch; the
order and augmentation stay the epoch's, dropout draws from ([seed, e, 1, layer, rank]); the
step, the decision to stop and the metrics are agreed by all; rank 0 alone writes.
With train.ema, validation and best.npz use the weights' moving average (ema.py); last.npz holds
the live weights and the average (ema.layers.*), so a resume continues both.
"""

import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model import checkpoint
from ..parallel.processes import WorkerError
from ..files import write_text_atomic
from ..errors import CnnError
from ..viz.live import LiveCurves
from .run_folder import metrics_csv, resume_hint


def saved_at(epoch, batch):
    """Where a last.npz stopped, in words: 'epoch 3' or 'epoch 3 and 40 batches of epoch 4'."""
    return f"epoch {epoch}" + (f" and {batch} batches of epoch {epoch + 1}" if batch else "")


class Interrupted(Exception):
    """Ctrl-C during training: last.npz was saved; the CLI exits with status 130."""

    exit_code = 130
    quiet = False

    def __init__(self, output, epoch, batch, processes=1):
        where = f"in epoch {epoch + 1} after batch {batch}" if batch else f"after epoch {epoch}"
        super().__init__(f"interrupted {where}; saved {output}/last.npz. "
                         f"Continue exactly where it stopped with: {resume_hint(output, processes)}")


class OutputClosed(Interrupted):
    """The reader of the progress lines went away (`cnncli train ... | head`): stopped as for
    Ctrl-C, last.npz saved; the CLI exits quietly with 141, as a process ended by SIGPIPE."""

    exit_code = 141
    quiet = True


EMPTY_PARTIAL = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "wait": 0.0}


def timed(iterable, totals, key="wait"):
    """Yield from iterable, adding the seconds spent waiting for each item to totals[key]."""
    it = iter(iterable)
    while True:
        start = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        totals[key] += time.perf_counter() - start
        yield item


@dataclass
class State:
    """Where a run stands; saved in last.npz's meta so a resume continues exactly."""
    epoch: int = 0                 # epochs completed
    batch: int = 0                 # batches completed in the epoch under way (0 at a boundary)
    partial: dict = field(default_factory=lambda: dict(EMPTY_PARTIAL))
    history: list = field(default_factory=list)
    best: dict = None              # {"epoch", "score" (compared as a tuple), "monitor"}
    bad_epochs: int = 0
    finished: str = None           # None | "epochs" | "early_stop"
    schedule_start: int = 0        # the epoch the lr schedule (re)started at: a finished run extended restarts it
    dropout_rng: list = None       # bit_generator states, mid-epoch only (a list per process when several)
    processes: int = 1             # how many processes trained it (data-parallel)
    thresholds: list = None        # multi-label: per-label thresholds tuned on best.npz's validation scores


@dataclass
class Result:
    output: Path
    state: State
    classes: list
    skipped: list


class Trainer:
    def __init__(self, cfg, data, reporter, output, model, state=None, class_weights=None, dist=None, whole=None,
                 images=None, *, curves):
        """curves: the run's live_curves, started by the caller before it prepared the data.
        model: what each step trains; whole: the network checkpoints hold, when model is only
        the layers after a frozen-feature cache's boundary (engine/features.py), sharing its arrays;
        data then holds the cached features and images the image batches (for what runs the whole
        network after training: calibration)."""
        from ..parallel.single import Single
        from .losses import Loss
        from .optim import from_config

        self.cfg, self.data, self.report, self.output = cfg, data, reporter, Path(output)
        t = cfg.train
        self.model = model
        self.whole = whole or model
        self.images = images or data
        self.dist = dist or Single()
        self.dist.attach(model, self._where)
        self.class_weights = class_weights
        self.loss = Loss(model.head, t.label_smoothing, class_weights)
        self.opt = from_config(model.trainable_params(), t)   # frozen layers: no slots, no step
        self.ema = None
        if t.ema:
            from .ema import EMA
            self.ema = EMA(model, t.ema)
        self.state = state or State(processes=self.dist.size)
        self.rngs = None          # the random layers' streams of the epoch (_seed_epoch)
        self.stop_requested = 0
        self.validating = False   # Ctrl-C says what it waits for
        self.saved = None  # what last.npz holds, for messages
        self.curves = curves
        self.val_scores = None    # multi-label: the last validation's (probabilities, targets)
        if data.multilabel and self.dist.size > 1:
            raise CnnError("multi-label training runs in one process: drop --processes / mpiexec")

    # --- checkpoints ---
    def meta(self, kind):
        d = self.data
        return {"kind": kind, "architecture": self.cfg.model.to_dict(), "classes": d.classes,
                "preprocessing": d.preprocessing(self.cfg.model.input, self.cfg.data.resize),
                "epoch": self.state.epoch, "metrics": self.state.history[-1] if self.state.history else {},
                "class_weights": self.class_weights, "config": self.cfg.to_dict(), **self._multilabel_meta()}

    def _multilabel_meta(self):
        """meta.multilabel: the per-label thresholds predict applies (0.5 each until tuned)."""
        if not self.data.multilabel:
            return {}
        k, tuned = len(self.data.classes), self.state.thresholds
        return {"multilabel": {"thresholds": tuned or [0.5] * k, "separator": self.cfg.data.label_separator,
                               "tuned": "maximum F1 per label on the validation images of the best epoch"
                               if tuned else "not tuned (no validation images): 0.5 each"}}

    def evaluated(self):
        """The weights validation and best.npz use: the moving average with train.ema, else the model's."""
        return self.ema.applied() if self.ema else contextlib.nullcontext(self.model)

    def save_last(self):
        st = self.state

        def write():
            arrays = dict(self.whole.state_dict())
            arrays.update({f"optim.{k}": v for k, v in self.opt.state().items()})
            if self.ema:
                arrays.update(self.ema.state())
            meta = self.meta("last")
            meta["state"] = st.__dict__
            checkpoint.save(self.output / "last.npz", arrays, meta)
            self.saved = saved_at(st.epoch, st.batch)
        self.dist.root_does(write)

    def save_best(self):
        def write():
            with self.evaluated() as model:   # the moving average, or the whole network (a cache's Tail shares it)
                source = self.whole if model is self.model else model
                checkpoint.save(self.output / "best.npz", source.state_dict(), self.meta("best"))
        self.dist.root_does(write)

    # --- the loop ---
    def lr_at(self, step):
        from .optim import learning_rate

        t, start = self.cfg.train, self.state.schedule_start
        n = len(self.data.train)
        return learning_rate(step - start * n, n, t.epochs - start, t.lr, t.schedule,
                             t.warmup_epochs if start == 0 else 0.0, t.step_size, t.gamma, t.min_lr)

    def _seed_epoch(self, epoch):
        """-> the epoch's data generator; the random layers' streams (dropout) into self.rngs."""
        seed = self.cfg.train.seed
        self.rngs = {i: np.random.default_rng(self.dist.seed(seed, epoch, 1, i)) for i in self.model.random_layers()}
        if self.state.dropout_rng:  # resuming mid-epoch: the generators as they were
            for rng, st in zip(self.rngs.values(), self.state.dropout_rng):
                rng.bit_generator.state = st
            self.state.dropout_rng = None
        return np.random.default_rng([seed, epoch, 0])

    def run(self):
        t, st = self.cfg.train, self.state
        self.report.loss_name = loss_name(t, self.cfg.data.augment)
        n_batches = len(self.data.train)
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # divergence shows as a NaN loss
                self.score_start()
                while st.epoch < t.epochs and not st.finished:
                    self.train_epoch(st.epoch, n_batches)
                    if self.stopping():
                        self.save_last()
                        raise self.stop_reason()
                    self.validating = True
                    self.end_epoch()
                    self.validating = False
                    if self.stopping(now=True) and st.epoch < t.epochs and not st.finished:
                        raise self.stop_reason()  # last.npz was just saved at the epoch's end
            if not st.finished:    # resumed at or past a lowered train.epochs: no epoch ran to mark it
                st.finished = "epochs"
                self.save_last()
        except MemoryError:
            raise CnnError(f"out of memory in epoch {st.epoch + 1}: lower train.batch_size (now "
                           f"{t.batch_size}) or the input size; {self._kept()}") from None
        finally:
            signal.signal(signal.SIGINT, previous)
            self.curves.close()  # curves.png is complete when run() returns, however it ended
        return st

    def stopping(self, now=False):
        """Ctrl-C or a closed output, as every process agrees: at the last step, or (now) here."""
        interrupted, gone = self.stop_requested > 0, self.report.gone
        if now:  # at an epoch's end: one more small agreement
            interrupted, gone = self.dist.any(interrupted), self.dist.any(gone)
        else:
            interrupted, gone = self.dist.stopping(interrupted, gone)
        if interrupted:
            self.stop_requested = max(self.stop_requested, 1)
        return interrupted or gone

    def stop_reason(self):
        kind = Interrupted if self.stop_requested else OutputClosed
        return self.dist.everywhere(kind(self.output, self.state.epoch, self.state.batch, self.dist.size))

    def _on_sigint(self, signum, frame):
        self.stop_requested += 1
        if self.stop_requested > 1:  # second Ctrl-C: leave now; writes are atomic, nothing is torn
            raise KeyboardInterrupt
        when = "after this epoch's validation" if self.validating else "after this batch"
        self.report.message(f"stopping {when} and saving last.npz (Ctrl-C again to quit at once)")

    def train_epoch(self, epoch, n_batches):
        from ..model import Diverged

        st, t = self.state, self.cfg.train
        rng = self._seed_epoch(epoch)
        p = st.partial
        self.report.epoch_start(epoch, t.epochs, n_batches, st.batch)
        start = time.perf_counter()
        batches = timed(self.data.train.epoch(rng, start=st.batch, shuffle=t.shuffle), p)
        for b, (x, y) in enumerate(batches, start=st.batch):
            step = epoch * n_batches + b
            self.opt.lr = self.lr_at(step)
            try:
                loss, correct, seen = self.dist.step(self.model, x, y, self.loss, self.opt,
                                                     (self.stop_requested > 0, self.report.gone), self.rngs)
            except Diverged as e:
                self._diverged(e.loss, epoch, b)
            except WorkerError as e:   # killed, say by the kernel when memory ran out: not the user's input,
                raise CnnError(f"{e}; {self._where()}") from None   # but nothing is lost: say how to go on
            if self.ema:
                self.ema.update(self.opt.step_count)
            p["loss"] += loss * seen
            p["correct"] += correct   # mixed images (mixup, cutmix): their dominant class
            p["seen"] += seen
            st.batch = b + 1
            elapsed = p["seconds"] + time.perf_counter() - start
            self.report.batch(b + 1, p["loss"] / p["seen"], p["correct"] / p["seen"], p["seen"] / max(elapsed, 1e-9))
            if self.stopping():
                p["seconds"] = elapsed
                st.dropout_rng = self.dist.gather([rng.bit_generator.state for rng in self.rngs.values()])
                return
        p["seconds"] += time.perf_counter() - start

    def _kept(self):
        last = self.output / "last.npz"
        if self.saved:
            return f"{last} (after {self.saved}) is intact"
        return f"{last} from before this session is intact" if last.exists() else "no checkpoint was written yet"

    def _diverged(self, loss, epoch, b):
        kept = self._kept()
        raise self.dist.everywhere(CnnError(f"training diverged: loss is {loss} at epoch {epoch + 1}, batch "
                                            f"{b + 1}: lower train.lr (now {self.opt.lr:g}) or add batchnorm; {kept}"))

    def _where(self):
        """Where the run stands, for the message when another process of the job is lost."""
        st = self.state
        return (f"in epoch {st.epoch + 1} at batch {st.batch + 1}: the job stops; {self._kept()}; continue "
                f"with: {resume_hint(self.output, self.dist.size)}")

    def end_epoch(self):
        st = self.state
        p = st.partial
        n = len(self.data.train)
        row = {"epoch": st.epoch + 1, "train_loss": p["loss"] / p["seen"], "train_acc": p["correct"] / p["seen"],
               "val_loss": None, "val_acc": None, "lr": self.lr_at((st.epoch + 1) * n - 1), "seconds": p["seconds"],
               "images_per_s": p["seen"] / max(p["seconds"], 1e-9), "data_wait": p["wait"] / max(p["seconds"], 1e-9)}
        if self.data.val is not None:
            self._validate(row)
        st.history.append(row)
        st.epoch += 1
        st.batch = 0
        st.partial = dict(EMPTY_PARTIAL)
        improved = self._track_best(row)
        self.curves.update(st.history, st.best["epoch"])  # first: it draws while the checkpoints are written
        if improved:
            self._tune_thresholds()
            self.save_best()
        patience = self.cfg.train.patience
        if patience and st.bad_epochs >= patience:
            st.finished = "early_stop"
        elif st.epoch >= self.cfg.train.epochs:
            st.finished = "epochs"       # saved below with the last epoch, not written again after it
        self.dist.root_does(write_text_atomic, self.output / "metrics.csv", metrics_csv(st.history))
        self.save_last()
        self.report.epoch_end(row, improved, st.finished)

    def score_start(self):
        """With train.init and validation, the starting weights' validation score is the one to
        beat: best.npz holds them (as epoch 0) until an epoch does better, so a fine-tuning that
        does not pay leaves the checkpoint it started from as best.npz. Once, before epoch 1."""
        st = self.state
        if not self.cfg.train.init or self.data.val is None or st.epoch or st.batch or st.best is not None:
            return
        row = {"epoch": 0, "train_loss": None, "train_acc": None}
        self._validate(row)          # ranked as the epochs are (multi-label: on mAP, thresholds tuned)
        self._track_best(row)
        self._tune_thresholds()
        self.save_best()
        score = f"val_acc {row['val_acc']:.4f}" if row.get("val_map") is None else f"val_mAP {row['val_map']:.4f}"
        self.report.message(f"start: train.init's weights score {score}, val_loss {row['val_loss']:.4f}; best.npz "
                            "holds them until an epoch does better")

    def _validate(self, row):
        """row += val_loss, val_acc (and multi-label val_map; its scores kept for the thresholds)."""
        with self.evaluated() as model:
            if self.data.multilabel:
                row["val_loss"], row["val_acc"], row["val_map"], self.val_scores = validate_multilabel(model, self.data.val)
            else:
                row["val_loss"], row["val_acc"] = validate(model, self.data.val, self.dist)

    def _tune_thresholds(self):
        """Multi-label: each label's threshold tuned on the last validation, for best.npz."""
        if self.val_scores is not None:
            from .multilabel_metrics import tune_thresholds
            self.state.thresholds = tune_thresholds(*self.val_scores)

    def _track_best(self, row):
        st, monitor = self.state, self.cfg.train.monitor
        use_val = row["val_loss"] is not None
        acc, loss = (row["val_acc"], row["val_loss"]) if use_val else (row["train_acc"], row["train_loss"])
        if use_val and row.get("val_map") is not None:     # multi-label: best on validation mAP
            acc, monitor = row["val_map"], monitor.replace("val_acc", "val_map")
        score = (acc, -loss) if monitor.startswith("val_map") or monitor == "val_acc" else (-loss, acc)
        if st.best is None or score > tuple(st.best["score"]):
            st.best = {"epoch": row["epoch"], "score": list(score), "monitor": monitor if use_val else
                       monitor.replace("val_", "train_")}
            st.bad_epochs = 0
            return True
        st.bad_epochs += 1
        return False


def live_curves(output, epochs, reporter, dist):
    """The run's curves.png helper (viz/live.py), started now: `cnncli train` makes it before it
    decodes the data and loads the kernels, so that the helper's import of matplotlib (0.5 s of
    CPU) overlaps them, not the first epochs. Rank 0 alone writes."""
    curves = LiveCurves(Path(output) / "curves.png", str(Path(output)), epochs, warn=reporter.message)
    curves.enabled = curves.enabled and dist.root
    curves.start()
    return curves


def loss_name(t, augment=None):
    """How the training loss is labelled: label smoothing and mixed labels (mixup, cutmix: soft
    targets) raise it above the validation loss (which is plain cross-entropy), and class weights
    change it; say so where it is shown."""
    mixed = augment is not None and (augment.mixup or augment.cutmix)
    kinds = (["smoothed"] if t.label_smoothing else []) + (["mixed"] if mixed else []) + \
        (["weighted"] if t.class_weights else [])
    return f"loss ({', '.join(kinds)})" if kinds else "loss"


def validate(model, batches, dist=None):
    """(loss, accuracy) of a Batches in inference mode, through the one evaluation, Model.evaluate.
    Over several processes each evaluates its share and dist adds up the sums."""
    from ..parallel.single import Single
    from .mixed import count_correct

    labels = []

    def pairs():
        for x, y in batches.epoch(None):
            if len(y):  # a process's share of a last batch smaller than the job may be empty
                labels.append(y)
                yield x, y
    probs, loss = model.evaluate(pairs())
    correct = count_correct(probs, np.concatenate(labels)) if labels else 0
    return (dist or Single()).average(loss, correct, len(probs))


def validate_multilabel(model, batches):
    """Multi-label validation -> (mean BCE, exact-match accuracy at 0.5, mAP or None, (probs, targets))."""
    from .mixed import count_correct
    from .multilabel_metrics import mean_ap

    targets = []

    def pairs():
        for x, y in batches.epoch(None):
            targets.append(y)
            yield x, y
    probs, loss = model.evaluate(pairs())
    t = np.concatenate(targets)
    return loss, count_correct(probs, t) / max(len(t), 1), mean_ap(probs, t)[0], (probs, t)


def warm_up(arch, model, images):
    """Compile (or load) the kernels the network `arch` uses, before the clock starts: one
    training step and predictions of that network on `images` blank images (2: split over
    threads; the run's batch size when it is 1), then the batch preparation kernels (plain and
    augmented) and the optimizers' updates (SGD's and Adam's: it is not told which). Numba
    compiles per argument type, not per shape, so these are the kernels of every later batch (the
    tests check that a full-size step compiles nothing more). Warming up the user's own network
    compiles only what it uses: the quickstart's cold compile took 9.7-10.3 s with a generic
    network touching every kernel, 6.9 s this way (measured 2026-11-26, docs/performance.md).
    model: the run's network, built from arch. The warm-up borrows its parameters and gradient
    arrays (and zeroes the gradients after) instead of holding a second copy; its batchnorm
    statistics and dropout streams are the warm-up's own, so the run starts as without it.
    -> (seconds, compiled anything?)."""
    from ..kernels import cache_counts
    from ..kernels.augment import mix_batch, prepare_batch
    from ..kernels.optim import adam_update, sgd_update
    from .losses import Loss

    start = time.perf_counter()
    net = arch.build(seed=0, build_params=False)
    for mine, theirs in zip(net.layers, model.layers):
        mine.params, mine.grads = theirs.params, theirs.grads
        mine.buffers = {k: v.copy() for k, v in theirs.buffers.items()}
    c = arch.input[2]
    x = np.zeros((images,) + tuple(arch.input), np.float32)
    y = np.zeros((len(x), net.output_shape[0]) if net.head == "multilabel" else len(x), np.int64)
    net.gradients(x, y, Loss(net.head))
    net.predict_proba(x)            # split over threads (two images)
    net.predict_proba(x[:1])        # one image: layer by layer
    model.zero_grad()
    blank = np.zeros((1, 8, 8, c), np.uint8)
    prepare_batch(blank, [0.0] * c, [1.0] * c)               # nothing to augment: the plain loop
    prepare_batch(blank, [0.0] * c, [1.0] * c, flip=[True])  # augmented: the general kernel
    one = np.zeros(1, model.dtype)
    sgd_update(one, one.copy(), one.copy(), 0.0, 0.9, 0.0, False, False)
    adam_update(one, one.copy(), one.copy(), one.copy(), 0.0, (0.9, 0.999), 1e-8, 0.0, False, False, 0.1, 0.1)
    mix_batch(np.zeros((2, 8, 8, c), np.float32), [1, 0], [0.5, 1.0], [[-1] * 4, [0, 4, 0, 4]])
    return time.perf_counter() - start, cache_counts()[1] > 0
