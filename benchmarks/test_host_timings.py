"""Host-side timings as pytest-benchmark suites (issue 12 item 5), compared against a
saved baseline so a change that slows one of them shows up:

    .venv/bin/pytest benchmarks/test_host_timings.py --benchmark-save=baseline      # once
    .venv/bin/pytest benchmarks/test_host_timings.py --benchmark-compare \\
        --benchmark-compare-fail=median:25%                                          # after a change

Baselines live in benchmarks/results/pytest-benchmark (benchmarks/conftest.py sets the
storage).  Not part of `pytest` (testpaths = tests): these time things, they assert
nothing about time.  Simulated cycles stay in benchmarks/bench_kernels.py, as JSON: they
are exact and need no statistics.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.spec import KernelSpec

ZOO_KERNELS = [KernelSpec("matmul", (1, 128, 784), 8, 8), KernelSpec("matmul", (1, 128, 784), 2, 2),
               KernelSpec("matmul", (1, 128, 784), 4, 8), KernelSpec("conv2d", (1, 16, 14, 14, 32, 3, 1, 1, 1), 8, 8),
               KernelSpec("conv2d", (1, 16, 14, 14, 32, 3, 1, 1, 1), 2, 4),
               KernelSpec("conv2d", (1, 1, 28, 28, 16, 3, 1, 1, 1), 4, 1)]


@pytest.fixture(scope="module")
def host_session():
    from harness import registry

    t = registry.get("host")
    with t.open(t.build()) as s:
        yield s


@pytest.mark.parametrize("spec", ZOO_KERNELS, ids=str)
def test_host_kernel_through_the_protocol(benchmark, host_session, spec):
    """One RUN_KERNEL request of 20 repeats: protocol, input generation, the kernel."""
    run = benchmark(host_session.run_kernel, spec, 1, 0, 20)
    assert len(run.values) == 20


@pytest.mark.parametrize("spec", ZOO_KERNELS[:3], ids=str)
def test_host_kernel_in_process(benchmark, spec):
    """The C kernel itself through ctypes (kernels/native.py), inputs made once."""
    from kernels import native

    from kernels import reference

    y = benchmark(native.run_kernel, spec.op, spec.shape, spec.qa, spec.qw, 3)
    np.testing.assert_array_equal(y, reference.expected_output(spec.op, spec.shape, spec.qa, spec.qw, 3))


def test_plan_expansion(benchmark):
    from harness.plans import expand

    specs = benchmark(expand, "grid")
    assert specs


def test_store_writes(benchmark, tmp_path):
    from harness.store import Measurement, Store

    specs = [KernelSpec("matmul", (1, m, k), qa, qw) for m in (8, 16, 32) for k in (64, 128)
             for qa in (1, 2, 4, 8) for qw in (1, 2, 4, 8)]
    counter = iter(range(1_000_000))

    def write() -> int:
        with Store(tmp_path / f"s{next(counter)}.db") as st:
            st.add_target("fp", "bench", {})
            return st.put_many(Measurement(s, "fp", unit="cycles", raw=[1.0, 1.0], median=1.0) for s in specs)

    assert benchmark(write) == len(specs)


@pytest.mark.parametrize("model", ["linear", "rf"])
def test_proxy_fit_and_predict(benchmark, model):
    from proxy.model import LatencyProxy
    from proxy.synthetic import synthetic_dataset

    specs, y = synthetic_dataset("matmul", n_shapes=40)

    def fit_predict():
        return LatencyProxy("matmul", features="cbops", model=model).fit(specs, y).predict(specs)

    assert benchmark(fit_predict).shape == y.shape


def test_codegen(benchmark):
    from kernels.ir import codegen
    from tests.test_codegen import random_model

    m = random_model(np.random.default_rng(0), [(8, 8), (4, 4), (2, 2), (8, 8)])
    gen = benchmark(codegen.generate, m)
    assert gen.source
