"""Compile matmul / conv2d onto the BitFusion array: tiling, data layout, program.

Every kernel becomes G independent GEMMs ``Y[g] (N x M) = A[g] (N x K) . W[g]^T``
(matmul: G = 1; conv2d: im2col on the host side, one GEMM per group).

Mapping onto the R x C array in precision (qa, qw), qa, qw in 1..8:

- every operand runs on the bricks of its *container*: ``e = 2`` for 1 and 2
  bits, 4 for 3 and 4 bits, 8 for 5..8 bits (``outunit.container_bits``).  A
  b-bit value is stored sign-extended (signed) or zero-extended (unsigned) in
  its container, so the bricks compute exactly; a 1-bit value (+-1) is the
  2-bit signed value ``01`` / ``11``.  Odd widths cost what their container
  costs (3x5 runs and is priced as 4x8).
- A Fusion Unit forms ``P = 16 / ((ea/2) * (ew/2))`` products per cycle, so one
  *step* reduces ``R * P`` elements.  An activation step (P values, ``wa = P * ea``
  bits: 8, 16 or 32) is what one array row reads per cycle; an IBUF bank word
  holds ``F = 32 / wa`` steps.  Element ``k`` of the reduction is fed at step s,
  row r, lane p with ``k = ((s // f) * R + r) * f * P + (s % f) * P + p`` where
  ``f`` (the *fold*) is 1 for operands the host packs per tile (kernel runs) and
  ``F`` for operands in the row layout (layers, ``Plan.rows_a``): then one row
  of the activation matrix, packed along K little-endian in 32-bit words, *is*
  the IBUF image of that row (word j -> bank j mod R), so a layer's output can
  be the next layer's input without any host work.  Weights are packed by the
  host in the same order; K is padded with zeros (zero weights make whatever
  the padding activations hold harmless); M to whole multiples of C.

Tiling: ``nt`` rows x ``st`` steps per COMPUTE (``k_tiles`` of them make the
full reduction, accumulated in one OBUF slot), ``m_tiles`` column blocks of C,
``n_tiles`` row blocks.  Three loop orders:

- ``S`` streamed:        g { n { m { k { LD A; LD W; COMPUTE } ST } } }
- ``A`` input-resident:  g { n { LD A(all k) ; m { k { LD W; COMPUTE } ST } } }
- ``B`` weight-resident: g { m { LD W(all k) ; n { k { LD A; COMPUTE } ST } } }

and 1 or 2 slots per buffer ring (2 = double buffering).  The compiler lays
the operands out in DRAM as the buffers' images (one contiguous block per
tile, so each LD is a single burst) and picks the candidate the analytical
model (``model.py``) predicts fastest.

Outputs, two modes:

- int32 (kernel runs, ``Plan.out is None``): every output tile leaves as int32
  partial sums (ST), put back in logical order on the host;
- packed (``Plan.out``, an ``OutMode``): the output unit at the bottom of every
  column requantises the finished sums (bias, multiplier, shift, ReLU, clamp),
  pools consecutive rows and writes the codes into the OBUF slot, packed; STP
  writes them row by row into a row-major activation matrix in DRAM (byte
  masked, any row pitch), the layout the next layer reads.  Partial sums stay
  on chip: with ``k_tiles == 1`` they never leave the column accumulators and
  an OBUF slot holds packed rows only (16 KiB = 2048 rows of 32 2-bit codes);
  with ``k_tiles > 1`` the slot holds the int32 partial sums of the tile and
  each packed row overwrites the partial sums of the row that finished it (the
  column reads word b <= c*e/32 of that row at T + b, the code of column c
  arrives at T + c + 3: never before it was read).  A LD into the PBUF ring brings the C columns'
  (bias, mult, shift) of each column block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Iterator

import numpy as np

from kernels import reference

from . import isa
from .outunit import avg_recip, container_bits

# address groups used by the compiler (group 7 stays all-zero)
G_A, G_W, G_Y, G_IB, G_WB, G_P, G_C, G_ZERO = 0, 1, 2, 3, 4, 5, 6, 7
SUPPORTED_BITS = tuple(range(1, 9))


def supported_pairs() -> tuple[tuple[int, int], ...]:
    """Every (qa, qw) the accelerator runs exactly (odd widths on their container's bricks)."""
    return tuple((a, w) for a in SUPPORTED_BITS for w in SUPPORTED_BITS)


class CompileError(ValueError):
    """The kernel cannot be mapped onto this configuration (does not fit, or bad layer parameters)."""


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
    def beat_bytes(self) -> int:
        return self.dram_bits // 8

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
    def pb_words(self) -> int:
        """Words of one PBUF slot: (bias, mult, shift) of every column."""
        return isa.PBUF_WORDS_PER_COL * self.cols

    @property
    def row_align(self) -> int:
        """Words an activation-matrix row pitch is a multiple of (whole IBUF addresses and DRAM beats)."""
        return math.lcm(self.rows, self.wpb)

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
    """Bits an operand of b bits occupies on the bricks (its container: 2, 4 or 8)."""
    return container_bits(b)


def am_pitch_words(cfg: ArrayConfig, k: int, e: int) -> int:
    """Row pitch (32-bit words) of an activation matrix of k values in e-bit containers
    that a layer reads as its input: whole words, rounded up to ``cfg.row_align``."""
    return _ceil(_ceil(k * e, 32), cfg.row_align) * cfg.row_align


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

    @property
    def F(self) -> int:
        """Activation steps per IBUF bank word."""
        return 32 // self.wa


@dataclass(frozen=True)
class Gemm:
    """G GEMMs of N x K by M x K in precision (qa, qw)."""

    groups: int
    N: int
    K: int
    M: int
    qa: int
    qw: int
    a_signed: bool = True
    w_signed: bool = True

    @property
    def macs(self) -> int:
        return self.groups * self.N * self.K * self.M


@dataclass(frozen=True)
class OutMode:
    """Packed outputs: what the output unit does and where STP puts the rows.

    Output row n (a pooled pixel, or a GEMM row without pooling) starts at byte
    ``n * pitch`` of the Y region; group g's block of M channels at byte
    ``g * block`` of the row; channel m of the block at bit ``m * e`` of it
    (e = container of out_bits, little-endian inside 32-bit words)."""

    out_bits: int                 # 0: int32 acc + bias; 1..8
    out_signed: bool = True
    relu: bool = False
    pool: str = "none"            # 'none', 'max', 'avg' over pool_n consecutive GEMM rows
    pool_n: int = 1
    pitch: int = 0                # bytes between output rows
    block: int = 0                # bytes of one group's channel block

    @property
    def eo(self) -> int:
        return container_bits(self.out_bits)

    def chunk(self, cols: int) -> int:
        """Bytes one column block of codes takes in an output row."""
        return cols * self.eo // 8

    def chw(self, cols: int) -> int:
        """OBUF words per packed row."""
        return max(1, cols * self.eo // 32)

    def recip(self) -> tuple[int, int]:
        return avg_recip(self.pool_n, self.eo) if self.pool == "avg" else (0, 0)


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
    out: OutMode | None = None
    rows_a: int = 0     # > 0: A is an activation matrix with this row pitch (words); 0: per-tile images

    @cached_property
    def geo(self) -> Geometry:
        return Geometry(self.gemm.qa, self.gemm.qw, self.cfg.rows)

    @property
    def fold(self) -> int:
        return self.geo.F if self.rows_a else 1

    @property
    def s_tot(self) -> int:
        return self.st * self.k_tiles

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
    def nstride(self) -> int:
        """IBUF steps between two rows of an A tile."""
        return self.rows_a // self.cfg.rows * self.geo.F if self.rows_a else self.a_steps

    @cached_property
    def ib_bank_words(self) -> int:
        if self.rows_a:
            return self.nt * self.rows_a // self.cfg.rows
        return self._ib_words(self.a_steps)

    @cached_property
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
        """int32 words of one output tile (int32 mode)."""
        return self.nt * self.cfg.cols

    @property
    def lp(self) -> int:
        return self.cfg.pb_words

    @property
    def rows_out(self) -> int:
        """Output rows one output tile stores (packed mode)."""
        return self.nt // (self.out.pool_n if self.out else 1)

    @property
    def in_place(self) -> bool:
        """Packed rows overwrite the int32 partial sums (k_tiles > 1) instead of filling the slot."""
        return self.out is not None and self.k_tiles > 1

    @property
    def a_tiles_per_n(self) -> int:
        return 1 if self.order == "A" else self.k_tiles

    @property
    def w_tiles_per_m(self) -> int:
        return 1 if self.order == "B" else self.k_tiles

    def fits(self) -> bool:
        c = self.cfg
        ok = (self.ib_bank_words <= c.ib_depth // self.islots and self.wb_bank_words <= c.wb_depth // self.wslots
              and self.nt < 1 << 16 and self.st < 1 << 16 and self.a_steps < 1 << 16 and self.nstride < 1 << 16)
        if self.rows_a and self.order != "A" and self.k_tiles != 1:
            return False            # an A tile of the row layout is whole rows
        if self.out is None:
            return ok and self.nt <= c.ob_depth // self.oslots
        if self.k_tiles > 1:
            return ok and self.nt % self.out.pool_n == 0 and self.nt <= c.ob_depth // self.oslots
        return (ok and self.nt % self.out.pool_n == 0 and self.rows_out < 1 << 16
                and self.rows_out * self.out.chw(c.cols) <= c.cols * c.ob_depth // self.oslots)

    def describe(self) -> dict:
        d = {"order": self.order, "nt": self.nt, "n_tiles": self.n_tiles, "st": self.st, "k_tiles": self.k_tiles,
             "m_tiles": self.m_tiles, "slots": [self.islots, self.wslots, self.oslots], "P": self.geo.P,
             "lanes": self.geo.lanes}
        if self.out is not None:
            d["out"] = {"bits": self.out.out_bits, "signed": self.out.out_signed, "pool": self.out.pool,
                        "pool_n": self.out.pool_n, "pitch": self.out.pitch}
        if self.rows_a:
            d["rows_a"] = self.rows_a
        return d


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _tile_counts(total: int, cap: int, extra: tuple[int, ...] = ()) -> list[int]:
    """A few tile counts for `total` items at most `cap` per tile (balanced tiles)."""
    if cap < 1:
        return []
    t0 = _ceil(total, cap)
    out = {t0, t0 + 1, 2 * t0, *extra}
    return sorted(t for t in out if 1 <= t <= total)


def candidates(cfg: ArrayConfig, gemm: Gemm, out: OutMode | None = None, rows_a: int = 0) -> Iterator[Plan]:
    geo = Geometry(gemm.qa, gemm.qw, cfg.rows)
    S0 = rows_a // cfg.rows * geo.F if rows_a else _ceil(gemm.K, geo.lanes)
    m_tiles = _ceil(gemm.M, cfg.cols)
    pn = out.pool_n if out else 1
    for oslots in (2, 1):
        caps = [cfg.ob_depth // oslots]                                   # int32 rows (partial sums)
        if out is not None:
            caps.append(cfg.cols * cfg.ob_depth // oslots // out.chw(cfg.cols) * pn)   # packed rows, k_tiles 1
        for islots in (2, 1):
            ib_bits = (cfg.ib_depth // islots) * 32
            # row tiles: OBUF-limited, or IBUF-limited so that all of K fits (order A)
            nt_a = ib_bits // (geo.wa * S0)
            counts: set[int] = set()
            for cap in caps:
                extra = (_ceil(gemm.N, min(nt_a, cap)),) if nt_a >= 1 else ()
                counts.update(_tile_counts(gemm.N, cap, extra))
            seen = set()
            for n_tiles in sorted(counts):
                nt = _ceil(_ceil(gemm.N, n_tiles), pn) * pn
                if nt in seen:
                    continue
                seen.add(nt)
                n_tiles = _ceil(gemm.N, nt)
                for wslots in (2, 1):
                    st_cap_w = (cfg.wb_depth // wslots) * 32 // geo.ww
                    base = dict(cfg=cfg, gemm=gemm, nt=nt, n_tiles=n_tiles, m_tiles=m_tiles, islots=islots,
                                wslots=wslots, oslots=oslots, out=out, rows_a=rows_a)
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


def choose_plan(cfg: ArrayConfig, gemm: Gemm, out: OutMode | None = None, rows_a: int = 0) -> Plan:
    from .model import predict

    best, best_c = None, None
    for p in candidates(cfg, gemm, out, rows_a):
        c = predict(p).cycles
        if best_c is None or c < best_c:
            best, best_c = p, c
    if best is None:
        raise CompileError(f"no tiling of {gemm} fits the buffers of {cfg}")
    return best


# ---- data layout ---------------------------------------------------------------

@dataclass
class Layout:
    """DRAM regions (32-bit word addresses) of one compiled kernel or layer."""

    a_base: int
    w_base: int
    y_base: int
    a_words: int
    w_words: int
    y_words: int
    p_base: int = 0
    p_words: int = 0

    @property
    def end(self) -> int:
        return max(self.a_base + self.a_words, self.w_base + self.w_words, self.y_base + self.y_words,
                   self.p_base + self.p_words)


def _align(x: int, a: int) -> int:
    return _ceil(x, a) * a


def region_words(plan: Plan) -> tuple[int, int, int, int]:
    """Words of the A, W, P and Y regions."""
    g = plan.gemm
    a_words = g.groups * plan.n_tiles * plan.a_tiles_per_n * plan.la
    w_words = g.groups * plan.m_tiles * plan.w_tiles_per_m * plan.lw
    if plan.out is None:
        return a_words, w_words, 0, g.groups * plan.n_tiles * plan.m_tiles * plan.ly
    p_words = g.groups * plan.m_tiles * plan.lp
    return a_words, w_words, p_words, _ceil(plan.n_tiles * plan.rows_out * plan.out.pitch, 4)


def layout(plan: Plan, base: int = 0) -> Layout:
    """Regions one after the other from `base`: A, W, (P), Y."""
    a_words, w_words, p_words, y_words = region_words(plan)
    al = max(plan.cfg.wpb, 16)
    a_base = _align(base, al)
    w_base = _align(a_base + a_words, al)
    p_base = _align(w_base + w_words, al)
    y_base = _align(p_base + p_words, al)
    return Layout(a_base, w_base, y_base, a_words, w_words, y_words, p_base, p_words)


def k_index(plan: Plan, steps: int) -> np.ndarray:
    """(steps, R, P): the reduction element fed at global step s, array row r, lane p."""
    geo, R, f = plan.geo, plan.cfg.rows, plan.fold
    s = np.arange(steps)[:, None, None]
    r = np.arange(R)[None, :, None]
    p = np.arange(geo.P)[None, None, :]
    return ((s // f) * R + r) * f * geo.P + (s % f) * geo.P + p


def _gather_k(vals: np.ndarray, idx: np.ndarray, K: int) -> np.ndarray:
    """vals (..., K) -> (..., *idx.shape), zero where idx >= K."""
    ext = np.zeros(vals.shape[:-1] + (max(K, int(idx.max()) + 1),), dtype=np.int16)
    ext[..., :K] = vals
    return ext[..., idx]


def _pack_rows(vals: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis LSB-first into uint32 words, in `bits`-bit containers (2, 4, 8)."""
    return reference.pack(vals, bits)


def pack_a(plan: Plan, a: np.ndarray) -> np.ndarray:
    """A (G, N, K) int values -> the A region (uint32 words)."""
    g = plan.gemm
    if plan.rows_a:
        return pack_matrix(np.asarray(a).reshape(g.groups, g.N, g.K), plan.geo.ea, plan.rows_a, plan.np_)
    return tile_images(plan, a)


def tile_images(plan: Plan, a: np.ndarray) -> np.ndarray:
    """A (G, N, K) -> the IBUF images of every A tile, one after the other: bank r of a tile
    holds, row after row, the steps the array row r reads (``k_index``), packed densely."""
    g, geo, R = plan.gemm, plan.geo, plan.cfg.rows
    ap = np.zeros((g.groups, plan.np_, g.K), dtype=np.int16)
    ap[:, :g.N] = a
    steps = plan.a_steps
    kt_img = plan.a_tiles_per_n
    t = _gather_k(ap, k_index(plan, kt_img * steps), g.K)           # (G, np, kt_img*steps, R, P)
    # (G, n_tiles, nt, kt_img, steps, R, P) -> (G, n_tiles, kt_img, R, nt, steps, P)
    t = t.reshape(g.groups, plan.n_tiles, plan.nt, kt_img, steps, R, geo.P).transpose(0, 1, 3, 5, 2, 4, 6)
    t = t.reshape(-1, R, plan.nt * steps * geo.P)
    words = _pack_rows(t, geo.ea)                                   # (tiles, R, w0)
    wb = plan.ib_bank_words
    img = np.zeros((words.shape[0], R, wb), dtype=np.uint32)
    img[:, :, :words.shape[2]] = words
    return np.ascontiguousarray(img.transpose(0, 2, 1)).reshape(-1)


def pack_matrix(a: np.ndarray, e: int, pitch: int, rows: int | None = None) -> np.ndarray:
    """Activation matrices (G, N, K) -> G row-major matrices of `rows` rows (default N), each
    row K values in e-bit containers, little-endian in 32-bit words, `pitch` words apart."""
    a = np.asarray(a)
    G, N, K = a.shape
    rows = N if rows is None else rows
    words = _pack_rows(a, e)                                        # (G, N, ceil(K e / 32))
    if words.shape[-1] > pitch:
        raise CompileError(f"rows of {K} {e}-bit values need {words.shape[-1]} words, the pitch is {pitch}")
    img = np.zeros((G, rows, pitch), dtype=np.uint32)
    img[:, :N, :words.shape[-1]] = words
    return img.reshape(-1)


def pack_w(plan: Plan, w: np.ndarray) -> np.ndarray:
    """W (G, M, K) int values -> the W region."""
    g, geo, R, C = plan.gemm, plan.geo, plan.cfg.rows, plan.cfg.cols
    wp = np.zeros((g.groups, plan.mp, g.K), dtype=np.int16)
    wp[:, :g.M] = w
    steps = plan.w_steps
    kt_img = plan.w_tiles_per_m
    t = _gather_k(wp, k_index(plan, kt_img * steps), g.K)           # (G, mp, kt_img*steps, R, P)
    # (G, m_tiles, C, kt_img, steps, R, P) -> (G, m_tiles, kt_img, R, C, steps, P)
    t = t.reshape(g.groups, plan.m_tiles, C, kt_img, steps, R, geo.P).transpose(0, 1, 3, 5, 2, 4, 6)
    t = t.reshape(-1, R * C, steps * geo.P)
    words = _pack_rows(t, geo.ew)
    wf = plan.wb_bank_words
    img = np.zeros((words.shape[0], R * C, wf), dtype=np.uint32)
    img[:, :, :words.shape[2]] = words
    return np.ascontiguousarray(img.transpose(0, 2, 1)).reshape(-1)


def _per_channel(v, groups: int, m: int) -> np.ndarray:
    """A scalar or one value per output channel (G*M of them, channel g*M + j) -> (G, M) int64."""
    a = np.asarray(v, dtype=np.int64)
    if a.size == 1:
        return np.full((groups, m), int(a.reshape(-1)[0]), dtype=np.int64)
    if a.size != groups * m:
        raise CompileError(f"{a.size} per-channel values for {groups * m} output channels")
    return a.reshape(groups, m)


def pack_p(plan: Plan, bias, mult, shift) -> np.ndarray:
    """Per-channel (bias, mult, shift) of the G*M output channels -> the P region: per
    (group, column block) C entries of (bias, mult, shift | channel valid << 8)."""
    g = plan.gemm
    img = np.zeros((g.groups, plan.mp, isa.PBUF_WORDS_PER_COL), dtype=np.uint32)
    img[:, :, 1] = 1
    img[:, :, 2] = 1
    img[:, :g.M, 0] = _per_channel(bias, g.groups, g.M) & 0xFFFFFFFF
    img[:, :g.M, 1] = _per_channel(mult, g.groups, g.M)
    img[:, :g.M, 2] = _per_channel(shift, g.groups, g.M) | 1 << 8
    return img.reshape(-1)


def unpack_y(plan: Plan, words: np.ndarray) -> np.ndarray:
    """The Y region (int32 per tile) -> Y (G, N, M)."""
    g, C = plan.gemm, plan.cfg.cols
    y = np.asarray(words, dtype=np.uint32).view(np.int32)
    y = y.reshape(g.groups, plan.n_tiles, plan.m_tiles, plan.nt, C).transpose(0, 1, 3, 2, 4)
    y = y.reshape(g.groups, plan.np_, plan.mp)
    return np.ascontiguousarray(y[:, :g.N, :g.M])


def read_rows(y_bytes: np.ndarray, rows: int, pitch: int, groups: int, block: int, m: int, e: int,
              signed: bool) -> np.ndarray:
    """Output rows written by STP -> values (groups, rows, m)."""
    from .outunit import from_codes

    b = np.frombuffer(np.ascontiguousarray(y_bytes).tobytes(), dtype=np.uint8)
    pos = np.arange(groups)[:, None] * block * 8 + np.arange(m)[None, :] * e      # bit offsets in a row
    out = np.zeros((groups, rows, m), dtype=np.int64)
    for r in range(rows):
        bits = r * pitch * 8 + pos
        byte, sh = bits // 8, bits % 8
        nb = max(1, e // 8)
        v = np.zeros(pos.shape, dtype=np.int64)
        for i in range(nb):
            v |= b[byte + i].astype(np.int64) << (8 * i)
        out[:, r] = from_codes(v >> sh, e, signed)
    return out


# ---- program ------------------------------------------------------------------------

def _strides(plan: Plan) -> dict[tuple[int, int], int]:
    """(address group, loop level) -> stride.  Levels: S/A 0 g, 1 n, 2 m, 3 k; B 0 g, 1 m, 2 n, 3 k."""
    out = plan.out
    la, lw, ly, lp = plan.la, plan.lw, plan.ly, plan.lp
    nT, mT = plan.n_tiles, plan.m_tiles
    ln, lm = (1, 2) if plan.order in ("S", "A") else (2, 1)
    kA = plan.a_tiles_per_n
    st: dict[tuple[int, int], int] = {(G_A, 0): nT * kA * la, (G_A, ln): kA * la, (G_W, 0): mT * plan.w_tiles_per_m * lw,
                                      (G_W, lm): plan.w_tiles_per_m * lw}
    if plan.order != "A":
        st[(G_A, 3)] = la
    if plan.order != "B":
        st[(G_W, 3)] = lw
    if plan.order == "A":
        st[(G_IB, 3)] = plan.st
    if plan.order == "B":
        st[(G_WB, 3)] = plan.st
    if out is None:
        st.update({(G_Y, 0): nT * mT * ly, (G_Y, ln): mT * ly, (G_Y, lm): ly})
    else:
        chunk = out.chunk(plan.cfg.cols)
        st.update({(G_Y, 0): out.block, (G_Y, ln): plan.rows_out * out.pitch, (G_Y, lm): chunk, (G_C, lm): chunk,
                   (G_P, 0): mT * lp, (G_P, lm): lp})
    return st


def program(plan: Plan, lay: Layout) -> list[int]:
    g, out, cfg = plan.gemm, plan.out, plan.cfg
    prog = [isa.setup(plan.geo.ea, plan.geo.ew, g.a_signed, g.w_signed, plan.islots, plan.wslots, plan.oslots)]
    if out is not None:
        m, k = out.recip()
        prog += [isa.osetup(out.out_bits, out.out_signed, out.relu, out.pool, out.pool_n, m, k, plan.in_place),
                 isa.yshape(plan.rows_out, out.pitch, out.block)]
        store = isa.stp(G_Y, G_C, out.chunk(cfg.cols), lay.y_base * 4)
        ld_p = [isa.ld(isa.NS_PBUF, G_P, plan.lp, lay.p_base)]
    else:
        store = isa.st(G_Y, plan.ly, lay.y_base)
        ld_p = []
    prog.append(isa.cshape(plan.nt, plan.st, plan.nstride))
    for (grp, lvl), v in sorted(_strides(plan).items()):
        if v:
            prog.append(isa.stride(grp, lvl, v))
    ld_a = isa.ld(isa.NS_IBUF, G_A, plan.la, lay.a_base)
    ld_w = isa.ld(isa.NS_WBUF, G_W, plan.lw, lay.w_base)
    prog.append(isa.loop(g.groups))
    if plan.order == "S":
        prog += [isa.loop(plan.n_tiles), isa.loop(plan.m_tiles), *ld_p, isa.loop(plan.k_tiles), ld_a, ld_w,
                 isa.compute(G_ZERO, G_ZERO, acquire=3, finish=3, rel_i=isa.ALWAYS, rel_w=isa.ALWAYS, rel_p=3)]
    elif plan.order == "A":
        prog += [isa.loop(plan.n_tiles), ld_a, isa.loop(plan.m_tiles), *ld_p, isa.loop(plan.k_tiles), ld_w,
                 isa.compute(G_IB, G_ZERO, acquire=3, finish=3, rel_i=2, rel_w=isa.ALWAYS, rel_p=3)]
    else:
        prog += [isa.loop(plan.m_tiles), ld_w, *ld_p, isa.loop(plan.n_tiles), isa.loop(plan.k_tiles), ld_a,
                 isa.compute(G_ZERO, G_WB, acquire=3, finish=3, rel_i=isa.ALWAYS, rel_w=2, rel_p=2)]
    prog += [isa.endloop(), store, isa.endloop(), isa.endloop(), isa.endloop(), isa.halt()]
    if len(prog) > cfg.imem_depth:
        raise CompileError("program longer than the instruction memory")
    return prog


# ---- kernels -> GEMMs ------------------------------------------------------------------

def im2col(x: np.ndarray, KS: int, S: int, P: int, G: int) -> np.ndarray:
    """x (N, C, H, W) -> (G, N*OH*OW, C/G*KS*KS), reduction order (c, kh, kw)."""
    N, C, H, W = x.shape
    OH, OW = reference.conv_out_hw(H, W, KS, S, P)
    xp = np.zeros((N, C, H + 2 * P, W + 2 * P), dtype=np.int16)
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
    p_img: np.ndarray | None = None
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


def kernel_gemm(op: str, shape, qa: int, qw: int, a_signed: bool = True) -> tuple[Gemm, tuple]:
    if op == "matmul":
        N, M, K = (int(v) for v in shape)
        return Gemm(1, N, K, M, qa, qw, a_signed), ()
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    OH, OW = reference.conv_out_hw(H, W, KS, S, P)
    return Gemm(G, N * OH * OW, C // G * KS * KS, K // G, qa, qw, a_signed), (N, K, OH, OW)


def compile_kernel(cfg: ArrayConfig, op: str, shape, qa: int, qw: int, a: np.ndarray | None = None,
                   w: np.ndarray | None = None, base: int = 0, plan: Plan | None = None,
                   a_signed: bool = True) -> Compiled:
    """Plan + program (+ packed operands when a, w are given in logical layout); int32 outputs.
    qa, qw in 1..8; ``a_signed=False``: unsigned activations [0, 2^qa - 1]."""
    gemm, conv = kernel_gemm(op, shape, qa, qw, a_signed)
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
        return np.asarray(a, dtype=np.int16)[None]
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    return im2col(np.asarray(a, dtype=np.int16), KS, S, P, G)


def gemm_operand_w(op: str, shape, w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.int16)
    if op == "matmul":
        return w[None]
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    return w.reshape(G, K // G, C // G * KS * KS)


def store_beats(plan: Plan, y0: int = 0) -> int:
    """DRAM beats all the program's stores take (ST: whole beats; STP: per row, the beats its
    bytes touch; y0 = the Y region's byte address modulo nothing, only its offset in a beat counts)."""
    g, cfg, out = plan.gemm, plan.cfg, plan.out
    if out is None:
        return g.groups * plan.n_tiles * plan.m_tiles * plan.ly // cfg.wpb
    return _stp_beats(cfg.beat_bytes, g.groups, plan.m_tiles, plan.n_tiles * plan.rows_out, out.pitch, out.block,
                      out.chunk(cfg.cols), y0 % cfg.beat_bytes)


@lru_cache(maxsize=4096)
def _stp_beats(bb: int, groups: int, m_tiles: int, rows: int, pitch: int, block: int, chunk: int, y0: int) -> int:
    period = bb // math.gcd(pitch, bb)
    res = (np.arange(min(rows, period)) * pitch) % bb                  # row offsets, one period
    counts = np.full(res.shape, rows // period if rows >= period else 1, dtype=np.int64)
    if rows >= period:
        counts[:rows % period] += 1
    m = np.arange(m_tiles)
    nbytes = np.minimum(chunk, block - m * chunk)                      # (mT,)
    off = (y0 + np.arange(groups)[:, None] * block + m[None, :] * chunk) % bb   # (G, mT)
    first = (off[:, :, None] + res[None, None, :]) % bb                # (G, mT, period)
    beats = (first + nbytes[None, :, None] + bb - 1) // bb
    return int((beats * counts[None, None, :]).sum())


def dram_bytes(plan: Plan) -> int:
    """Bytes the program moves over the DRAM port (whole beats)."""
    g = plan.gemm
    tiles = g.groups * plan.n_tiles * plan.m_tiles * plan.k_tiles
    a = (g.groups * plan.n_tiles if plan.order == "A" else tiles) * plan.la
    w = (g.groups * plan.m_tiles if plan.order == "B" else tiles) * plan.lw
    p = 0
    if plan.out is not None:
        p = g.groups * plan.m_tiles * (1 if plan.order == "B" else plan.n_tiles) * plan.lp
    return 4 * (a + w + p) + store_beats(plan) * plan.cfg.beat_bytes
