"""Collecting the tests changes nothing for the others: importing a test module leaves os.environ
as it was, and neither makes BLAS single-threaded nor sets malloc's thresholds (what the first
n_threads() does, for the whole process)."""

import importlib.util
import os
from pathlib import Path

import pytest

import cnncli.kernels.parallel as parallel

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("name", sorted(p.stem for p in TESTS.glob("test_*.py")))
def test_importing_a_test_module_changes_no_process_setting(name, monkeypatch):
    calls = []
    monkeypatch.setattr(parallel, "_n_threads", None)       # as in a fresh process
    monkeypatch.setattr(parallel, "single_threaded_blas", lambda: calls.append("BLAS threads"))
    monkeypatch.setattr(parallel, "keep_freed_memory", lambda: calls.append("malloc thresholds"))
    env = dict(os.environ)
    spec = importlib.util.spec_from_file_location(f"tests._collected_{name}", TESTS / f"{name}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert calls == [] and dict(os.environ) == env
