"""Compilers and the content-addressed build cache.

Every artefact (host firmware, kernel shared library, model blob, later RTL
models) is built into ``<cache>/<kind>/<hash>/`` where the hash covers the
sources, the flags and the compiler's identity.  An unchanged rebuild compiles
nothing, and the hash doubles as the artefact's fingerprint in measurement
records.  Builds write to a temporary folder and rename it into place, so a
killed build never leaves a half-written artefact that looks finished.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

PKG_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = PKG_DIR / "include"
SRC_DIR = PKG_DIR / "src"
FIRMWARE_DIR = PKG_DIR / "firmware"


class ToolError(Exception):
    """A tool is missing or failed; message is one sentence, stderr kept."""

    def __init__(self, message: str, stderr: str = "", missing: bool = False):
        super().__init__(message)
        self.stderr = stderr
        self.missing = missing


def cache_root() -> Path:
    root = os.environ.get("MICO_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mico-hil"


def kernel_sources() -> list[Path]:
    return sorted(SRC_DIR.glob("*.c"))


def find_tool(name: str, hint: str = "run make setup") -> str:
    path = shutil.which(name)
    if not path:
        raise ToolError(f"{name} not found: {hint}", missing=True)
    return path


_version_cache: dict[str, str] = {}


def tool_identity(path: str) -> str:
    """`<tool> --version` first line, to put the compiler into build hashes."""
    if path not in _version_cache:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
            _version_cache[path] = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else path
        except (OSError, subprocess.SubprocessError):
            _version_cache[path] = path
    return _version_cache[path]


def content_hash(files: Iterable[Path], extra: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        h.update(f.name.encode())
        h.update(b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    for e in extra:
        h.update(str(e).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class Artifact:
    path: Path          # the main output file
    digest: str         # content hash of inputs (the fingerprint part)
    cached: bool        # True if nothing was compiled


def build_cached(kind: str, inputs: Iterable[Path], extra: Sequence[str], out_name: str,
                 build: Callable[[Path], None]) -> Artifact:
    """Return ``<cache>/<kind>/<hash>/<out_name>``, running ``build(tmpdir)`` if absent.

    ``build`` must write ``out_name`` into the directory it is given.
    """
    inputs = list(inputs)
    digest = content_hash(inputs, extra)
    final = cache_root() / kind / digest
    target = final / out_name
    if target.exists():
        return Artifact(target, digest, True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=final.parent))
    try:
        build(tmp)
        if not (tmp / out_name).exists():
            raise ToolError(f"build of {kind} produced no {out_name}")
        try:
            os.rename(tmp, final)
        except OSError:
            # another process won the race; its result is identical by construction
            if not target.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Artifact(target, digest, False)


def run_tool(args: Sequence[str], timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a build tool; a failure raises ToolError with its stderr."""
    try:
        res = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise ToolError(f"{args[0]} not found: run make setup", missing=True) from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(str(args[0])).name} timed out after {timeout:.0f} s") from None
    if res.returncode != 0:
        first = (res.stderr.strip().splitlines() or ["(no output)"])
        err_lines = [l for l in first if "error" in l.lower()] or first
        raise ToolError(f"{Path(str(args[0])).name} failed: {err_lines[0]}", stderr=res.stderr)
    return res
