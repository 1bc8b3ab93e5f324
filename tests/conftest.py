from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _cache():
    """Builds go to the content-addressed cache (MICO_CACHE or ~/.cache/mico-hil):
    entries are keyed by the hash of everything that goes into them, so sharing
    them between runs is safe and keeps the RTL builds out of every test run.
    Tests of the cache itself use a private MICO_CACHE."""
    yield


@pytest.fixture(scope="session")
def host_build():
    from harness import registry

    t = registry.get("host")
    return t, t.build()
