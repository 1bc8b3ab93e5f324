import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MICO = [sys.executable, "-m", "harness.cli"]


@pytest.fixture(scope="session", autouse=True)
def _cache():
    """Builds go to the content-addressed cache (MICO_CACHE or ~/.cache/mico-hil):
    entries are keyed by the hash of everything that goes into them, so sharing
    them between runs is safe and keeps the RTL builds out of every test run.
    Tests of the cache itself use a private MICO_CACHE."""
    yield


def mico(*args, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    """Run the real `mico` CLI in a subprocess."""
    exe = shutil.which("mico", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else MICO
    res = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"mico {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="session")
def host_build():
    from harness import registry

    t = registry.get("host")
    return t, t.build()
