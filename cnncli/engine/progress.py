"""What a training run shows: a rich bar per epoch on a terminal, one plain line per epoch
otherwise (CI logs), nothing but errors with --quiet. The trainer calls these hooks only."""

import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def fmt_row(row, epochs, loss_name="loss"):
    parts = [f"epoch {row['epoch']}/{epochs}", f"{loss_name} {row['train_loss']:.4f}", f"acc {row['train_acc']:.1%}"]
    if row.get("val_loss") is not None:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_acc']:.1%}"]
    if row.get("val_map") is not None:   # multi-label: acc is exact match at 0.5; best.npz follows mAP
        parts.append(f"val_mAP {row['val_map']:.3f}")
    parts += [f"lr {row['lr']:.3g}", f"{row['images_per_s']:,.0f} img/s", f"{row['seconds']:.1f}s",
              f"data wait {row.get('data_wait', 0):.0%}"]
    return "  ".join(parts)


def silence(stream):
    """Point a stream whose reader went away at /dev/null, so later writes (and the flush at
    exit) neither fail nor print 'Broken pipe'."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class PlainReporter:
    """One line per epoch and per phase; for logs and pipes. `gone` turns true when the reader
    of the output went away (`cnncli train ... | head`): the trainer then stops as for Ctrl-C."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.epochs = 0
        self.gone = False
        self.loss_name = "loss"   # "loss (smoothed)" with label smoothing: set by the trainer
        self.started = None       # when the first epoch of this session began
        self.ended = 0            # epochs ended in this session
        self.left = None          # seconds the run's remaining epochs take, at the pace so far

    def message(self, text):
        if self.gone:
            return
        try:
            print(text, file=self.stream, flush=True)
        except BrokenPipeError:
            self.gone = True
            silence(self.stream)

    def phase(self, text):
        self.message(text)

    def decoding(self, role, done, total):
        pass

    def epoch_start(self, epoch, epochs, n_batches, start_batch):
        self.epochs = epochs
        if self.started is None:
            self.started = time.monotonic()

    def batch(self, done, loss, acc, images_per_s):
        pass

    def epoch_end(self, row, improved, finished):
        from .estimate import duration, time_left

        self.ended += 1
        remaining = 0 if finished else self.epochs - row["epoch"]
        self.left = time_left(time.monotonic() - self.started, self.ended, remaining) if remaining else None
        line = fmt_row(row, self.epochs, self.loss_name) + ("  *best" if improved else "")
        if self.left is not None:
            line += f"  ~{duration(self.left)} left"
        if finished == "early_stop":
            line += "  (early stop: no improvement for `patience` epochs)"
        self.message(line)

    def close(self):
        pass


class QuietReporter(PlainReporter):
    def message(self, text):
        pass


class RichReporter(PlainReporter):
    """A live bar per epoch with loss, accuracy, images/s and ETA."""

    def __init__(self):
        super().__init__()
        self.console = Console()
        self.progress = None
        self._last = 0.0

    def message(self, text):
        (self.progress.console if self.progress else self.console).print(text, highlight=False)

    def decoding(self, role, done, total):
        if self.progress is None:
            self._start(f"decoding {role}", total)
        now = time.monotonic()
        if now - self._last > 0.1 or done >= total:
            self.progress.update(self.task, completed=done, stats="")
            self._last = now
        if done >= total:
            self._stop()

    def _start(self, description, total, completed=0):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, completed=completed, stats="")

    def _stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def epoch_start(self, epoch, epochs, n_batches, start_batch):
        from .estimate import duration

        super().epoch_start(epoch, epochs, n_batches, start_batch)
        run = f" (run ~{duration(self.left)} left)" if self.left is not None else ""
        self._start(f"epoch {epoch + 1}/{epochs}{run}", n_batches, start_batch)

    def batch(self, done, loss, acc, images_per_s):
        now = time.monotonic()
        if now - self._last > 0.1:
            self.progress.update(self.task, completed=done,
                                 stats=f"{self.loss_name} {loss:.4f}  acc {acc:.1%}  {images_per_s:,.0f} img/s")
            self._last = now

    def epoch_end(self, row, improved, finished):
        self._stop()
        super().epoch_end(row, improved, finished)

    def close(self):
        self._stop()


def make_reporter(quiet=False):
    if quiet:
        return QuietReporter()
    return RichReporter() if sys.stdout.isatty() else PlainReporter()
