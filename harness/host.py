"""The host CPU as a target: the bench firmware built natively, over pipes.

Timing is in nanoseconds from CLOCK_MONOTONIC, so host numbers are noisy and
get the statistical treatment (warm-up, adaptive repeats, median/IQR).  The
CPU model is part of the fingerprint: numbers from two machines never mix.
"""

from __future__ import annotations

import platform
from pathlib import Path

from kernels import toolchain as tc

from .errors import BuildError, CrashError, MeasureError, ToolchainMissing
from .protocol import Client
from .registry import register
from kernels.ir import generator_digest

from .target import MODEL_IMAGES, BuildResult, DeviceSession, ModelToolchain, Target, fingerprint_of
from .transports import ProcessTransport

FW_SOURCES = ("bench.c", "link.c", "hal_host.c")
CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-fno-strict-aliasing"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def firmware_inputs(hal: str) -> list[Path]:
    fw = tc.FIRMWARE_DIR
    files = [fw / "bench.c", fw / "link.c", fw / hal]
    files += sorted(fw.glob("*.h")) + sorted(tc.INCLUDE_DIR.glob("*.h")) + tc.kernel_sources()
    return files


class HostTarget(Target):
    name = "host"
    description = "the host CPU: bench firmware built with the native gcc, timed with CLOCK_MONOTONIC (ns)"
    deterministic = False
    timer_unit = "ns"
    kernel_timeout = 120.0
    PARAMS = ()             # none: any --param is refused
    CAPABILITIES = MODEL_IMAGES

    def available(self) -> tuple[bool, str]:
        try:
            tc.find_tool("gcc", "install gcc (apt-get install build-essential) or run make setup")
        except tc.ToolError as e:
            return False, str(e)
        return True, ""

    def build(self) -> BuildResult:
        try:
            gcc = tc.find_tool("gcc", "install gcc (apt-get install build-essential) or run make setup")
        except tc.ToolError as e:
            raise ToolchainMissing(str(e)) from None
        inputs = firmware_inputs("hal_host.c")
        ident = tc.tool_identity(gcc)

        def compile_fw(out: Path) -> None:
            srcs = [tc.FIRMWARE_DIR / s for s in FW_SOURCES] + tc.kernel_sources()
            tc.run_tool([gcc, *CFLAGS, "-I", tc.INCLUDE_DIR, "-I", tc.FIRMWARE_DIR, *srcs, "-o", out / "bench-host"])

        try:
            art = tc.build_cached("firmware-host", inputs, [ident, *CFLAGS], "bench-host", compile_fw)
        except tc.ToolError as e:
            raise BuildError(f"building the host firmware failed: {e}", e.stderr) from None
        parts = {"target": self.name, "firmware": art.digest, "cpu": cpu_model(), "cc": ident,
                 "generator": generator_digest()}
        return BuildResult(self.name, fingerprint_of(parts), {"firmware": str(art.path)},
                           info={"cpu": cpu_model(), "cc": ident, "firmware_digest": art.digest,
                                 "cflags": CFLAGS}, cached=art.cached)

    def open(self, build: BuildResult) -> DeviceSession:
        t = ProcessTransport([build.artifacts["firmware"]])
        client = Client(t, timeout=self.kernel_timeout)
        try:
            hello = client.hello()
        except MeasureError as e:
            detail = t.describe_failure()
            t.abort()
            raise CrashError(f"host firmware did not answer HELLO: {e}", detail) from None
        return DeviceSession(t, client, hello)

    def model_toolchain(self) -> ModelToolchain:
        gcc = tc.find_tool("gcc")
        return ModelToolchain(cc=[gcc], cflags=["-O2", "-fcf-protection=none"], objcopy="objcopy",
                              triple=platform.machine())


register("host", HostTarget)
