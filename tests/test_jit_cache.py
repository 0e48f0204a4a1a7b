"""A second process that runs the same network loads the kernels from the cache: no compile."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    from cnncli.engine.losses import Loss
    from cnncli.model import Model
    from cnncli.kernels import cache_counts
    m = Model((12, 12, 3), [("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}),
                            ("maxpool", {"size": 2}), ("avgpool", {"size": 2}),
                            ("conv", {"filters": 4, "size": 3, "activation": "tanh"}),
                            ("globalmaxpool", {}), ("dense", {"units": 3, "activation": "softmax"})])
    x = np.linspace(0, 1, 2 * 12 * 12 * 3, dtype=np.float32).reshape(2, 12, 12, 3)
    m.gradients(x, np.array([0, 1]), Loss(m.head))
    p = m.predict_proba(x)
    hits, misses = cache_counts()
    seconds = time.perf_counter() - t0
    import sys
    refreshed = "numba.np.npyimpl" in sys.modules     # imported by numba's registry refresh
    from numba import njit                            # a compile after the loads still works

    @njit(cache=False)
    def root_sum(a):
        return np.sqrt(a).sum()

    print(json.dumps({"hits": hits, "misses": misses, "seconds": seconds, "refreshed": refreshed,
                      "probabilities": p.tolist(), "compiled": root_sum(np.arange(4.0))}))
""")


class Started:
    """A Python process started now, compiling into its own empty cache: this module's cold
    compiles run side by side (one core each), not one after another. On a 2-core AMD EPYC they
    took 147 s in a row (test durations), of the suite's 822 s in a cold CI run there."""

    def __init__(self, folder, code, cwd=None):
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = open(folder / "out.txt", "w+"), open(folder / "err.txt", "w+")
        env = dict(os.environ, NUMBA_CACHE_DIR=str(folder / "cache"))
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, stdout=self.out,
                                     stderr=self.err, text=True)

    def result(self):
        """-> (return code, stdout, stderr), once the process has ended."""
        code = self.proc.wait()
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read(), self.err.read()


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """The cold processes of this module, all started at once: {name: Started}."""
    runs = {"second process, cold": Started(tmp_path_factory.mktemp("second"), PROGRAM)}
    for case in WARM_UP_CASES:
        folder = tmp_path_factory.mktemp("warm_up")
        runs[case] = Started(folder, _warm_up_program(case, folder), cwd=ROOT)
    yield runs
    for run in runs.values():
        run.proc.kill()
        run.proc.wait()
        run.out.close()
        run.err.close()


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_does_not_recompile(started):
    first = started["second process, cold"]
    code, out, err = first.result()
    assert code == 0, err[-3000:]
    cold = json.loads(out.strip().splitlines()[-1])
    warm = _run(Path(first.out.name).parent / "cache")
    assert cold["misses"] > 0, "the first process on an empty cache must compile"
    assert warm["misses"] == 0 and warm["hits"] >= cold["misses"], warm
    # loading from the cache skips numba's registry refresh (kernels._load_without_refresh), and
    # what it loads computes what the compiling process computed
    assert cold["refreshed"] and not warm["refreshed"]
    assert warm["probabilities"] == cold["probabilities"]
    assert warm["compiled"] == cold["compiled"] == pytest.approx(1 + 2 ** 0.5 + 3 ** 0.5)
    print(f"cold {cold['seconds']:.2f}s, warm {warm['seconds']:.2f}s")


# Networks that between them touch every kernel of the float32 path: thin first layers (direct
# up to 16 filters, wide columns beyond, position by position at stride 2), row im2col and
# col2im, depthwise, grouped, 1x1, Winograd, batchnorm, the pools' fast and general paths,
# dropout, add, concat.
WARM_UP_CASES = {
    "every layer": ([8, 8, 3], [
        {"conv": {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}},
        {"conv": {"filters": 4, "size": 3, "padding": "same"}},
        {"conv": {"filters": 4, "size": 3, "padding": "same", "groups": 4}},
        {"conv": {"filters": 4, "size": 3, "padding": "same", "groups": 2}},
        {"conv": {"filters": 32, "size": 1}}, {"conv": {"filters": 32, "size": 3, "padding": 1, "bias": False}},
        "batchnorm", "relu", {"conv": {"filters": 32, "size": 3, "padding": 1, "from": -3}},
        {"add": {"from": [-2, -1]}}, {"conv": {"filters": 2, "size": 1}},
        {"maxpool": {"size": 2}}, {"maxpool": {"size": 3, "stride": 1, "padding": "same"}},
        {"avgpool": {"size": 2}}, "softmax", "globalmaxpool", {"dropout": {"rate": 0.3}},
        {"dense": {"units": 2, "activation": "softmax"}}]),
    "gray, strided": ([9, 9, 1], [
        {"conv": {"filters": 3, "size": 3, "stride": 2}}, {"conv": {"filters": 3, "size": 1, "from": "input"}},
        {"conv": {"filters": 20, "size": 3, "padding": 1, "from": "input"}},      # wide columns + GEMM
        {"globalavgpool": {"from": -3}}, {"globalavgpool": {"from": -3}}, {"globalavgpool": {"from": -3}},
        {"concat": {"from": [-3, -2, -1]}}, {"dense": {"units": 1, "activation": "sigmoid"}}]),
    "quickstart": None,
}


@pytest.mark.parametrize("case", list(WARM_UP_CASES))
def test_after_the_warm_up_a_full_size_step_compiles_nothing(started, case):
    """warm_up compiles the kernels of the configured network from two blank images; training
    steps and predictions at real batch sizes (split over threads or not), plain and augmented
    batches and an SGD and an Adam step then compile nothing."""
    code, out, err = started[case].result()
    assert code == 0, err[-3000:]
    misses, seconds = out.split()
    print(f"{case}: warm-up {seconds} s")
    assert misses == "0", f"{misses} kernels compiled after the warm-up"


def _warm_up_program(case, folder):
    """The program test_after_the_warm_up_a_full_size_step_compiles_nothing runs (its network
    written into folder): prints the kernels compiled after the warm-up, and its seconds."""
    spec = WARM_UP_CASES[case]
    arch = "configs/quickstart.yaml" if spec is None else folder / "arch.yaml"
    if spec is not None:
        arch.write_text(yaml.safe_dump({"input": spec[0], "layers": spec[1]}))
    return textwrap.dedent(f"""
        import numpy as np
        from cnncli import config
        from cnncli.kernels import cache_counts
        from cnncli.kernels.augment import prepare_batch
        from cnncli.engine.losses import Loss
        from cnncli.engine.trainer import warm_up
        path = {str(arch)!r}
        arch = config.load(path).model if path.endswith("quickstart.yaml") else config.load_architecture(path)
        m = arch.build(seed=1)
        seconds, compiled = warm_up(arch, m, 2)
        assert compiled
        before = cache_counts()[1]
        for n in (16, 5):
            x = np.random.default_rng(0).standard_normal((n,) + tuple(arch.input)).astype(np.float32)
            m.gradients(x, np.arange(n) % m.n_classes, Loss(m.head, 0.1))
            m.predict_proba(x)
        c = arch.input[2]
        prepare_batch(np.zeros((3, 20, 20, c), np.uint8), [0.5] * c, [0.2] * c)
        prepare_batch(np.zeros((3, 20, 20, c), np.uint8), [0.5] * c, [0.2] * c, flip=[True, False, True])
        from cnncli.engine.optim import SGD, Adam
        for opt in (SGD(m.trainable_params(), 0.01, momentum=0.9), Adam(m.trainable_params(), 0.001)):
            opt.step(m.trainable_params())
        print(cache_counts()[1] - before, round(seconds, 1))
    """)


def test_the_warm_up_leaves_the_run_as_it_found_it():
    """warm_up borrows the run's parameters and gradient arrays (no second copy of the network):
    afterwards the parameters, batchnorm statistics and dropout stream are untouched and the
    gradients zero."""
    import numpy as np

    from cnncli import config
    from cnncli.engine.trainer import warm_up

    arch = config.parse_architecture({"input": [8, 8, 3], "layers": [
        {"conv": {"filters": 4, "size": 3, "padding": "same"}}, "batchnorm", "relu", "flatten",
        {"dropout": {"rate": 0.5}}, {"dense": {"units": 2, "activation": "softmax"}}]}, "test")
    model = arch.build(seed=4)
    model.layers[1].buffers["running_mean"][:] = 0.25
    before = {k: v.copy() for k, v in model.state_dict().items()}
    stream = model.rngs[4]
    state = stream.bit_generator.state
    warm_up(arch, model, 2)
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    assert all(not g.any() for _, _, g in model.named_params())
    assert stream.bit_generator.state == state and model.rngs[4] is stream


def test_other_numba_code_loads_from_the_cache_as_numba_does(tmp_path):
    """cnncli's cache loads skip numba's registry refresh for its own kernels only: a user's cached
    @vectorize, which needs the registries to build its ufunc wrapper when it loads, still loads
    in a process whose cnncli kernels came from the cache (first run: compiled; second: loaded)."""
    (tmp_path / "users_ufunc.py").write_text(textwrap.dedent("""
        from numba import vectorize

        @vectorize(["float64(float64)"], cache=True)
        def plus_one(x):
            return x + 1.0
    """))
    program = textwrap.dedent("""
        import json, sys
        import numpy as np
        from cnncli.model import Model
        m = Model((12, 12, 3), [("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}),
                                ("globalmaxpool", {}), ("dense", {"units": 3, "activation": "softmax"})])
        m.predict_proba(np.ones((2, 12, 12, 3), np.float32))
        refreshed = "numba.np.npyimpl" in sys.modules     # imported by numba's registry refresh
        import users_ufunc
        print(json.dumps({"refreshed": refreshed, "ufunc": users_ufunc.plus_one(np.arange(3.0)).tolist()}))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path) + os.pathsep + str(ROOT))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["refreshed"] and not runs[1]["refreshed"]    # the second run's cnncli kernels: loaded
    assert runs[0]["ufunc"] == runs[1]["ufunc"] == [1.0, 2.0, 3.0]
