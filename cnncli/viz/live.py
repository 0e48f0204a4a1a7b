"""curves.png during training, drawn by a helper process so that training hardly pays for it.

Why a process: one drawing of the curves costs about 0.1 s of CPU (0.5 s more for importing
matplotlib, once), and the quickstart's epochs last under a second. On the training thread
that is 10-40% of the run; on a thread it still holds the GIL the epoch loop needs between
kernels. A process has its own interpreter and mostly uses the core that the epoch loop's
Python leaves idle (it runs at a lower priority: nice 10); the training process never imports
matplotlib.

When: `cnncli train` starts the helper as soon as the config is checked, and the helper imports
matplotlib at once, while the training process decodes the data and loads its kernels (mostly
one core). Imported later, during the first epochs, it took a core from a training step whose
two processes run in lockstep: on LeNet-5 (1,442 digits, 2 cores) epochs 2-4 took 150-198 ms
instead of 55-65, 14% of a 40-epoch run (scripts/bench_cli.py's race, 6 rounds).

Protocol: the trainer sends each new metrics row as one JSON line on the helper's stdin and
closes stdin at the end. The helper draws the latest rows whenever an epoch ended, but keeps its
drawing to at most BUDGET of one core: after a drawing that took c seconds of CPU it waits c /
BUDGET before the next. So with 1-second epochs it redraws every few epochs, and every epoch
once epochs are long. The planned last epoch is drawn at once, while the trainer saves its
checkpoint; when stdin closes (the run ended, stopped or was interrupted) the helper draws what
it has not drawn yet and exits. The trainer waits for that, so curves.png is complete when
training returns: on the quickstart the wait was 0.14 s (3 runs; the helper took 0.68-0.71 s of
CPU). A helper that was sent no row (the run failed or stopped before its first epoch ended) has
nothing to draw and is stopped at once.

The helper's fixed cost, starting Python and importing matplotlib, is about 0.5 s of CPU a run.
CNNCLI_CURVES=0 turns curves.png off, for many short runs (the test suite, a sweep).
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

# The helper's share of one core, at most. Where training uses every core (2 processes on 2
# cores) each drawing (~0.1 s of CPU) stops a step that runs in lockstep for as long: LeNet-5's
# 65 ms epochs took 140-150 ms when one was drawn. 0.05 cost 5% of a run of short epochs; 0.02
# redraws every ~5 s and costs 2%.
BUDGET = 0.02
WAIT_AT_CLOSE = 60  # seconds the trainer waits for the last drawing
SWITCH = "CNNCLI_CURVES"   # "0": no curves.png, no helper (many short runs: each helper costs ~0.5 s of CPU)


class LiveCurves:
    """The trainer's side: update(history, best_epoch) at each epoch end, close() at the end.
    Never raises: a helper that cannot start or fails is reported through warn(text) at close."""

    def __init__(self, path, title, epochs=None, warn=None):
        self.path, self.title, self.warn = os.path.abspath(path), title, warn
        self.epochs = epochs  # the planned number: the update that reaches it is drawn at once
        self.proc = self.errors = None
        self.sent = 0
        self.failed = None
        self.closed = False
        self.enabled = os.environ.get(SWITCH, "1") != "0"

    def start(self):
        """Start the helper now: it imports matplotlib while the caller goes on."""
        if self.enabled and self.proc is None and not self.failed and not self.closed:
            self._start()

    def _start(self):
        self.errors = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cnncli.viz.live", self.path, self.title],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, env=env,
                start_new_session=True)  # Ctrl-C reaches the trainer only; the helper finishes its drawing
        except OSError as e:
            self.failed = f"cannot start the drawing process ({e})"

    def update(self, history, best_epoch=None):
        self.start()
        if self.failed or self.proc is None:   # off, or closed
            return
        lines = [json.dumps({"row": row}) for row in history[self.sent:]]
        last = self.epochs is not None and len(history) >= self.epochs
        lines.append(json.dumps({"best_epoch": best_epoch, "last": last}))
        try:
            self.proc.stdin.write(("\n".join(lines) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:  # the helper died; close() says why
            self.failed = "the drawing process stopped"
            return
        self.sent = len(history)

    def close(self):
        """Let the helper draw the final rows, wait for it, and report a failure through warn.
        A helper sent no row is stopped at once. Only the first call does anything."""
        if self.closed:
            return
        self.closed = True
        if self.proc is None:
            if self.failed and self.warn:
                self.warn(f"warning: curves.png not drawn: {self.failed}")
            return
        proc, self.proc = self.proc, None
        stopped = self.sent == 0 and not self.failed    # nothing to draw: no need to wait for it
        if stopped:
            proc.kill()
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            # the helper writes nothing on stdout: its end of file says it exited, at once, where
            # Popen.wait(timeout) would poll every 50 ms
            if select.select([proc.stdout], [], [], WAIT_AT_CLOSE)[0]:
                proc.stdout.read()
            code = proc.wait(WAIT_AT_CLOSE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "timeout"
        proc.stdout.close()
        self.errors.seek(0)
        said = self.errors.read().decode(errors="replace").strip().splitlines()
        self.errors.close()
        if code != 0 and not stopped and self.warn:
            reason = said[-1] if said else f"exit status {code}"
            self.warn(f"warning: curves.png may be out of date: the drawing process failed ({reason})")


# --- the helper process -------------------------------------------------------------------------

def _read(stream, state, changed):
    """Reader thread: append rows from stdin to state as they come; mark the end."""
    for line in stream:
        msg = json.loads(line)
        with changed:
            if "row" in msg:
                state["rows"].append(msg["row"])
            else:
                state["best_epoch"] = msg.get("best_epoch")
                state["last"] = msg.get("last", False)
            state["version"] += 1
            changed.notify()
    with changed:
        state["closed"] = True
        changed.notify()


def serve(path, title, stream):
    """Draw path from the rows arriving on stream, within BUDGET, and once more at its end."""
    from .curves import write_curves
    from .figure import preload

    preload()          # now, while the trainer prepares: not during its first epochs

    state = {"rows": [], "best_epoch": None, "version": 0, "closed": False, "last": False}
    changed = threading.Condition()
    threading.Thread(target=_read, args=(stream, state, changed), daemon=True).start()
    drawn, not_before = 0, 0.0
    while True:
        with changed:
            while state["version"] == drawn and not state["closed"]:
                changed.wait()
            if state["version"] == drawn:   # closed, and the last rows are drawn
                return
            if not state["closed"] and not state["last"]:
                wait = not_before - time.monotonic()
                if wait > 0:                 # over budget: coalesce what arrives meanwhile
                    changed.wait(wait)
                    continue
            version, rows, best = state["version"], list(state["rows"]), state["best_epoch"]
        start = time.thread_time()
        write_curves(path, rows, title, best)
        cost = time.thread_time() - start
        drawn = version
        not_before = time.monotonic() + cost / BUDGET


def main(argv):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(10)  # below the trainer: when both want a core, training gets it
    except OSError:
        pass
    path, title = argv
    try:
        serve(path, title, sys.stdin.buffer)
    except Exception as e:  # one line for the trainer's warning
        print(f"{e.__class__.__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)
    # curves.png is written and fsynced: skip the interpreter's teardown of matplotlib's objects
    # (~0.1 s), which the trainer would wait for
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
