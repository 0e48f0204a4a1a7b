"""A second process that runs the same network loads the kernels from the cache: no compile."""

import json
import os
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    from cnncli.losses import Loss
    from cnncli.model import Model
    from cnncli.kernels import cache_counts
    m = Model((12, 12, 3), [("conv", {"filters": 4, "size": 3, "padding": "same", "activation": "relu"}),
                            ("maxpool", {"size": 2}), ("avgpool", {"size": 2}),
                            ("conv", {"filters": 4, "size": 3, "activation": "tanh"}),
                            ("globalmaxpool", {}), ("dense", {"units": 3, "activation": "softmax"})])
    m.gradients(np.ones((2, 12, 12, 3), np.float32), np.array([0, 1]), Loss(m.head))
    m.predict_proba(np.ones((1, 12, 12, 3), np.float32))
    hits, misses = cache_counts()
    print(json.dumps({"hits": hits, "misses": misses, "seconds": time.perf_counter() - t0}))
""")


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_does_not_recompile(tmp_path):
    cold = _run(tmp_path)
    warm = _run(tmp_path)
    assert cold["misses"] > 0, "the first process on an empty cache must compile"
    assert warm["misses"] == 0 and warm["hits"] >= cold["misses"], warm
    print(f"cold {cold['seconds']:.2f}s, warm {warm['seconds']:.2f}s")


def test_warm_up_compiles_every_kernel_the_float32_path_uses():
    code = textwrap.dedent("""
        from types import SimpleNamespace
        from cnncli.runner import warm_up
        from cnncli.kernels import dispatchers
        for c in (1, 3):
            warm_up(SimpleNamespace(model=SimpleNamespace(input=(8, 8, c))))
        print(sorted(f.__name__ for f in dispatchers() if not f.signatures))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
