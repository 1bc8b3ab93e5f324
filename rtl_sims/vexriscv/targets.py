"""VexRiscv targets (Verilator) and the bring-your-own VexiiRiscv adapter.

Every target is a Verilated RISC-V core inside the lean C++ testbench
(``tb.cpp``: RAM on both Wishbone buses, MMIO UART/exit/cycle counter) running
the one bench firmware, cross-compiled for rv32im with the RTL HAL.  The
simulator's stdin/stdout are the UART, so the host talks the bench protocol
over plain pipes (``ProcessTransport``).

A measurement is the cycle count of one kernel call, read from ``mcycle``
(Full, FullCfu) or the testbench's counter (Lite, standard), always after at
least one untimed call of the same kernel in the same loop (the firmware is
built with HAL_MIN_WARMUP=1): caches and branch predictors are warm, and the
run and its repeat are cycle-identical, as the deterministic-target policy
requires.  The simulated clock has no frequency; HELLO reports a nominal
100 MHz.

Target parameters (``--param KEY=VALUE``) are declared in `PARAMS` below
(``mico targets --json`` lists them with their help): the RAM size and the
Wishbone wait states are part of the fingerprint, the cycle and time bounds
are not.  ``vexiiriscv`` also takes ``core_verilog=FILE[,FILE...]``,
``core_top=NAME`` or ``profile=FILE.toml`` and the core's port names (see
docs/vexiiriscv.md and profiles/vexiiriscv.example.toml); those enter the
fingerprint through the core description and the Verilog's digest.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import BuildError, CrashError, MeasureError, ToolchainMissing, UserError
from harness.params import Param, at_least, between, boolean, integer, number, text
from harness.protocol import Client
from harness.registry import register
from harness.target import (MODEL_IMAGES, BuildResult, Capabilities, DeviceSession, ModelToolchain, Target,
                            fingerprint_of)
from harness.transports import ProcessTransport
from kernels import toolchain as tc
from kernels.ir import generator_digest

from .. import verilator as vl

HERE = Path(__file__).resolve().parent
TB_SOURCES = [HERE / "tb.cpp"]
MICO_TOP = HERE / "vexriscv_mico_top.v"
CFU_VERILOG = HERE.parent / "cfu" / "mico_simd_cfu.v"
SIMD_SOURCE = tc.SRC_DIR / "simd.c"
CFU_HEADER = tc.INCLUDE_DIR / "mico_cfu.h"

RV_GCC = "riscv64-unknown-elf-gcc"
RV_OBJCOPY = "riscv64-unknown-elf-objcopy"
RV_ARCH = ["-march=rv32im", "-mabi=ilp32"]
FW_CFLAGS = [*RV_ARCH, "-O2", "-std=gnu11", "-ffreestanding", "-nostdlib", "-nostartfiles",
             "-fno-tree-loop-distribute-patterns", "-ffunction-sections", "-fdata-sections", "-fno-strict-aliasing",
             "-Wall", "-Wextra", "-Wno-unused-parameter"]
FW_SOURCES = ("crt0.S", "bench.c", "link.c", "hal_rtl.c", "libc_min.c")
DEFAULT_MEM_KIB = 4096
MISSING_GCC = f"{RV_GCC} not found: run make setup"
MISSING_VEX = "pythondata-cpu-vexriscv is not installed: run make setup"
NO_VEXII = ("no VexiiRiscv Verilog configured: generate it with sbt (see docs/vexiiriscv.md) "
            "and pass --param core_verilog=FILE")
VEXII_ENV = "MICO_VEXIIRISCV_VERILOG"

CORE_KEYS = {"verilog", "top", "ibus", "dbus", "clock", "reset", "reset_active_low", "reset_vector_port",
             "address", "ram_base", "mmio_base", "timer", "isa"}

PARAMS = (
    Param("mem_kib", integer, DEFAULT_MEM_KIB, "RAM size in KiB", check=between(256, 1 << 20)),
    Param("wait_states", integer, 0, "cycles every Wishbone beat waits for its ACK", check=between(0, 64)),
    Param("cycle_limit", integer, 0, "stop the simulator (exit 124, a crash record) after this many cycles "
          "without reading host input, boot included; 0 = no bound beyond timeout_s",
          in_fingerprint=False, check=at_least(0)),
    Param("timeout_s", number, None, "wall-clock bound in seconds for one request "
          "(default 300, 900 on vexriscv-cacheless)", in_fingerprint=False, check=at_least(1)),
)
_CORE_HELP = "core profile setting (see docs/vexiiriscv.md); overrides the profile file"
BYO_PARAMS = PARAMS + (
    Param("core_verilog", text, None, "the core's Verilog, FILE[,FILE...]", in_fingerprint=False),
    Param("core_top", text, None, "the core's top module (default VexiiRiscv)", in_fingerprint=False),
    Param("profile", text, None, "a core profile FILE.toml ([core] table)", in_fingerprint=False),
    *(Param(k, text, None, _CORE_HELP, in_fingerprint=False)
      for k in ("ibus", "dbus", "clock", "reset", "reset_vector_port", "address", "timer", "isa")),
    Param("reset_active_low", boolean, None, _CORE_HELP, in_fingerprint=False),
    Param("ram_base", integer, None, _CORE_HELP, in_fingerprint=False),
    Param("mmio_base", integer, None, _CORE_HELP, in_fingerprint=False),
)


def tools_missing() -> str:
    """One sentence naming the first missing build tool, or ""."""
    try:
        vl.find_verilator()
    except ToolchainMissing as e:
        return str(e)
    if not shutil.which(RV_GCC):
        return MISSING_GCC
    for tool, pkg in (("make", "make"), ("c++", "g++")):
        if not shutil.which(tool):
            return f"{tool} not found (needed to compile the Verilated model): install {pkg} or run make setup"
    return ""


def vexriscv_verilog_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("pythondata_cpu_vexriscv")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "verilog"
    return d if d.is_dir() else None


@dataclass(frozen=True)
class CoreProfile:
    """How the testbench drives one core: its RTL, ports and memory map."""

    verilog: tuple[Path, ...]
    top: str = "VexRiscv"
    ibus: str = "iBusWishbone_"      # Wishbone signal prefix ("" = no such bus)
    dbus: str = "dBusWishbone_"
    clock: str = "clk"
    reset: str = "reset"
    reset_active_low: bool = False
    reset_vector_port: str = "externalResetVector"   # "" when the reset vector is fixed in the RTL
    address: str = "word"            # Wishbone ADR unit: "word" (ADR = byte address >> 2) or "byte"
    ram_base: int = 0x40000000
    mmio_base: int = 0xF0000000      # must be uncached by the core (VexRiscv: bit 31 set)
    timer: str = "testbench"         # "mcycle" (core CSR) or "testbench" (MMIO counter)
    isa: str = "rv32im"
    cfu: bool = False

    def check(self) -> None:
        if not self.verilog:
            raise UserError("the core profile names no Verilog file.")
        for f in self.verilog:
            if not f.is_file():
                raise UserError(f"core Verilog {f} does not exist; generate it first (see docs/vexiiriscv.md).")
        if not self.ibus and not self.dbus:
            raise UserError("the core profile needs at least one Wishbone bus prefix (ibus or dbus).")
        if self.address not in ("word", "byte"):
            raise UserError(f"address must be 'word' or 'byte', not {self.address!r}.")
        if self.timer not in ("mcycle", "testbench"):
            raise UserError(f"timer must be 'mcycle' or 'testbench', not {self.timer!r}.")
        if self.ram_base % 4096 or self.mmio_base % 4096 or self.ram_base >= self.mmio_base:
            raise UserError("ram_base and mmio_base must be 4 KiB aligned with the RAM below the MMIO window.")

    def defines(self) -> dict[str, str]:
        d = {"TB_CLK": self.clock, "TB_RESET": self.reset, "TB_RESET_ACTIVE_LOW": str(int(self.reset_active_low)),
             "TB_WORD_ADDR": str(int(self.address == "word")), "TB_RAM_BASE": f"0x{self.ram_base:08x}u",
             "TB_MMIO_BASE": f"0x{self.mmio_base:08x}u"}
        if self.ibus:
            d["TB_IBUS"] = self.ibus
        if self.dbus:
            d["TB_DBUS"] = self.dbus
        if self.reset_vector_port:
            d["TB_RESET_VECTOR"] = self.reset_vector_port
            d["TB_RESET_VECTOR_VALUE"] = f"0x{self.ram_base:08x}u"
        return d

    def describe(self) -> dict:
        d = {k: getattr(self, k) for k in ("top", "ibus", "dbus", "clock", "reset", "reset_active_low",
                                            "reset_vector_port", "address", "timer", "isa", "cfu")}
        d["ram_base"] = f"0x{self.ram_base:08x}"
        d["mmio_base"] = f"0x{self.mmio_base:08x}"
        d["verilog"] = [p.name for p in self.verilog]
        return d


class VexRiscvTarget(Target):
    """A Verilated core + testbench running the rv32im bench firmware."""

    deterministic = True
    timer_unit = "cycles"
    kernel_timeout = 300.0
    boot_timeout = 60.0

    variant = ""            # Verilog file in pythondata-cpu-vexriscv
    dcache_bytes = 4096     # VexRiscv standard / Full / FullCfu: 4 KiB data cache (TOOLCHAIN.md)
    timer = "testbench"
    cfu = False
    isa = "rv32im"
    PARAMS = PARAMS
    CAPABILITIES = MODEL_IMAGES

    def __init__(self, **params):
        super().__init__(**params)
        self.mem_kib = self.params["mem_kib"]
        self.wait_states = self.params["wait_states"]
        self.cycle_limit = self.params["cycle_limit"]
        if self.params["timeout_s"] is not None:
            self.kernel_timeout = float(self.params["timeout_s"])

    def capabilities(self) -> Capabilities:
        return replace(self.CAPABILITIES, memory_bytes=self.mem_kib * 1024, dcache_bytes=self.dcache_bytes)

    # ---- what is simulated ------------------------------------------------------------
    def profile(self) -> CoreProfile:
        d = vexriscv_verilog_dir()
        if d is None:
            raise ToolchainMissing(MISSING_VEX)
        files = [d / self.variant]
        top = "VexRiscv"
        if self.cfu:
            files += [CFU_VERILOG, MICO_TOP]
            top = "vexriscv_mico_top"
        return CoreProfile(tuple(files), top=top, timer=self.timer, isa=self.isa, cfu=self.cfu)

    def available(self) -> tuple[bool, str]:
        why = tools_missing()
        if why:
            return False, why
        try:
            prof = self.profile()
        except UserError as e:
            return False, str(e)
        missing = [f for f in prof.verilog if not f.is_file()]
        if missing:
            return False, f"{missing[0]} is missing: reinstall pythondata-cpu-vexriscv (run make setup)."
        return True, ""

    # ---- build -------------------------------------------------------------------------
    def _require(self) -> CoreProfile:
        ok, why = self.available()
        if not ok:
            raise ToolchainMissing(why)
        prof = self.profile()
        prof.check()
        return prof

    def design(self, prof: CoreProfile) -> vl.ModelDesign:
        return vl.ModelDesign(name=self.name, verilog=list(prof.verilog), top=prof.top, tb_sources=TB_SOURCES,
                              defines=prof.defines())

    def firmware_defines(self, prof: CoreProfile) -> list[str]:
        d = [f'-DMICO_TARGET_ID="{self.name}"', f'-DMICO_ISA="{prof.isa}"', f"-DMMIO_BASE=0x{prof.mmio_base:08X}",
             "-DHAL_MIN_WARMUP=1"]
        if prof.timer == "mcycle":
            d.append("-DHAL_TIMER_MCYCLE")
        if prof.cfu:
            d.append("-DMICO_CFU")
        return d

    def build_firmware(self, prof: CoreProfile) -> tc.Artifact:
        gcc = shutil.which(RV_GCC)
        if not gcc:
            raise ToolchainMissing(MISSING_GCC)
        fw = tc.FIRMWARE_DIR
        srcs = [fw / s for s in FW_SOURCES] + tc.kernel_sources()
        inputs = srcs + [fw / "rv32.ld"] + sorted(fw.glob("*.h")) + sorted(tc.INCLUDE_DIR.glob("*.h"))
        defs = self.firmware_defines(prof)
        ldflags = [f"-Wl,-T,{fw / 'rv32.ld'}", "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments",
                   f"-Wl,--defsym=__mico_ram_base=0x{prof.ram_base:08x}", "-lgcc"]
        objcopy = shutil.which(RV_OBJCOPY) or RV_OBJCOPY

        def compile_fw(out: Path) -> None:
            tc.run_tool([gcc, *FW_CFLAGS, *defs, "-I", tc.INCLUDE_DIR, "-I", fw, *srcs, *ldflags,
                         "-o", out / "bench.elf"])
            tc.run_tool([objcopy, "-O", "binary", out / "bench.elf", out / "bench.bin"])

        try:
            return tc.build_cached("firmware-rv32", inputs, [tc.tool_identity(gcc), *FW_CFLAGS, *defs, *ldflags],
                                   "bench.elf", compile_fw)
        except tc.ToolError as e:
            if e.missing:
                raise ToolchainMissing(str(e)) from None
            raise BuildError(f"building the {self.name} firmware failed: {e}", e.stderr) from None

    def build(self) -> BuildResult:
        prof = self._require()
        v = vl.find_verilator()
        sim = vl.build_model(self.design(prof))
        fw = self.build_firmware(prof)
        gcc_id = tc.tool_identity(shutil.which(RV_GCC) or RV_GCC)
        parts = {"target": self.name, "simulator": sim.digest, "firmware": fw.digest, "verilator": v.version,
                 "cc": gcc_id, **self.fingerprint_params(), "core": prof.describe(), "generator": generator_digest()}
        info = {"simulator_digest": sim.digest, "firmware_digest": fw.digest, "verilator": v.version,
                "verilator_source": v.source, "cc": gcc_id, "cflags": FW_CFLAGS, "mem_kib": self.mem_kib,
                "wait_states": self.wait_states, "core": prof.describe(), "verilator_flags": vl.FAST_FLAGS}
        return BuildResult(self.name, fingerprint_of(parts), {"simulator": str(sim.path), "firmware": str(fw.path)},
                           info=info, cached=sim.cached and fw.cached)

    # ---- run ---------------------------------------------------------------------------
    def command(self, build: BuildResult) -> list[str]:
        argv = [build.artifacts["simulator"], "--mem-kib", str(self.mem_kib), "--wait-states", str(self.wait_states)]
        if self.cycle_limit:
            argv += ["--max-busy-cycles", str(self.cycle_limit)]
        return argv + [build.artifacts["firmware"]]

    def open(self, build: BuildResult) -> DeviceSession:
        for k in ("simulator", "firmware"):
            if not Path(build.artifacts[k]).exists():
                raise CrashError(f"the {k} of {self.name} is gone from the build cache; build again")
        t = ProcessTransport(self.command(build))
        # a pipe neither loses nor damages bytes: a missing reply means a hung or dead simulator,
        # and resending would only multiply the wait, so the client does not retry
        client = Client(t, timeout=self.boot_timeout, retries=0)
        try:
            hello = client.hello()
        except MeasureError as e:
            detail = t.describe_failure()
            t.abort()
            raise CrashError(f"{self.name} did not answer HELLO: {e}", detail) from None
        client.timeout = self.kernel_timeout
        return DeviceSession(t, client, hello)

    def model_toolchain(self) -> ModelToolchain:
        gcc = shutil.which(RV_GCC)
        if not gcc:
            raise ToolchainMissing(MISSING_GCC)
        # -mno-relax: the image is linked at 0, where the linker would turn auipc+addi pairs into
        # x0-relative (absolute) accesses that break once the image is copied elsewhere
        return ModelToolchain(cc=[gcc], cflags=[*RV_ARCH, "-mcmodel=medany", "-mno-relax", "-O2"],
                              objcopy=shutil.which(RV_OBJCOPY) or RV_OBJCOPY, triple="riscv32-rv32im")


class VexRiscvCacheless(VexRiscvTarget):
    name = "vexriscv-cacheless"
    description = ("VexRiscv Lite (rv32im, 2 KiB I$, no D$, iterative mul/div) in Verilator; "
                   "timed by the testbench cycle counter")
    variant = "VexRiscv_Lite.v"
    kernel_timeout = 900.0   # ~8x the cycles of the cached cores for the same kernel
    dcache_bytes = 0        # Lite: instruction cache only


class VexRiscvSmall(VexRiscvTarget):
    name = "vexriscv-small"
    description = ("VexRiscv standard (rv32im, 4 KiB I$ + 4 KiB D$, 1-cycle mul) in Verilator; "
                   "timed by the testbench cycle counter")
    variant = "VexRiscv.v"


class VexRiscvFull(VexRiscvTarget):
    name = "vexriscv-full"
    description = "VexRiscv Full (rv32im, 4 KiB I$ + 4 KiB D$, 1-cycle mul) in Verilator; timed by mcycle"
    variant = "VexRiscv_Full.v"
    timer = "mcycle"


class VexRiscvMico(VexRiscvTarget):
    name = "vexriscv-mico"
    description = ("VexRiscv FullCfu + the MiCo mixed-precision SIMD unit on its CFU port; "
                   "bench firmware with the SIMD kernels; timed by mcycle")
    variant = "VexRiscv_FullCfu.v"
    timer = "mcycle"
    cfu = True
    isa = "rv32im+cfu(mico-simd)"

    def available(self) -> tuple[bool, str]:
        ok, why = super().available()
        if not ok:
            return ok, why
        for f, what in ((CFU_VERILOG, "the MiCo SIMD unit"), (SIMD_SOURCE, "the SIMD kernels"),
                        (CFU_HEADER, "the CFU instruction header")):
            if not f.is_file():
                rel = f.relative_to(HERE.parents[1]) if f.is_relative_to(HERE.parents[1]) else f
                return False, f"{rel} ({what}) is missing from this checkout."
        return True, ""


class VexiiRiscvTarget(VexRiscvTarget):
    """Bring-your-own core: user Verilog with VexRiscv-style Wishbone ports."""

    name = "vexiiriscv"
    description = ("bring-your-own VexiiRiscv (or any rv32im core with Wishbone buses): "
                   "--param core_verilog=FILE core_top=NAME, or profile=FILE.toml")
    PARAMS = BYO_PARAMS

    def _config(self) -> dict | None:
        """The core settings from (lowest to highest priority) env, profile file, params."""
        p = {k: v for k, v in self.params.items() if v is not None}
        cfg: dict = {}
        base = Path.cwd()
        env = os.environ.get(VEXII_ENV, "").strip()
        prof_file = p.get("profile")
        if not prof_file and env.endswith(".toml"):
            prof_file = env
        elif env and "core_verilog" not in p:
            cfg["verilog"] = env
        if prof_file:
            path = Path(str(prof_file)).expanduser()
            try:
                data = tomllib.loads(path.read_text())
            except FileNotFoundError:
                raise UserError(f"core profile {path} does not exist.") from None
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise UserError(f"cannot read the core profile {path}: {e}.") from None
            core = data.get("core", data)
            unknown = sorted(set(core) - CORE_KEYS)
            if unknown:
                raise UserError(f"core profile {path}: unknown key {unknown[0]!r}; known: {', '.join(sorted(CORE_KEYS))}.")
            cfg.update(core)
            base = path.resolve().parent
        if "core_verilog" in p:
            cfg["verilog"] = p["core_verilog"]
            base = Path.cwd()
        if "core_top" in p:
            cfg["top"] = p["core_top"]
        for k in CORE_KEYS - {"verilog", "top"}:
            if k in p:
                cfg[k] = p[k]
        if "verilog" not in cfg:
            return None
        v = cfg["verilog"]
        files = v if isinstance(v, list) else [s for s in str(v).split(",") if s.strip()]
        cfg["verilog"] = tuple((base / Path(str(f).strip()).expanduser()).resolve() for f in files)
        cfg.setdefault("top", "VexiiRiscv")
        return cfg

    def profile(self) -> CoreProfile:
        cfg = self._config()
        if cfg is None:
            raise UserError(NO_VEXII)
        kw = dict(cfg)
        for k, parse in (("ram_base", integer), ("mmio_base", integer), ("reset_active_low", boolean)):
            if k in kw:
                try:
                    kw[k] = parse(kw[k])
                except ValueError as e:
                    raise UserError(f"core setting {k}={kw[k]!r} must be {e}.") from None
        for k in ("top", "ibus", "dbus", "clock", "reset", "reset_vector_port", "address", "timer", "isa"):
            if k in kw:
                kw[k] = str(kw[k])
        return CoreProfile(**kw)

    def available(self) -> tuple[bool, str]:
        why = tools_missing()
        if why:
            return False, why
        try:
            prof = self.profile()
            prof.check()
        except UserError as e:
            return False, str(e)
        return True, ""


for _cls in (VexRiscvCacheless, VexRiscvSmall, VexRiscvFull, VexRiscvMico, VexiiRiscvTarget):
    register(_cls.name, _cls)
