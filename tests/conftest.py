import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
