"""Cost terms per target family: the `terms` feature set.

A linear proxy extrapolates like the hardware only if its columns are what the
hardware spends time on, counted the way the kernels count them.  MACs are not:
a bit-packed kernel iterates over *words* (a reduction of 33 codes costs two
words of 32, not 33/32 of one), over blocks of four weight rows, and re-reads
its weights from memory once they no longer fit the cache.  Fitted with
non-negative coefficients (``model="linear"``), every term can only add time,
so a shape larger than any measured one is predicted by the same per-term
costs, not by a tree's last leaf.

Families (`FAMILIES`):

``cpu`` -- the bit-packed kernels (kernels/src: rows.c, simd.c, conv2d.c) on
any CPU target.  A kernel is ``rows`` activation rows (matmul: N; conv2d: one
gathered patch per output pixel and group) of ``L`` codes (K; C/G*KS*KS), each
dotted with ``Mr`` weight rows (M; K/G).  Columns:

- ``iter_AxW`` (16): inner-loop iterations of pair (A, W): rows x Mr x words of
  the wider operand (one CFU op / one lanes multiply block per word);
- ``word_tail``: iterations outside the unrolled blocks of 8 words;
  ``row_tail``: iterations of the Mr % 4 rows outside the four-row blocks;
- ``prep_Ab`` (4): activation codes unpacked / gathered and prepared per row,
  split by qa;
- ``outputs``, ``rows``, ``row_blocks`` (rows x ceil(Mr/4)): per-output,
  per-row and per-block overheads; ``gather_runs``: conv window rows copied;
- ``pad_iters_Ab`` (4): iterations of conv patches touching the zero padding
  (another path; twice for qa = 1, which cannot encode 0);
- ``restream_4k`` / ``_32k`` / ``_1m``: weight bytes re-read per row when a
  row's working set (its weight rows + the prepared activation row) exceeds a
  4 KiB, 32 KiB or 1 MiB cache -- a cyclic walk through more than an LRU
  cache holds misses on every line, so the term is all-or-nothing per size;
  the fit finds which size the target has (DESIGN: no target capability is
  needed to fit imported data);
- ``act_restream_*``: activation bytes re-read per block of four weight rows
  when the activation row and four weight rows exceed the cache size;
- ``w_bytes`` / ``a_bytes``: compulsory traffic, every weight / activation
  byte read from memory once;
- ``alias_iters``: the iterations of kernels whose four weight rows of a block
  map to the same sets of a 4 KiB direct-mapped cache (VexRiscv's D$; a row
  pitch of 2 KiB: 8-bit K = 2048 runs 3x slower per word there);
- ``gather_miss_*``: conv window runs gathered while the input tensor exceeds
  a 4 KiB / 32 KiB / 1 MiB cache (each run starts in another line);
- the layer-mode columns of `proxy.features` (packing per qa, requantisation).

``bitfusion`` -- the BitFusion accelerator (rtl_sims/bitfusion) at its
published array configuration: the compiler's tiling of the kernel gives
``issue`` (cycles the array issues: COMPUTEs x nt x st), ``computes``,
``a_words`` / ``w_words`` / ``y_words`` (DRAM words per operand, hoisting
included), ``out_tiles``, ``fill`` (out_tiles x (R + C): the array's pipeline
fill and drain per output tile) and ``mem_excess`` (per output tile, the DRAM
beats beyond the issue cycles: the memory-bound part a max() would add).
Widths 1..8 are priced through their containers, as the compiler lays them
out.  A target built with other ``--param`` array sizes is tiled differently;
its terms are those of the published configuration (the fit absorbs a
uniform scale, not a different tiling).
"""

from __future__ import annotations

import math
from functools import lru_cache

from harness.errors import UserError
from harness.spec import LAYER_OPS, KernelSpec
from kernels.numeric import BITS

FAMILIES = ("cpu", "bitfusion")
CACHES = (("4k", 4 << 10), ("32k", 32 << 10), ("1m", 1 << 20))

_POOL = ("window_reads", "inputs", "code_outputs", "sign_outputs")    # = features.LAYER_COLUMNS
_LAYER = tuple(f"pack_{a}b" for a in BITS) + ("requant_int32", "requant_sign", "requant_codes")

CPU_NAMES = ([f"iter_{a}x{w}" for a in BITS for w in BITS] + ["word_tail", "row_tail"]
             + [f"prep_{a}b" for a in BITS] + ["outputs", "rows", "row_blocks", "gather_runs"]
             + [f"pad_iters_{a}b" for a in BITS] + [f"restream_{n}" for n, _ in CACHES]
             + [f"act_restream_{n}" for n, _ in CACHES] + ["w_bytes", "a_bytes", "alias_iters"]
             + [f"gather_miss_{n}" for n, _ in CACHES] + list(_LAYER))
BITFUSION_NAMES = ["issue", "computes", "a_words", "w_words", "y_words", "out_tiles", "fill", "mem_excess"]


def family_of(target: str | None, specs) -> str:
    """The family whose terms fit kernels measured on `target`: BitFusion by name, or when a
    width outside the bit-packed set (only BitFusion runs 3, 5, 6, 7) occurs; else CPU."""
    if target and "bitfusion" in str(target).lower():
        return "bitfusion"
    if any(s.qa not in BITS or (s.has_weights and s.qw not in BITS) for s in specs):
        return "bitfusion"
    return "cpu"


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise UserError(f"unknown target family {family!r}; use one of {', '.join(FAMILIES)}.")
    return family


def names(family: str, op: str | None) -> list[str]:
    check_family(family)
    if op in LAYER_OPS:
        return list(_POOL)
    return list(CPU_NAMES if family == "cpu" else BITFUSION_NAMES)


def _interior_rows(d: dict, oh: int, ow: int) -> int:
    """Output pixels whose window lies wholly inside the input (no padding)."""
    def axis(n_out, size):
        return sum(1 for o in range(n_out) if o * d["S"] - d["P"] >= 0 and o * d["S"] - d["P"] + d["KS"] <= size)
    return axis(oh, d["H"]) * axis(ow, d["W"])


def _geometry(s: KernelSpec) -> tuple[int, int, int, int, int]:
    """(rows, Mr, L, groups, padded rows) of a kernel (see the module docstring)."""
    d = s.dims
    if s.op == "matmul":
        return d["N"], d["M"], d["K"], 1, 0
    oh, ow = s.out_hw
    pix = oh * ow
    rows = d["N"] * pix * d["G"]
    padded = d["N"] * d["G"] * (pix - _interior_rows(d, oh, ow))
    return rows, d["K"] // d["G"], s.reduction, d["G"], padded


def cpu_row(s: KernelSpec) -> list[float]:
    from .features import _analytic_row, _layer_columns

    if s.op in LAYER_OPS:                  # weightless steps: the analytic columns are their terms
        return _analytic_row(s)
    if s.qa not in BITS or s.qw not in BITS:
        raise UserError(f"the cpu cost terms cover the bit-packed widths {', '.join(map(str, BITS))}; "
                        f"kernel {s} is outside them (fit BitFusion data with family 'bitfusion').")
    rows, mr, L, _, padded = _geometry(s)
    nb = len(BITS)
    ia, iw = BITS.index(s.qa), BITS.index(s.qw)
    nwide = math.ceil(L * max(s.qa, s.qw) / 32)
    it = float(rows * mr * nwide)
    out = [0.0] * (nb * nb)
    out[ia * nb + iw] = it
    out += [float(rows * mr * (nwide % 8)), float(rows * (mr % 4) * nwide)]
    prep = [0.0] * nb
    prep[ia] = float(rows * L)
    out += prep
    d = s.dims
    runs = rows * (d["C"] // d["G"]) * d["KS"] if s.op == "conv2d" else 0
    out += [float(s.outputs), float(rows), float(rows * math.ceil(mr / 4)), float(runs)]
    pad = [0.0] * nb
    pad[ia] = float(padded * mr * nwide)
    out += pad
    wbytes = mr * 4 * math.ceil(L * s.qw / 32)
    abytes = 4 * math.ceil(L * s.qa / 32)
    out += [float(rows * wbytes) if wbytes + abytes > size else 0.0 for _, size in CACHES]
    # the activation row is re-read for every block of four weight rows: it stays cached
    # only while it fits beside them
    blocks = math.ceil(mr / 4)
    out += [float(rows * blocks * abytes) if abytes + 4 * wbytes // max(mr, 1) > size else 0.0
            for _, size in CACHES]
    out += [float(s.weight_count * s.qw / 8), float(s.act_count * s.qa / 8)]
    out.append(it if mr >= 2 and rows_alias(wbytes // mr) else 0.0)
    # a conv patch gathers C/G x KS runs, one per channel and window row, H*W codes apart:
    # once the input no longer fits a cache, every run is a miss there
    act_tensor = s.act_count * s.qa // 8
    out += [float(runs) if act_tensor > size else 0.0 for _, size in CACHES]
    return out + _layer_columns(s)


#: a small direct-mapped data cache (VexRiscv's 4 KiB D$) and its line
DIRECT_MAPPED = (4 << 10, 32)


def rows_alias(pitch: int, cache: tuple[int, int] = DIRECT_MAPPED) -> bool:
    """Whether two of the four weight rows a block reads together (pitch bytes apart) map to
    the same sets of a direct-mapped cache: every word then misses (pitch 2 KiB: rows 0 and 2)."""
    size, line = cache
    for d in range(1, 4):
        off = (d * pitch) % size
        if d * pitch >= line and (off < line or off > size - line):   # other lines, same sets
            return True
    return False


@lru_cache(maxsize=65536)
def _bitfusion_counts(op: str, shape: tuple, qa: int, qw: int) -> tuple[float, ...]:
    from rtl_sims.bitfusion.compiler import ArrayConfig, CompileError, choose_plan, kernel_gemm, store_beats

    cfg = ArrayConfig()
    try:
        gemm, _ = kernel_gemm(op, shape, qa, qw)
        plan = choose_plan(cfg, gemm)
    except CompileError as e:
        raise UserError(f"the BitFusion compiler cannot tile {op} {shape} {qa}x{qw}: {e}") from None
    G, nT, mT, kT = gemm.groups, plan.n_tiles, plan.m_tiles, plan.k_tiles
    computes = G * nT * mT * kT
    n_out = G * nT * mT
    tc = plan.nt * plan.st
    a = (G * nT if plan.order == "A" else computes) * plan.la
    w = (G * mT if plan.order == "B" else computes) * plan.lw
    y = store_beats(plan) * cfg.wpb
    beats_per_tile = (a + w + y) / cfg.wpb / n_out
    excess = n_out * max(0.0, beats_per_tile - kT * tc)
    return (float(computes * tc), float(computes), float(a), float(w), float(y), float(n_out),
            float(n_out * cfg.pipeline), float(excess))


def bitfusion_row(s: KernelSpec) -> list[float]:
    from .features import _analytic_row

    if s.op in LAYER_OPS:
        return _analytic_row(s)
    return list(_bitfusion_counts(s.op, tuple(s.shape), s.qa, s.qw))


def row(s: KernelSpec, family: str) -> list[float]:
    return cpu_row(s) if family == "cpu" else bitfusion_row(s)
