"""Generate and build the emulated board: LiteX SoC + VexRiscv in litex_sim.

Run as a subprocess (``python -m boards.litex.simsoc --out DIR ...``) by
``boards.emulator.build_soc``, which caches DIR by content hash: migen/LiteX
keep global state and print a lot, and a subprocess gets a timeout.

The SoC is litex_sim's ``SimSoC`` (the same SoC ``litex_sim`` builds):
VexRiscv (``--cpu-variant``), the BIOS in integrated ROM, integrated SRAM,
integrated main RAM (where serialboot loads the firmware), the LiteX timer with
its 64-bit uptime counter, and the UART on the ``mico_uart_tcp`` sim module
(``sim_modules/``: TCP on 127.0.0.1 with flow control).  The gateware and
the BIOS are built here; the Verilator model is then compiled by running the
generated ``build_sim.sh`` (LiteX only compiles it when it also runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = HERE / "sim_modules"
EXTRA_MODS = ["mico_uart_tcp"]
PORT_PLACEHOLDER = 1   # sim_config.js is rewritten with the real port at every start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-type", default="vexriscv")
    ap.add_argument("--cpu-variant", default="standard")
    ap.add_argument("--main-ram-size", type=lambda s: int(s, 0), default=0x400000)
    ap.add_argument("--rom-size", type=lambda s: int(s, 0), default=0x20000)
    ap.add_argument("--sram-size", type=lambda s: int(s, 0), default=0x2000)
    ap.add_argument("--opt-level", default="O2")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gateware-only", action="store_true", help="generate, do not compile the model")
    a = ap.parse_args(argv)

    from litex.build.sim.config import SimConfig
    from litex.soc.integration.builder import Builder
    from litex.tools.litex_sim import SimSoC

    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    mods = out / "sim_modules"
    if mods.exists():
        shutil.rmtree(mods)
    shutil.copytree(MODULES, mods)

    soc = SimSoC(cpu_type=a.cpu_type, cpu_variant=a.cpu_variant, uart_name="sim", timer_uptime=True,
                 integrated_rom_size=a.rom_size, integrated_sram_size=a.sram_size,
                 integrated_main_ram_size=a.main_ram_size)
    # the BIOS tests main RAM at boot (2 MiB by default: seconds of simulated time); 8 KiB is enough here
    soc.add_constant("MEMTEST_DATA_SIZE", 8 * 1024)
    soc.add_constant("MEMTEST_ADDR_SIZE", 8 * 1024)
    sim_config = SimConfig()
    sim_config.add_clocker("sys_clk", freq_hz=int(soc.sys_clk_freq))
    sim_config.add_module("mico_uart_tcp", "serial", args={"port": PORT_PLACEHOLDER})
    builder = Builder(soc, output_dir=str(out), csr_json=str(out / "csr.json"), compile_software=True,
                      compile_gateware=True)
    builder.build(sim_config=sim_config, run=False, interactive=False, extra_mods=EXTRA_MODS,
                  extra_mods_path=str(mods), opt_level=a.opt_level, jobs=a.jobs)
    gw = out / "gateware"
    if not a.gateware_only:
        env = dict(os.environ)
        if shutil.which("ccache"):
            env.setdefault("OBJCACHE", "ccache")
            # every build runs in a fresh temporary folder: let ccache ignore the folder name
            env.setdefault("CCACHE_NOHASHDIR", "1")
            env.setdefault("CCACHE_BASEDIR", str(out))
        res = subprocess.run(["bash", "build_sim.sh"], cwd=gw, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=3000)
        (out / "model-build.log").write_text(res.stdout)
        if res.returncode != 0:
            tail = "\n".join(l for l in res.stdout.splitlines() if "error" in l.lower())[-2000:]
            print(f"model build failed ({res.returncode}):\n{tail or res.stdout[-2000:]}", file=sys.stderr)
            return 1
        if not (gw / "obj_dir" / "Vsim").exists():
            print("model build produced no obj_dir/Vsim", file=sys.stderr)
            return 1
    info = {"cpu_type": a.cpu_type, "cpu_variant": a.cpu_variant, "sys_clk_freq": int(soc.sys_clk_freq),
            "main_ram_size": a.main_ram_size, "rom_size": a.rom_size, "sram_size": a.sram_size}
    (out / "soc.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
