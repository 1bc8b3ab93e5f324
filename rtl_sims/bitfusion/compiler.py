"""Compile matmul / conv2d onto the BitFusion array: tiling, data layout, program.

Every kernel becomes G independent GEMMs ``Y[g] (N x M) = A[g] (N x K) . W[g]^T``
(matmul: G = 1; conv2d: im2col on the host side, one GEMM per group).

Mapping onto the R x C array in precision (qa, qw):

- 1-bit operands (values +-1) run as 2-bit signed values {-1, +1} (rate of 2x2);
  ``ea = max(qa, 2)``, ``ew = max(qw, 2)``.
- A Fusion Unit forms ``P = 16 / ((ea/2) * (ew/2))`` products per cycle, so one
  *step* reduces ``R * P`` elements: element ``k = (step * R + row) * P + p``.
  K is padded with zeros to whole steps; M to whole multiples of C (one output
  channel per column); padding never changes a result.
- An activation step (P values, ``wa = P * ea`` bits: 8, 16 or 32) is what one
  row consumes per cycle, a weight step (``ww = P * ew`` bits) what one FU does.

Tiling: ``nt`` rows x ``st`` steps per COMPUTE (``k_tiles`` of them make the
full reduction, accumulated in one OBUF slot), ``m_tiles`` column blocks of C,
``n_tiles`` row blocks.  Three loop orders:

- ``S`` streamed:        g { n { m { k { LD A; LD W; COMPUTE } ST } } }
- ``A`` input-resident:  g { n { LD A(all k) ; m { k { LD W; COMPUTE } ST } } }
- ``B`` weight-resident: g { m { LD W(all k) ; n { k { LD A; COMPUTE } ST } } }

and 1 or 2 slots per buffer ring (2 = double buffering).  The compiler lays
the operands out in DRAM as the buffers' images (one contiguous block per
tile, so each LD is a single burst) and picks the candidate the analytical
model (``model.py``) predicts fastest.  Outputs come back per tile as int32
and are put back in logical order on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from kernels import reference

from . import isa

# address groups used by the compiler (group 7 stays all-zero)
G_A, G_W, G_Y, G_IB, G_WB, G_ZERO = 0, 1, 2, 3, 4, 7


class CompileError(ValueError):
    """The kernel cannot be mapped onto this configuration (does not fit)."""


@dataclass(frozen=True)
class ArrayConfig:
    """Build-time parameters of the accelerator (+ the DRAM latency, a run-time one)."""

    rows: int = 16
    cols: int = 32
    ibuf_bytes: int = 64 * 1024
    wbuf_bytes: int = 32 * 1024
    obuf_bytes: int = 16 * 1024
    dram_bits: int = 128
    dram_latency: int = 32
    imem_depth: int = 1024
    dram_mib: int = 512

    @property
    def wpb(self) -> int:
        return self.dram_bits // 32

    @property
    def ib_depth(self) -> int:
        return self.ibuf_bytes // (4 * self.rows)

    @property
    def wb_depth(self) -> int:
        return self.wbuf_bytes // (4 * self.rows * self.cols)

    @property
    def ob_depth(self) -> int:
        return self.obuf_bytes // (4 * self.cols)

    @property
    def pipeline(self) -> int:
        """Cycles from issuing an element to its last column's output (R + C)."""
        return self.rows + self.cols

    def validate(self) -> None:
        def pow2(v: int) -> bool:
            return v >= 1 and v & (v - 1) == 0

        if not (pow2(self.rows) and pow2(self.cols) and self.rows >= 2 and self.cols >= 2):
            raise ValueError("rows and cols must be powers of two >= 2")
        if self.dram_bits % 32 or not pow2(self.wpb) or self.wpb > 32:
            raise ValueError("dram_bits must be 32 x a power of two, at most 1024")
        if (self.cols * 32) % self.dram_bits:
            raise ValueError("a DRAM beat must not be wider than one OBUF row (cols x 32 bits)")
        for name, depth in (("ibuf", self.ib_depth), ("wbuf", self.wb_depth), ("obuf", self.ob_depth)):
            if not pow2(depth) or depth < 2:
                raise ValueError(f"{name}_bytes must give a power-of-two bank depth >= 2 words, got {depth}")
        if self.ib_depth > 1 << 16 or self.ob_depth > 1 << 15:
            raise ValueError("buffers too deep for the instruction fields")
        if not pow2(self.imem_depth):
            raise ValueError("imem_depth must be a power of two")
        if self.dram_latency < 1:
            raise ValueError("dram_latency must be >= 1 cycle")

    def verilog_params(self) -> dict[str, str]:
        return {"R": str(self.rows), "C": str(self.cols), "IB_BYTES": str(self.ibuf_bytes),
                "WB_BYTES": str(self.wbuf_bytes), "OB_BYTES": str(self.obuf_bytes), "DMA_BITS": str(self.dram_bits),
                "IMEM_DEPTH": str(self.imem_depth)}

    def to_dict(self) -> dict:
        return dict(self.__dict__)


PUBLISHED = ArrayConfig()


def eff_bits(b: int) -> int:
    """Bits an operand occupies on the bricks (1-bit values run as 2-bit signed)."""
    return 2 if b <= 2 else b


@dataclass(frozen=True)
class Geometry:
    qa: int
    qw: int
    rows: int

    @property
    def ea(self) -> int:
        return eff_bits(self.qa)

    @property
    def ew(self) -> int:
        return eff_bits(self.qw)

    @property
    def P(self) -> int:
        return 16 // ((self.ea // 2) * (self.ew // 2))

    @property
    def lanes(self) -> int:
        return self.rows * self.P

    @property
    def wa(self) -> int:
        return self.P * self.ea

    @property
    def ww(self) -> int:
        return self.P * self.ew


@dataclass(frozen=True)
class Gemm:
    """G GEMMs of N x K by M x K in precision (qa, qw)."""

    groups: int
    N: int
    K: int
    M: int
    qa: int
    qw: int

    @property
    def macs(self) -> int:
        return self.groups * self.N * self.K * self.M


@dataclass(frozen=True)
class Plan:
    cfg: ArrayConfig
    gemm: Gemm
    order: str          # 'S', 'A', 'B'
    nt: int
    n_tiles: int
    st: int
    k_tiles: int
    m_tiles: int
    islots: int
    wslots: int
    oslots: int

    @property
    def geo(self) -> Geometry:
        return Geometry(self.gemm.qa, self.gemm.qw, self.cfg.rows)

    @property
    def s_tot(self) -> int:
        return self.st * self.k_tiles

    @property
    def kp(self) -> int:
        return self.s_tot * self.geo.lanes

    @property
    def np_(self) -> int:
        return self.nt * self.n_tiles

    @property
    def mp(self) -> int:
        return self.m_tiles * self.cfg.cols

    # ---- tile image sizes (words, DMA aligned) ----
    def _ib_words(self, steps_per_row: int) -> int:
        """IBUF bank words for nt rows of `steps_per_row` steps, padded so the
        image (bank words x R) is a whole number of DRAM beats."""
        w = -(-self.nt * steps_per_row * self.geo.wa // 32)
        while (w * self.cfg.rows) % self.cfg.wpb:
            w += 1
        return w

    def _wb_words(self, steps: int) -> int:
        w = -(-steps * self.geo.ww // 32)
        rc = self.cfg.rows * self.cfg.cols
        while (w * rc) % self.cfg.wpb:
            w += 1
        return w

    @property
    def a_steps(self) -> int:
        """Steps per row one IBUF slot holds (all of K for order A)."""
        return self.s_tot if self.order == "A" else self.st

    @property
    def w_steps(self) -> int:
        return self.s_tot if self.order == "B" else self.st

    @property
    def ib_bank_words(self) -> int:
        return self._ib_words(self.a_steps)

    @property
    def wb_bank_words(self) -> int:
        return self._wb_words(self.w_steps)

    @property
    def la(self) -> int:
        """Words of one A tile image."""
        return self.ib_bank_words * self.cfg.rows

    @property
    def lw(self) -> int:
        return self.wb_bank_words * self.cfg.rows * self.cfg.cols

    @property
    def ly(self) -> int:
        return self.nt * self.cfg.cols

    @property
    def a_tiles_per_n(self) -> int:
        return 1 if self.order == "A" else self.k_tiles

    @property
    def w_tiles_per_m(self) -> int:
        return 1 if self.order == "B" else self.k_tiles

    def fits(self) -> bool:
        c = self.cfg
        return (self.ib_bank_words <= c.ib_depth // self.islots and self.wb_bank_words <= c.wb_depth // self.wslots
                and self.nt <= c.ob_depth // self.oslots and self.nt < 1 << 16 and self.st < 1 << 16
                and self.a_steps < 1 << 16)

    def describe(self) -> dict:
        return {"order": self.order, "nt": self.nt, "n_tiles": self.n_tiles, "st": self.st, "k_tiles": self.k_tiles,
                "m_tiles": self.m_tiles, "slots": [self.islots, self.wslots, self.oslots], "P": self.geo.P,
                "lanes": self.geo.lanes}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _tile_counts(total: int, cap: int, extra: tuple[int, ...] = ()) -> list[int]:
    """A few tile counts for `total` items at most `cap` per tile (balanced tiles)."""
    if cap < 1:
        return []
    t0 = _ceil(total, cap)
    out = {t0, t0 + 1, 2 * t0, *extra}
    return sorted(t for t in out if 1 <= t <= total)


def candidates(cfg: ArrayConfig, gemm: Gemm) -> Iterator[Plan]:
    geo = Geometry(gemm.qa, gemm.qw, cfg.rows)
    S0 = _ceil(gemm.K, geo.lanes)
    m_tiles = _ceil(gemm.M, cfg.cols)
    for oslots in (2, 1):
        nt_max = cfg.ob_depth // oslots
        for islots in (2, 1):
            ib_bits = (cfg.ib_depth // islots) * 32
            # row tiles: OBUF-limited, or IBUF-limited so that all of K fits (order A)
            extra = []
            nt_a = ib_bits // (geo.wa * S0)
            if nt_a >= 1:
                extra.append(_ceil(gemm.N, min(nt_a, nt_max)))
            for n_tiles in _tile_counts(gemm.N, nt_max, tuple(extra)):
                nt = _ceil(gemm.N, n_tiles)
                for wslots in (2, 1):
                    st_cap_w = (cfg.wb_depth // wslots) * 32 // geo.ww
                    base = dict(cfg=cfg, gemm=gemm, nt=nt, n_tiles=n_tiles, m_tiles=m_tiles, islots=islots,
                                wslots=wslots, oslots=oslots)
                    st_cap_i = ib_bits // (geo.wa * nt)
                    for k_tiles in _tile_counts(S0, min(st_cap_w, st_cap_i) if st_cap_i else 0):
                        st = _ceil(S0, k_tiles)
                        for order in ("S", "A"):
                            p = Plan(order=order, st=st, k_tiles=k_tiles, **base)
                            if p.fits():
                                yield p
                    if S0 <= st_cap_w and st_cap_i:
                        for k_tiles in _tile_counts(S0, st_cap_i):
                            st = _ceil(S0, k_tiles)
                            p = Plan(order="B", st=st, k_tiles=k_tiles, **base)
                            if p.fits():
                                yield p


def choose_plan(cfg: ArrayConfig, gemm: Gemm) -> Plan:
    from .model import predict

    best, best_c = None, None
    for p in candidates(cfg, gemm):
        c = predict(p).cycles
        if best_c is None or c < best_c:
            best, best_c = p, c
    if best is None:
        raise CompileError(f"no tiling of {gemm} fits the buffers of {cfg}")
    return best


# ---- data layout ---------------------------------------------------------------

@dataclass
class Layout:
    a_base: int
    w_base: int
    y_base: int
    a_words: int
    w_words: int
    y_words: int

    @property
    def end(self) -> int:
        return self.y_base + self.y_words


def _align(x: int, a: int) -> int:
    return _ceil(x, a) * a


def layout(plan: Plan, base: int = 0) -> Layout:
    g = plan.gemm
    a_words = g.groups * plan.n_tiles * plan.a_tiles_per_n * plan.la
    w_words = g.groups * plan.m_tiles * plan.w_tiles_per_m * plan.lw
    y_words = g.groups * plan.n_tiles * plan.m_tiles * plan.ly
    al = max(plan.cfg.wpb, 16)
    a_base = _align(base, al)
    w_base = _align(a_base + a_words, al)
    y_base = _align(w_base + w_words, al)
    return Layout(a_base, w_base, y_base, a_words, w_words, y_words)


def _pack_rows(vals: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis LSB-first into uint32 words (1-bit values as 2-bit signed)."""
    return reference.pack(vals, bits)


def pack_a(plan: Plan, a: np.ndarray) -> np.ndarray:
    """A (G, N, K) int values -> the A region (uint32 words)."""
    g, geo, R = plan.gemm, plan.geo, plan.cfg.rows
    ap = np.zeros((g.groups, plan.np_, plan.kp), dtype=np.int8)
    ap[:, :g.N, :g.K] = a
    steps = plan.a_steps
    kt_img = plan.a_tiles_per_n
    # (G, n_tiles, nt, kt_img, steps, R, P) -> (G, n_tiles, kt_img, R, nt, steps, P)
    t = ap.reshape(g.groups, plan.n_tiles, plan.nt, kt_img, steps, R, geo.P).transpose(0, 1, 3, 5, 2, 4, 6)
    t = t.reshape(-1, R, plan.nt * steps * geo.P)
    words = _pack_rows(t, geo.ea)                                   # (tiles, R, w0)
    wb = plan.ib_bank_words
    img = np.zeros((words.shape[0], R, wb), dtype=np.uint32)
    img[:, :, :words.shape[2]] = words
    return np.ascontiguousarray(img.transpose(0, 2, 1)).reshape(-1)


def pack_w(plan: Plan, w: np.ndarray) -> np.ndarray:
    """W (G, M, K) int values -> the W region."""
    g, geo, R, C = plan.gemm, plan.geo, plan.cfg.rows, plan.cfg.cols
    wp = np.zeros((g.groups, plan.mp, plan.kp), dtype=np.int8)
    wp[:, :g.M, :g.K] = w
    steps = plan.w_steps
    kt_img = plan.w_tiles_per_m
    # (G, m_tiles, C, kt_img, steps, R, P) -> (G, m_tiles, kt_img, R, C, steps, P)
    t = wp.reshape(g.groups, plan.m_tiles, C, kt_img, steps, R, geo.P).transpose(0, 1, 3, 5, 2, 4, 6)
    t = t.reshape(-1, R * C, steps * geo.P)
    words = _pack_rows(t, geo.ew)
    wf = plan.wb_bank_words
    img = np.zeros((words.shape[0], R * C, wf), dtype=np.uint32)
    img[:, :, :words.shape[2]] = words
    return np.ascontiguousarray(img.transpose(0, 2, 1)).reshape(-1)


def unpack_y(plan: Plan, words: np.ndarray) -> np.ndarray:
    """The Y region (int32 per tile) -> Y (G, N, M)."""
    g, C = plan.gemm, plan.cfg.cols
    y = np.asarray(words, dtype=np.uint32).view(np.int32)
    y = y.reshape(g.groups, plan.n_tiles, plan.m_tiles, plan.nt, C).transpose(0, 1, 3, 2, 4)
    y = y.reshape(g.groups, plan.np_, plan.mp)
    return np.ascontiguousarray(y[:, :g.N, :g.M])


# ---- program ------------------------------------------------------------------------

def program(plan: Plan, lay: Layout) -> list[int]:
    g = plan.gemm
    la, lw, ly = plan.la, plan.lw, plan.ly
    nT, mT, kT, G = plan.n_tiles, plan.m_tiles, plan.k_tiles, g.groups
    prog = [isa.setup(g.qa if g.qa > 1 else 2, g.qw if g.qw > 1 else 2, True, True,
                      plan.islots, plan.wslots, plan.oslots)]
    nstride = plan.a_steps
    prog.append(isa.cshape(plan.nt, plan.st, nstride))
    strides: dict[tuple[int, int], int] = {}
    if plan.order in ("S", "A"):
        # levels: 0 g, 1 n, 2 m, 3 k
        kA = plan.a_tiles_per_n
        strides[(G_A, 0)] = nT * kA * la
        strides[(G_A, 1)] = kA * la
        if plan.order == "S":
            strides[(G_A, 3)] = la
        strides[(G_W, 0)] = mT * kT * lw
        strides[(G_W, 2)] = kT * lw
        strides[(G_W, 3)] = lw
        strides[(G_Y, 0)] = nT * mT * ly
        strides[(G_Y, 1)] = mT * ly
        strides[(G_Y, 2)] = ly
        if plan.order == "A":
            strides[(G_IB, 3)] = plan.st
    else:
        # levels: 0 g, 1 m, 2 n, 3 k
        strides[(G_A, 0)] = nT * kT * la
        strides[(G_A, 2)] = kT * la
        strides[(G_A, 3)] = la
        strides[(G_W, 0)] = mT * lw
        strides[(G_W, 1)] = lw
        strides[(G_Y, 0)] = nT * mT * ly
        strides[(G_Y, 1)] = ly
        strides[(G_Y, 2)] = mT * ly
        strides[(G_WB, 3)] = plan.st
    for (grp, lvl), v in sorted(strides.items()):
        if v:
            prog.append(isa.stride(grp, lvl, v))
    prog.append(isa.loop(G))
    if plan.order == "S":
        prog += [isa.loop(nT), isa.loop(mT), isa.loop(kT),
                 isa.ld(isa.NS_IBUF, G_A, la, lay.a_base), isa.ld(isa.NS_WBUF, G_W, lw, lay.w_base),
                 isa.compute(G_ZERO, G_ZERO, acquire=3, finish=3, rel_i=isa.ALWAYS, rel_w=isa.ALWAYS),
                 isa.endloop(), isa.st(G_Y, ly, lay.y_base), isa.endloop(), isa.endloop()]
    elif plan.order == "A":
        prog += [isa.loop(nT), isa.ld(isa.NS_IBUF, G_A, la, lay.a_base), isa.loop(mT), isa.loop(kT),
                 isa.ld(isa.NS_WBUF, G_W, lw, lay.w_base),
                 isa.compute(G_IB, G_ZERO, acquire=3, finish=3, rel_i=2, rel_w=isa.ALWAYS),
                 isa.endloop(), isa.st(G_Y, ly, lay.y_base), isa.endloop(), isa.endloop()]
    else:
        prog += [isa.loop(mT), isa.ld(isa.NS_WBUF, G_W, lw, lay.w_base), isa.loop(nT), isa.loop(kT),
                 isa.ld(isa.NS_IBUF, G_A, la, lay.a_base),
                 isa.compute(G_ZERO, G_WB, acquire=3, finish=3, rel_i=isa.ALWAYS, rel_w=2),
                 isa.endloop(), isa.st(G_Y, ly, lay.y_base), isa.endloop(), isa.endloop()]
    prog += [isa.endloop(), isa.halt()]
    if len(prog) > plan.cfg.imem_depth:
        raise CompileError("program longer than the instruction memory")
    return prog


# ---- kernels -> GEMMs ------------------------------------------------------------------

def im2col(x: np.ndarray, KS: int, S: int, P: int, G: int) -> np.ndarray:
    """x (N, C, H, W) -> (G, N*OH*OW, C/G*KS*KS), reduction order (c, kh, kw)."""
    N, C, H, W = x.shape
    OH, OW = reference.conv_out_hw(H, W, KS, S, P)
    xp = np.zeros((N, C, H + 2 * P, W + 2 * P), dtype=np.int8)
    xp[:, :, P:P + H, P:P + W] = x
    v = np.lib.stride_tricks.sliding_window_view(xp, (KS, KS), axis=(2, 3))[:, :, ::S, ::S][:, :, :OH, :OW]
    Cg = C // G
    v = v.reshape(N, G, Cg, OH, OW, KS, KS).transpose(1, 0, 3, 4, 2, 5, 6)
    return np.ascontiguousarray(v).reshape(G, N * OH * OW, Cg * KS * KS)


@dataclass
class Compiled:
    """One kernel compiled for the array: program, DRAM image and how to read Y back."""

    plan: Plan
    layout: Layout
    program: list[int]
    a_img: np.ndarray | None = None
    w_img: np.ndarray | None = None
    out_shape: tuple = ()
    op: str = "matmul"
    conv: tuple = ()            # (N, K, OH, OW) for conv2d
    extra: dict = field(default_factory=dict)

    def outputs(self, y_words: np.ndarray) -> np.ndarray:
        y = unpack_y(self.plan, y_words)               # (G, rows, Mg)
        if self.op == "matmul":
            return y[0]
        N, K, OH, OW = self.conv
        G = y.shape[0]
        return np.ascontiguousarray(y.reshape(G, N, OH, OW, K // G).transpose(1, 0, 4, 2, 3)).reshape(N, K, OH, OW)


def kernel_gemm(op: str, shape, qa: int, qw: int) -> tuple[Gemm, tuple]:
    if op == "matmul":
        N, M, K = (int(v) for v in shape)
        return Gemm(1, N, K, M, qa, qw), ()
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    OH, OW = reference.conv_out_hw(H, W, KS, S, P)
    return Gemm(G, N * OH * OW, C // G * KS * KS, K // G, qa, qw), (N, K, OH, OW)


def compile_kernel(cfg: ArrayConfig, op: str, shape, qa: int, qw: int, a: np.ndarray | None = None,
                   w: np.ndarray | None = None, base: int = 0, plan: Plan | None = None) -> Compiled:
    """Plan + program (+ packed operands when a, w are given in logical layout)."""
    gemm, conv = kernel_gemm(op, shape, qa, qw)
    plan = plan or choose_plan(cfg, gemm)
    lay = layout(plan, base)
    if lay.end >= 1 << 32 or lay.end * 4 > cfg.dram_mib << 20:
        raise CompileError(f"tensors need {lay.end * 4 / 2**20:.1f} MiB of DRAM; the model has {cfg.dram_mib} MiB")
    prog = program(plan, lay)
    c = Compiled(plan, lay, prog, op=op, conv=conv)
    if a is not None:
        c.a_img = pack_a(plan, gemm_operand_a(op, shape, a))
    if w is not None:
        c.w_img = pack_w(plan, gemm_operand_w(op, shape, w))
    return c


def gemm_operand_a(op: str, shape, a: np.ndarray) -> np.ndarray:
    if op == "matmul":
        return np.asarray(a, dtype=np.int8)[None]
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    return im2col(np.asarray(a, dtype=np.int8), KS, S, P, G)


def gemm_operand_w(op: str, shape, w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.int8)
    if op == "matmul":
        return w[None]
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    return w.reshape(G, K // G, C // G * KS * KS)


def dram_bytes(plan: Plan) -> int:
    """Bytes the program moves over the DRAM port."""
    g = plan.gemm
    tiles = g.groups * plan.n_tiles * plan.m_tiles * plan.k_tiles
    a = (g.groups * plan.n_tiles if plan.order == "A" else tiles) * plan.la
    w = (g.groups * plan.m_tiles if plan.order == "B" else tiles) * plan.lw
    y = g.groups * plan.n_tiles * plan.m_tiles * plan.ly
    return 4 * (a + w + y)
