"""Typed errors.

Two families:

- `MicoError` (a ``ValueError``): bad input or state the caller can fix, in
  one sentence that names the thing (file, parameter, option) -- never a CLI
  flag, because library code is also called from Python.  The CLI
  (`harness.cli.MicoGroup`) prints it and exits 2; CLI modules add flag hints
  where they know them.  `UserError` is the same class under the name the CLI
  and older code use.
- `MeasureError`: a measurement that failed on a target; recorded in the
  store with its error class, the sweep goes on (the CLI exits 1).

The split mirrors TVM's build/run separation: build problems are user/toolchain
errors, run problems are per-measurement records.
"""

from __future__ import annotations


class MicoError(ValueError):
    """A problem the caller can fix, described in one sentence."""


#: the name the CLI catches (exit 2); the same class as MicoError
UserError = MicoError


class StoreError(MicoError):
    """A results store that cannot be opened, read or written as asked."""


class DiskFullError(MicoError):
    """A write failed for lack of space; the previous contents are intact."""


class ToolchainMissing(MicoError):
    """A compiler, simulator or other external tool is not installed."""


class BuildError(MicoError):
    """Building firmware / a simulator failed; carries the tool's stderr."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


class MeasureError(Exception):
    """A run on a target failed; `kind` is the store's error class."""

    kind = "crash"

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail


class TimeoutMeasureError(MeasureError):
    kind = "timeout"


class CrashError(MeasureError):
    kind = "crash"


class MismatchError(MeasureError):
    kind = "mismatch"


class DoesNotFitError(MeasureError):
    kind = "does_not_fit"


class UnsupportedError(MeasureError):
    kind = "unsupported"


class ProtocolError(MeasureError):
    """Frames that never arrived intact after the retry budget."""

    kind = "crash"


ERROR_KINDS = ("ok", "timeout", "crash", "mismatch", "does_not_fit", "unsupported")


class ParamError(UserError):
    """A target parameter that is unknown, of the wrong type or out of range."""


class TargetUnavailable(UserError):
    """A target that cannot be used here (missing tool, missing RTL, no board)."""


class BootError(UserError):
    """A target that was built but did not come up (no HELLO, dead board)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (or another stop signal) turned into an exception, so `finally`
    blocks and context managers end the firmware and simulator children
    instead of orphaning them; the CLI exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum
