"""BitFusion targets: ``bitfusion-rtl`` (Verilated RTL) and ``bitfusion-model`` (analytical).

``bitfusion-rtl`` builds ``rtl/*.v`` + ``tb/tb.cpp`` with Verilator into the
build cache and boots the testbench once per sweep worker as a long-lived
process on pipes (``ProcessTransport``).  Every RUN_KERNEL is compiled here
(``compiler.py``): the inputs are generated from the seed exactly as the bench
firmware does (``kernels.reference.random_inputs``), tiled and packed into the
DRAM image, the program runs on the RTL, and the int32 outputs the RTL stored
in DRAM are read back, put in logical order and checksummed (CRC-32, as the
firmware does).  Cycle counts are the accelerator's cycle counter from start to
HALT (DMA, compute, drain and the last store included).

``bitfusion-model`` predicts cycles for the same tiling without RTL; it does
not compute outputs, so its checksum is the NumPy reference's (the harness'
verification of it is vacuous): its numbers are predictions, not measurements.

Target parameters (``--param KEY=VALUE``) are declared once in `PARAMS`
below (``mico targets --json`` lists them): the array and buffer sizes, the
DRAM width and latency and the instruction memory are part of the
fingerprint; the DRAM model size and the wall-clock bound are not.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.errors import (CrashError, DoesNotFitError, MeasureError, MismatchError, UnsupportedError,
                            UserError)
from harness.params import Param, at_least, between, integer, number, validate_params
from harness.protocol import Hello, KernelRun, ModelRun
from harness.registry import register
from harness.spec import KernelSpec
from harness.target import BuildResult, Capabilities, DeviceSession, Session, Target, fingerprint_of
from harness.transports import ProcessTransport
from kernels import reference
from kernels.ir import generator_digest

from .compiler import SUPPORTED_BITS, ArrayConfig, CompileError, Compiled, compile_kernel
from .link import BFClient
from .model import predict

HERE = Path(__file__).resolve().parent
RTL = [HERE / "rtl" / "bf_fusion_unit.v", HERE / "rtl" / "bf_datapath.v", HERE / "rtl" / "bf_top.v"]
RTL_HEADERS = [HERE / "rtl" / "bf_fu_dot.vh"]
TB = [HERE / "tb" / "tb.cpp"]
TOP = "bf_top"
PY_SOURCES = [HERE / "compiler.py", HERE / "model.py", HERE / "isa.py"]
ALL_PAIRS = tuple((a, w) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8))
DEFAULT_WIDTHS = (1, 2, 4, 8)


def widths(v) -> tuple[int, ...]:
    """The ``widths`` parameter: 'all' (1..8) or a comma list of widths in 1..8, e.g. '2,3,5,8'."""
    t = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v).strip()
    if t.lower() == "all":
        return SUPPORTED_BITS
    try:
        out = tuple(sorted({int(x) for x in t.split(",")}))
    except ValueError:
        raise ValueError("'all' or a comma-separated list of bit-widths") from None
    if not out or not set(out) <= set(SUPPORTED_BITS):
        raise ValueError(f"'all' or bit-widths among {', '.join(map(str, SUPPORTED_BITS))}")
    return out

_P = ArrayConfig()      # the published configuration
PARAMS = (
    Param("rows", integer, _P.rows, "Fusion Unit rows (a power of two >= 2)"),
    Param("cols", integer, _P.cols, "Fusion Unit columns (a power of two >= 2)"),
    Param("ibuf_kib", integer, _P.ibuf_bytes // 1024, "input buffer, KiB", check=at_least(1)),
    Param("wbuf_kib", integer, _P.wbuf_bytes // 1024, "weight buffer, KiB", check=at_least(1)),
    Param("obuf_kib", integer, _P.obuf_bytes // 1024, "output buffer, KiB", check=at_least(1)),
    Param("dram_bits", integer, _P.dram_bits, "bits per cycle to DRAM (32 x a power of two, <= 1024)"),
    Param("dram_latency", integer, _P.dram_latency, "DRAM latency in cycles", check=at_least(1)),
    Param("imem_depth", integer, _P.imem_depth, "instruction memory depth in 64-bit words (a power of two)"),
    Param("dram_mib", integer, _P.dram_mib, "size of the testbench's DRAM model in MiB", in_fingerprint=False,
          check=between(1, 16384)),
    Param("timeout_s", number, None, "wall-clock bound in seconds for one request (default 1800)",
          in_fingerprint=False, check=at_least(1)),
    # which widths a session offers changes no cycle count, so it is not part of the fingerprint
    Param("widths", widths, DEFAULT_WIDTHS, "bit-widths offered and swept: 'all' (1..8, odd widths on their "
          "container bricks) or a comma list; default 1,2,4,8 (16 pairs)", in_fingerprint=False),
)
_KIB = {"ibuf_kib": "ibuf_bytes", "wbuf_kib": "wbuf_bytes", "obuf_kib": "obuf_bytes"}


def config_from_params(params: dict) -> ArrayConfig:
    """The array configuration the parameters describe (validated); also used by the benchmarks."""
    v = validate_params(PARAMS, params, "bitfusion targets")
    kw = {_KIB.get(k, k): (x * 1024 if k in _KIB else x) for k, x in v.items() if k not in ("timeout_s", "widths")}
    cfg = ArrayConfig(**kw)
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"bitfusion configuration rejected: {e}.") from None
    return cfg


def _sources_digest(files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def _hello(cfg: ArrayConfig, target_id: str, build: str, bits: tuple[int, ...] = DEFAULT_WIDTHS) -> Hello:
    pairs = tuple((a, w) for a in bits for w in bits)
    return Hello(fw_version=1, proto_version=1, ram_bytes=min(cfg.dram_mib << 20, 0xFFFFFFFF), max_payload=0x7FFFFFFF,
                 timer_unit="cycles", timer_hz=500_000_000, ops=("matmul", "conv2d"), pairs=pairs,
                 kernels_version=1, code_bytes=cfg.imem_depth * 8, target_id=target_id,
                 isa=(f"bitfusion {cfg.rows}x{cfg.cols} FU, IBUF {cfg.ibuf_bytes} B, WBUF {cfg.wbuf_bytes} B, "
                      f"OBUF {cfg.obuf_bytes} B, DRAM {cfg.dram_bits} bit/cycle"), build=build)


def kernel_output_checksum(y: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(np.asarray(y, dtype="<i4")).tobytes())




# ---- sessions -------------------------------------------------------------------------------

class BitFusionSession(DeviceSession):
    """A booted testbench: compiles each kernel, runs it on the RTL, checks and returns it."""

    load_model = Session.load_model     # it maps models itself (load_ir_model), not generated C images

    def __init__(self, transport, client: BFClient, hello: Hello, cfg: ArrayConfig, timeout: float):
        super().__init__(transport, client, hello)
        self.cfg = cfg
        self.timeout = timeout
        self.last: dict = {}
        self._model = None

    # ---- kernels ----------------------------------------------------------------------
    def compile(self, spec: KernelSpec, seed: int) -> Compiled:
        a, w = reference.random_inputs(spec.op, spec.shape, spec.qa, spec.qw, seed)
        try:
            return compile_kernel(self.cfg, spec.op, spec.shape, spec.qa, spec.qw, a, w)
        except CompileError as e:
            raise DoesNotFitError(str(e)) from None

    def execute(self, c: Compiled, repeats: int, timeout: float | None = None):
        """Run a compiled kernel whose operands are already packed; returns (cycles, Y)."""
        lay = c.layout
        if c.a_img is not None:
            self.client.write(lay.a_base, c.a_img.astype("<u4").tobytes())
        if c.w_img is not None:
            self.client.write(lay.w_base, c.w_img.astype("<u4").tobytes())
        guess = predict(c.plan).cycles
        res = self.client.run(c.program, lay.y_base, lay.y_words, self.cfg.dram_latency, repeats,
                              max_cycles=8 * guess + 200_000, timeout=timeout or self.timeout)
        if len(set(res.crcs)) != 1:
            raise MismatchError(f"the accelerator's outputs changed between repeats: {res.crcs}")
        y = c.outputs(np.frombuffer(res.out, dtype="<u4"))
        self.last = {"plan": c.plan.describe(), "perf": res.perf, "cycles": res.cycles, "predicted": guess}
        return res.cycles, y

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        # warm-up runs change nothing on a cycle-exact simulator: they are not executed
        if not self.supports(spec):
            raise UnsupportedError(f"{self.hello.target_id} does not support {spec.op} {spec.qa}x{spec.qw}")
        c = self.compile(spec, seed)
        cycles, y = self.execute(c, max(1, repeats), timeout)
        return KernelRun([int(v) for v in cycles], kernel_output_checksum(y), int(y.size))

    # ---- whole models (mpq deploy) ------------------------------------------------------------
    def load_ir_model(self, graph) -> dict:
        """Map a complete layer-IR graph onto the array (rtl_sims/bitfusion/deploy.py)."""
        from .deploy import IRModel

        self._model = IRModel(self, graph)
        return self._model.info

    def run_model(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        if self._model is None:
            raise MeasureError("no model loaded")
        return self._model.run(inputs, timeout)


class ModelSession(Session):
    """``bitfusion-model``: predictions only (no RTL, no outputs, no byte stream)."""

    def __init__(self, hello: Hello, cfg: ArrayConfig):
        super().__init__(hello)
        self.cfg = cfg
        self.last: dict = {}

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        self.check_supported(spec)
        try:
            c = compile_kernel(self.cfg, spec.op, spec.shape, spec.qa, spec.qw)
        except CompileError as e:
            raise DoesNotFitError(str(e)) from None
        p = predict(c.plan)
        self.last = {"plan": c.plan.describe(), "prediction": p}
        # no outputs are computed: report the reference checksum (a prediction, not a check)
        crc = int(reference.expected_checksum(spec.op, spec.shape, spec.qa, spec.qw, seed))
        return KernelRun([p.cycles] * max(1, repeats), crc, spec.outputs)


# ---- targets ------------------------------------------------------------------------------------

class _BitFusionBase(Target):
    deterministic = True
    timer_unit = "cycles"
    kernel_timeout = 1800.0
    PARAMS = PARAMS

    def __init__(self, **params):
        super().__init__(**params)
        self.cfg = config_from_params(self.params)
        if self.params["timeout_s"] is not None:
            self.kernel_timeout = float(self.params["timeout_s"])

    def capabilities(self) -> Capabilities:
        return replace(self.CAPABILITIES, memory_bytes=self.cfg.dram_mib << 20, bits=tuple(self.params["widths"]))

    def _cfg_parts(self) -> dict:
        d = self.cfg.to_dict()
        d.pop("dram_mib", None)
        return d


class BitFusionRTL(_BitFusionBase):
    name = "bitfusion-rtl"
    description = ("BitFusion accelerator RTL (16x32 Fusion Units, 64/32/16 KiB buffers, 128-bit DRAM by default) "
                   "under Verilator; unit: accelerator cycles")
    CAPABILITIES = Capabilities(ir_models=True, modes=("kernel", "layer", "model"))
    boot_timeout = 60.0

    def available(self) -> tuple[bool, str]:
        from .. import verilator as vl
        from harness.errors import ToolchainMissing

        try:
            vl.find_verilator()
        except ToolchainMissing as e:
            return False, str(e)
        import shutil

        if not shutil.which("c++") or not shutil.which("make"):
            return False, "a C++ compiler and make are needed: apt-get install build-essential (or run make setup)"
        return True, ""

    def build(self) -> BuildResult:
        from .. import verilator as vl
        from .build import build_simulator

        c = self.cfg
        defines = {"TB_R": str(c.rows), "TB_C": str(c.cols), "TB_IB_BYTES": str(c.ibuf_bytes),
                   "TB_WB_BYTES": str(c.wbuf_bytes), "TB_OB_BYTES": str(c.obuf_bytes),
                   "TB_DMA_BITS": str(c.dram_bits), "TB_IMEM_DEPTH": str(c.imem_depth)}
        art = build_simulator(f"bitfusion-{c.rows}x{c.cols}", RTL, TOP, TB, defines, c.verilog_params(),
                              headers=RTL_HEADERS)
        v = vl.find_verilator()
        parts = {"target": self.name, "model": art.digest, "config": self._cfg_parts(),
                 "compiler": _sources_digest(PY_SOURCES + [HERE / "deploy.py", HERE / "layer.py", HERE / "outunit.py"]), "verilator": v.version,
                 "generator": generator_digest()}
        return BuildResult(self.name, fingerprint_of(parts), {"simulator": str(art.path)},
                           info={"config": self.cfg.to_dict(), "model_digest": art.digest, "verilator": v.version,
                                 "compiler_digest": parts["compiler"]}, cached=art.cached)

    def open(self, build: BuildResult) -> BitFusionSession:
        t = ProcessTransport([build.artifacts["simulator"], f"--dram-mib={self.cfg.dram_mib}"])
        client = BFClient(t, timeout=self.boot_timeout)
        try:
            hello = client.hello()
            info = client.info()
            client.timeout = self.kernel_timeout
        except MeasureError as e:
            detail = t.describe_failure()
            t.abort()
            raise CrashError(f"the bitfusion testbench did not answer HELLO: {e}", detail) from None
        want = {"rows": self.cfg.rows, "cols": self.cfg.cols, "ibuf_bytes": self.cfg.ibuf_bytes,
                "wbuf_bytes": self.cfg.wbuf_bytes, "obuf_bytes": self.cfg.obuf_bytes,
                "dram_bits": self.cfg.dram_bits, "imem_depth": self.cfg.imem_depth}
        got = {k: info[k] for k in want}
        if got != want:
            t.abort()
            raise CrashError(f"the testbench was built for {got}, not {want}")
        # the testbench's HELLO mask can only name the power-of-two pairs; the widths are the compiler's
        bits = tuple(self.params["widths"])
        hello = replace(hello, pairs=tuple((a, w) for a in bits for w in bits))
        return BitFusionSession(t, client, hello, self.cfg, self.kernel_timeout)


class BitFusionModel(_BitFusionBase):
    name = "bitfusion-model"
    description = ("analytical cycle model of the BitFusion accelerator (same tiling as bitfusion-rtl); "
                   "predictions, not measurements")

    def available(self) -> tuple[bool, str]:
        return True, ""

    def build(self) -> BuildResult:
        parts = {"target": self.name, "config": self._cfg_parts(), "compiler": _sources_digest(PY_SOURCES)}
        return BuildResult(self.name, fingerprint_of(parts), {}, info={"config": self.cfg.to_dict(),
                                                                        "compiler_digest": parts["compiler"],
                                                                        "kind": "analytical model"})

    def open(self, build: BuildResult) -> ModelSession:
        return ModelSession(_hello(self.cfg, self.name, "analytical model", tuple(self.params["widths"])), self.cfg)

    def model_toolchain(self):
        raise UserError("bitfusion-model only predicts kernel cycles; deploy models on bitfusion-rtl.")


register("bitfusion-rtl", BitFusionRTL)
register("bitfusion-model", BitFusionModel)
