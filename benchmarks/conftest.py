"""pytest-benchmark suites of benchmarks/: their saved runs (the baselines that
--benchmark-compare reads) live in benchmarks/results/pytest-benchmark."""

from pathlib import Path

import pytest

STORAGE = Path(__file__).resolve().parent / "results" / "pytest-benchmark"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    opt = config.option
    if getattr(opt, "benchmark_storage", None) in (None, "file://./.benchmarks"):
        opt.benchmark_storage = f"file://{STORAGE}"
