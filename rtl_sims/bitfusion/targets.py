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

Target parameters (``--param KEY=VALUE``): ``rows``, ``cols`` (array, default
16 x 32), ``ibuf_kib``, ``wbuf_kib``, ``obuf_kib`` (64 / 32 / 16), ``dram_bits``
(bits per cycle to DRAM, 128), ``dram_latency`` (cycles, 32), ``imem_depth``
(1024), ``dram_mib`` (DRAM model size, 512) and ``timeout_s`` (wall-clock bound
of one request, 1800).  All but ``timeout_s`` and ``dram_mib`` are part of the
fingerprint.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import numpy as np

from harness.errors import (CrashError, DoesNotFitError, MeasureError, MismatchError, UnsupportedError,
                            UserError)
from harness.protocol import Hello, KernelRun, LinkStats, ModelRun
from harness.registry import register
from harness.spec import KernelSpec
from harness.target import BuildResult, Session, Target, fingerprint_of
from harness.transports import ProcessTransport
from kernels import reference

from .compiler import ArrayConfig, CompileError, Compiled, compile_kernel
from .link import BFClient
from .model import predict

HERE = Path(__file__).resolve().parent
RTL = [HERE / "rtl" / "bf_fusion_unit.v", HERE / "rtl" / "bf_datapath.v", HERE / "rtl" / "bf_top.v"]
RTL_HEADERS = [HERE / "rtl" / "bf_fu_dot.vh"]
TB = [HERE / "tb" / "tb.cpp"]
TOP = "bf_top"
PY_SOURCES = [HERE / "compiler.py", HERE / "model.py", HERE / "isa.py"]
ALL_PAIRS = tuple((a, w) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8))

INT_PARAMS = {"rows": "rows", "cols": "cols", "dram_bits": "dram_bits", "dram_latency": "dram_latency",
              "imem_depth": "imem_depth", "dram_mib": "dram_mib"}
KIB_PARAMS = {"ibuf_kib": "ibuf_bytes", "wbuf_kib": "wbuf_bytes", "obuf_kib": "obuf_bytes"}
PARAMS = set(INT_PARAMS) | set(KIB_PARAMS) | {"timeout_s"}


def _int(v, name: str) -> int:
    if isinstance(v, bool):
        raise UserError(f"--param {name} must be an integer.")
    if isinstance(v, int):
        return v
    try:
        return int(str(v), 0)
    except ValueError:
        raise UserError(f"--param {name}={v!r} must be an integer.") from None


def config_from_params(params: dict) -> ArrayConfig:
    bad = sorted(set(params) - PARAMS)
    if bad:
        raise UserError(f"bitfusion targets have no parameter {bad[0]!r}; they take {', '.join(sorted(PARAMS))}.")
    kw = {}
    for k, field_ in INT_PARAMS.items():
        if k in params:
            kw[field_] = _int(params[k], k)
    for k, field_ in KIB_PARAMS.items():
        if k in params:
            kw[field_] = _int(params[k], k) * 1024
    cfg = ArrayConfig(**kw)
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"bitfusion configuration rejected: {e}.") from None
    if not 1 <= cfg.dram_mib <= 16384:
        raise UserError("--param dram_mib must be in 1 .. 16384.")
    return cfg


def _sources_digest(files) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def _hello(cfg: ArrayConfig, target_id: str, build: str) -> Hello:
    return Hello(fw_version=1, proto_version=1, ram_bytes=min(cfg.dram_mib << 20, 0xFFFFFFFF), max_payload=0x7FFFFFFF,
                 timer_unit="cycles", timer_hz=500_000_000, ops=("matmul", "conv2d"), pairs=ALL_PAIRS,
                 kernels_version=1, code_bytes=cfg.imem_depth * 8, target_id=target_id,
                 isa=(f"bitfusion {cfg.rows}x{cfg.cols} FU, IBUF {cfg.ibuf_bytes} B, WBUF {cfg.wbuf_bytes} B, "
                      f"OBUF {cfg.obuf_bytes} B, DRAM {cfg.dram_bits} bit/cycle"), build=build)


def kernel_output_checksum(y: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(np.asarray(y, dtype="<i4")).tobytes())


class _NullTransport:
    def close(self, timeout: float = 0.0) -> None:
        pass

    def describe_failure(self) -> str:
        return "analytical model (no process)"


class _NullClient:
    def __init__(self):
        self.stats = LinkStats()

    def bye(self) -> None:
        pass


# ---- sessions -------------------------------------------------------------------------------

class BitFusionSession(Session):
    """A booted testbench: compiles each kernel, runs it on the RTL, checks and returns it."""

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
    """``bitfusion-model``: predictions only (no RTL, no outputs)."""

    def __init__(self, hello: Hello, cfg: ArrayConfig):
        super().__init__(_NullTransport(), _NullClient(), hello)
        self.cfg = cfg
        self.last: dict = {}

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        if not self.supports(spec):
            raise UnsupportedError(f"{self.hello.target_id} does not support {spec.op} {spec.qa}x{spec.qw}")
        try:
            c = compile_kernel(self.cfg, spec.op, spec.shape, spec.qa, spec.qw)
        except CompileError as e:
            raise DoesNotFitError(str(e)) from None
        p = predict(c.plan)
        self.last = {"plan": c.plan.describe(), "prediction": p}
        # no outputs are computed: report the reference checksum (a prediction, not a check)
        crc = int(reference.expected_checksum(spec.op, spec.shape, spec.qa, spec.qw, seed))
        return KernelRun([p.cycles] * max(1, repeats), crc, spec.outputs)

    def close(self) -> None:
        pass


# ---- targets ------------------------------------------------------------------------------------

class _BitFusionBase(Target):
    deterministic = True
    timer_unit = "cycles"
    kernel_timeout = 1800.0

    def __init__(self, **params):
        super().__init__(**params)
        self.cfg = config_from_params(params)
        if "timeout_s" in params:
            t = _int(params["timeout_s"], "timeout_s")
            if t < 1:
                raise UserError("--param timeout_s must be >= 1.")
            self.kernel_timeout = float(t)

    def _cfg_parts(self) -> dict:
        d = self.cfg.to_dict()
        d.pop("dram_mib", None)
        return d


class BitFusionRTL(_BitFusionBase):
    name = "bitfusion-rtl"
    description = ("BitFusion accelerator RTL (16x32 Fusion Units, 64/32/16 KiB buffers, 128-bit DRAM by default) "
                   "under Verilator; unit: accelerator cycles")
    runs_integer_models = True
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
                 "compiler": _sources_digest(PY_SOURCES), "verilator": v.version}
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
            t.close()
            raise CrashError(f"the bitfusion testbench did not answer HELLO: {e}", t.describe_failure()) from None
        want = {"rows": self.cfg.rows, "cols": self.cfg.cols, "ibuf_bytes": self.cfg.ibuf_bytes,
                "wbuf_bytes": self.cfg.wbuf_bytes, "obuf_bytes": self.cfg.obuf_bytes,
                "dram_bits": self.cfg.dram_bits, "imem_depth": self.cfg.imem_depth}
        got = {k: info[k] for k in want}
        if got != want:
            t.close()
            raise CrashError(f"the testbench was built for {got}, not {want}")
        return BitFusionSession(t, client, hello, self.cfg, self.kernel_timeout)


class BitFusionModel(_BitFusionBase):
    name = "bitfusion-model"
    description = ("analytical cycle model of the BitFusion accelerator (same tiling as bitfusion-rtl); "
                   "predictions, not measurements")
    runs_integer_models = False

    def available(self) -> tuple[bool, str]:
        return True, ""

    def build(self) -> BuildResult:
        parts = {"target": self.name, "config": self._cfg_parts(), "compiler": _sources_digest(PY_SOURCES)}
        return BuildResult(self.name, fingerprint_of(parts), {}, info={"config": self.cfg.to_dict(),
                                                                        "compiler_digest": parts["compiler"],
                                                                        "kind": "analytical model"})

    def open(self, build: BuildResult) -> ModelSession:
        return ModelSession(_hello(self.cfg, self.name, "analytical model"), self.cfg)

    def model_toolchain(self):
        raise UserError("bitfusion-model only predicts kernel cycles; deploy models on bitfusion-rtl.")


register("bitfusion-rtl", BitFusionRTL)
register("bitfusion-model", BitFusionModel)
