"""Run the real `mico` CLI in a subprocess (shared by the test modules)."""

import shutil
import subprocess
import sys
from pathlib import Path

MICO = [sys.executable, "-m", "harness.cli"]


def mico(*args, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    """Run the real `mico` CLI in a subprocess."""
    exe = shutil.which("mico", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else MICO
    res = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"mico {' '.join(map(str, args))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res
