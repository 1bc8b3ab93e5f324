"""The bench firmware for a LiteX SoC: bench.c + link.c + hal_litex.c, built
against that SoC's generated headers, cached by content hash.

The compile flags are the ones the Verilator VexRiscv targets use (rtl_sims/
vexriscv/targets.py FW_CFLAGS; keep them in step), so a kernel runs the same
instructions on ``board:litex-sim`` and ``vexriscv-small`` and only the SoC
around the core differs.
"""

from __future__ import annotations

import json
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BuildError, ToolchainMissing, UserError
from kernels import toolchain as tc

from .profiles import Profile

RV_GCC = "riscv64-unknown-elf-gcc"
RV_OBJCOPY = "riscv64-unknown-elf-objcopy"
BASE_CFLAGS = ["-O2", "-std=gnu11", "-ffreestanding", "-nostdlib", "-nostartfiles",
               "-fno-tree-loop-distribute-patterns", "-ffunction-sections", "-fdata-sections", "-fno-strict-aliasing",
               "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function"]
FW_SOURCES = ("crt0.S", "bench.c", "link.c", "hal_litex.c", "libc_min.c")
GENERATED = ("csr.h", "soc.h", "mem.h")


@dataclass(frozen=True)
class SocHeaders:
    """Where a LiteX SoC's generated headers and memory map are."""

    build_dir: Path          # the SoC build folder (software/include/generated/ inside)
    cpu_dir: Path            # litex/soc/cores/cpu/<cpu>/ (system.h, csr-defs.h)
    litex_include: Path      # litex/soc/software/include (hw/common.h)
    memories: dict           # csr.json "memories"

    @property
    def generated(self) -> Path:
        return self.build_dir / "software" / "include" / "generated"

    def files(self) -> list[Path]:
        out = [self.generated / g for g in GENERATED]
        out += sorted(self.cpu_dir.glob("*.h")) + [self.litex_include / "hw" / "common.h"]
        return [f for f in out if f.exists()]


def _litex_dir() -> Path:
    try:
        import litex
    except ImportError:
        raise ToolchainMissing("LiteX is not installed: pip install litex==2024.12.") from None
    return Path(litex.__file__).resolve().parent


def soc_headers(build_dir: Path, cpu: str) -> SocHeaders:
    build_dir = Path(build_dir)
    gen = build_dir / "software" / "include" / "generated"
    if not (gen / "csr.h").exists():
        raise UserError(f"{gen}/csr.h does not exist: point soc.build_dir at the board's LiteX build folder "
                        "(built with --timer-uptime).")
    lx = _litex_dir()
    cpu_dir = None
    vm = gen / "variables.mak"
    if vm.exists():
        m = re.search(r"^CPU_DIRECTORY=(.+)$", vm.read_text(), re.M)
        if m and Path(m.group(1).strip()).is_dir():
            cpu_dir = Path(m.group(1).strip())
    if cpu_dir is None:
        cpu_dir = lx / "soc" / "cores" / "cpu" / cpu
    if not (cpu_dir / "system.h").exists():
        raise UserError(f"no system.h for CPU {cpu!r} in {cpu_dir}: check soc.cpu in the board profile.")
    memories = {}
    cj = build_dir / "csr.json"
    if cj.exists():
        try:
            memories = json.loads(cj.read_text()).get("memories", {})
        except ValueError:
            memories = {}
    return SocHeaders(build_dir, cpu_dir, lx / "soc" / "software" / "include", memories)


def check_memory(profile: Profile, soc: SocHeaders) -> None:
    mr = soc.memories.get("main_ram")
    if mr and (int(mr["base"]) != profile.main_ram_base or int(mr["size"]) < profile.main_ram_size):
        raise UserError(f"board profile {profile.name}: memory.main_ram (0x{profile.main_ram_base:08x}, "
                        f"0x{profile.main_ram_size:x}) does not match the SoC's main_ram (0x{int(mr['base']):08x}, "
                        f"0x{int(mr['size']):x}); fix the profile.")


def build(profile: Profile, soc: SocHeaders, target_id: str) -> tc.Artifact:
    """``<cache>/firmware-litex/<hash>/bench.elf`` (+ bench.bin, the image serialboot sends)."""
    gcc = shutil.which(RV_GCC)
    if not gcc:
        raise ToolchainMissing(f"{RV_GCC} not found: apt-get install gcc-riscv64-unknown-elf.")
    objcopy = shutil.which(RV_OBJCOPY) or RV_OBJCOPY
    check_memory(profile, soc)
    fw = tc.FIRMWARE_DIR
    srcs = [fw / s for s in FW_SOURCES] + tc.kernel_sources()
    ld = fw / "rv32_litex.ld"
    inputs = srcs + [ld] + sorted(fw.glob("*.h")) + sorted(tc.INCLUDE_DIR.glob("*.h")) + soc.files()
    cflags = [f"-march={profile.march}", f"-mabi={profile.mabi}", *BASE_CFLAGS, *profile.cflags]
    defs = [f'-DMICO_TARGET_ID="{target_id}"', f'-DMICO_ISA="{profile.march}"', "-DHAL_MIN_WARMUP=1", "-DMICO_HAL_LITEX"]
    if profile.timer == "mcycle":
        defs.append("-DHAL_TIMER_MCYCLE")
    incs = ["-I", tc.INCLUDE_DIR, "-I", fw, "-I", soc.build_dir / "software" / "include", "-I", soc.cpu_dir,
            "-I", soc.litex_include]
    ldflags = [f"-Wl,-T,{ld}", "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments",
               f"-Wl,--defsym=__mico_ram_base=0x{profile.main_ram_base:08x}",
               f"-Wl,--defsym=__mico_ram_size=0x{profile.main_ram_size:x}", "-lgcc"]

    def compile_fw(out: Path) -> None:
        tc.run_tool([gcc, *cflags, *defs, *incs, *srcs, *ldflags, "-o", out / "bench.elf"])
        tc.run_tool([objcopy, "-O", "binary", out / "bench.elf", out / "bench.bin"])
        img = (out / "bench.bin").read_bytes()
        (out / "image.json").write_text(json.dumps({"size": len(img), "crc32": f"{zlib.crc32(img):08x}",
                                                     "base": f"0x{profile.main_ram_base:08x}"}))

    try:
        return tc.build_cached("firmware-litex", inputs, [tc.tool_identity(gcc), *cflags, *defs, *ldflags],
                               "bench.elf", compile_fw)
    except tc.ToolError as e:
        if e.missing:
            raise ToolchainMissing(str(e)) from None
        raise BuildError(f"building the bench firmware for board {profile.name} failed: {e}", e.stderr) from None
