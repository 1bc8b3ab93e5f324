"""The host bench firmware built with AddressSanitizer and UBSan, for hostile-input tests.

Built through the content-addressed cache like every other artefact (kind
``firmware-host-asan``).  Any sanitizer report aborts the process
(``-fno-sanitize-recover=all``, ``halt_on_error``), so a finding shows up as a
dead link plus the report on stderr, never as a line lost in a log.  The tensor
arena is small (``ARENA_MB``): bench.c poisons the gaps between the tensors it
hands out when ASan is on, and a smaller arena keeps that cheap.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness import host
from kernels import toolchain as tc

ARENA_MB = 64
SAN_FLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
             "-fno-omit-frame-pointer", f"-DHOST_ARENA_MB={ARENA_MB}"]
SAN_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=0:exitcode=86:print_summary=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
}
REPORT_MARKERS = ("AddressSanitizer", "runtime error:", "UndefinedBehaviorSanitizer", "LeakSanitizer")


def build() -> Path:
    """Path of the sanitized host firmware (compiled once per content hash)."""
    gcc = tc.find_tool("gcc", "install gcc (apt-get install build-essential)")
    cflags = [*host.CFLAGS, *SAN_FLAGS]
    srcs = [tc.FIRMWARE_DIR / s for s in host.FW_SOURCES] + tc.kernel_sources()

    def compile_fw(out: Path) -> None:
        tc.run_tool([gcc, *cflags, "-I", tc.INCLUDE_DIR, "-I", tc.FIRMWARE_DIR, *srcs, "-o", out / "bench-asan"],
                    timeout=600)

    art = tc.build_cached("firmware-host-asan", host.firmware_inputs("hal_host.c"),
                          [tc.tool_identity(gcc), *cflags], "bench-asan", compile_fw)
    return art.path


def env() -> dict[str, str]:
    """The process environment for a sanitized firmware run."""
    return {**os.environ, **SAN_ENV}


def findings(stderr_text: str) -> list[str]:
    """The sanitizer report lines in a firmware's stderr (empty when clean)."""
    return [line for line in stderr_text.splitlines() if any(m in line for m in REPORT_MARKERS)]
