import os

import numpy as np
import pytest

# Every training run draws curves.png through a helper process that costs ~0.5 s of CPU; the
# suite trains ~40 times, doubling its time. Only the tests about the curves turn it on
# (test_curves.py); CNNCLI_CURVES=1 pytest draws them in every run.
os.environ.setdefault("CNNCLI_CURVES", "0")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
