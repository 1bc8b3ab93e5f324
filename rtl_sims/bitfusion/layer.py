"""One layer on the BitFusion array: conv2d / matmul + bias + requant (+ ReLU) (+ pool),
packed input at one DRAM address, packed output at another (docs/bitfusion.md section 5).

The layouts, so that layers chain through DRAM:

*Activation matrix* (what a layer reads, and what it writes): ``rows`` rows at
``pitch`` bytes from each other; row n holds its values in e-bit containers
(e = 2 for 1..2 bits, 4 for 3..4, 8 for 5..8, 32 for int32 outputs),
little-endian inside 32-bit words: value k at bit ``(k mod 32/e) * e`` of word
``k div (32/e)`` of the row.  Signed values are two's complement in e bits,
unsigned ones plain, 1-bit values (+-1) are ``01`` / ``11``.

- A layer's *input* (``a_base``): per group, ``in_rows`` rows at a pitch of
  ``in_pitch`` words, a multiple of ``cfg.row_align`` (lcm(R, beat words)); the
  group matrices follow each other.  matmul: row n is A[n, :].  conv2d: row n
  is the im2col row of output pixel n in (c, kh, kw) order (``conv_rows`` gives
  the pixel order, window by window when the layer pools); built on the host by
  ``input_image``.  Rows >= N and the bits of a row beyond its K values are
  never used (their weights are zero): they may hold anything.
- A layer's *output* (``y_base``): ``out_rows`` rows (output pixels after
  pooling in (n, oh, ow) raster order, or GEMM rows) at ``out_pitch`` bytes;
  group g's channels start at byte ``g * out_block`` of a row (``out_block`` =
  ceil(channels per group x e / 8); with G = 1 the row is the plain packing of
  all channels).  Bytes outside the channel blocks are not written.

With ``y_pitch = 4 * next.in_pitch`` the output of a matmul (or any layer whose
rows are the next layer's rows) is the next matmul's input as it stands; a
flatten + linear reads a conv's whole output region as one row when its
weights are placed with ``in_positions = producer.flatten_positions()``
(best with a dense ``y_pitch = groups * out_block``).  A conv after a conv needs
the im2col gather of its input (host side, ``input_image``): the accelerator
has no gathering load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernels import reference

from . import compiler as cc
from .outunit import container_bits, value_range


@dataclass(frozen=True)
class PoolSpec:
    """Pooling after requantisation: square window, no padding (as mpq.integer.Pool)."""

    kind: str       # 'max' or 'avg'
    ks: int
    stride: int

    @property
    def n(self) -> int:
        return self.ks * self.ks


@dataclass
class LayerProgram:
    """A compiled layer: program, DRAM regions (word addresses) and images, layouts."""

    op: str
    shape: tuple
    plan: cc.Plan
    layout: cc.Layout
    program: list[int]
    w_img: np.ndarray
    p_img: np.ndarray
    in_pitch: int                   # words per input row
    in_rows: int                    # input rows read per group (>= the rows that matter)
    out_rows: int                   # output rows written
    out_valid_rows: int             # of which meaningful (N, or N x pooled pixels)
    out_pitch: int                  # bytes per output row
    out_block: int                  # bytes per group block of an output row
    out_channels: int               # channels per group
    out_bits: int
    out_signed: bool
    pool: PoolSpec | None = None
    a_signed: bool = True
    meta: dict = field(default_factory=dict)

    @property
    def groups(self) -> int:
        return self.plan.gemm.groups

    @property
    def in_container(self) -> int:
        return self.plan.geo.ea

    @property
    def out_container(self) -> int:
        return container_bits(self.out_bits)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.meta.get("out_hw", (1, 1))

    def input_image(self, x: np.ndarray) -> np.ndarray:
        """Logical input values (matmul (N, K); conv2d (N, C, H, W)) -> the A region (uint32 words)."""
        x = np.asarray(x)
        lo, hi = value_range(self.plan.gemm.qa, self.a_signed)
        if x.size and (int(x.min()) < lo or int(x.max()) > hi):
            raise cc.CompileError(f"input values outside the {self.plan.gemm.qa}-bit range [{lo}, {hi}]")
        if self.op == "matmul":
            a = x.reshape(1, *x.shape)
        else:
            a = conv_rows(x, self.shape, self.pool)
        return cc.pack_matrix(a, self.in_container, self.in_pitch, self.in_rows)

    def outputs(self, y_words: np.ndarray) -> np.ndarray:
        """The Y region -> logical outputs: matmul (N, M); conv2d (N, K, OH', OW') after pooling."""
        v = cc.read_rows(np.asarray(y_words, dtype=np.uint32), self.out_valid_rows, self.out_pitch, self.groups,
                         self.out_block, self.out_channels, self.out_container,
                         self.out_signed or self.out_bits <= 1)
        v = v.transpose(1, 0, 2).reshape(self.out_valid_rows, -1)          # (rows, G*Mg)
        if self.op == "matmul":
            return v
        N = self.shape[0]
        ph, pw = self.out_hw
        return np.ascontiguousarray(v.reshape(N, ph, pw, -1).transpose(0, 3, 1, 2))

    def channel_positions(self) -> np.ndarray:
        """Element index (in out_container units) of every output channel inside a row."""
        e = self.out_container
        g = np.arange(self.groups)[:, None]
        return (g * self.out_block * 8 // e + np.arange(self.out_channels)[None, :]).reshape(-1)

    def flatten_positions(self) -> np.ndarray:
        """For a flatten + linear reading this layer's whole output (batch 1) as one row: the
        element index of input feature (c, h, w) in C-order (torch.flatten of NCHW)."""
        if self.shape[0] != 1:
            raise cc.CompileError("flatten positions are defined for batch 1")
        ph, pw = self.out_hw
        pix = np.arange(ph * pw) * (self.out_pitch * 8 // self.out_container)
        return (self.channel_positions()[:, None] + pix[None, :]).reshape(-1)


def conv_fields(shape) -> tuple[int, ...]:
    """(N, C, H, W, K, KS, S, P, G), checked."""
    if len(shape) != 9:
        raise cc.CompileError(f"conv2d shape must be (N,C,H,W,K,KS,S,P,G), got {tuple(shape)}")
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    if min(N, C, H, W, K, KS, S, G) < 1 or P < 0 or C % G or K % G or H + 2 * P < KS or W + 2 * P < KS:
        raise cc.CompileError(f"impossible conv2d shape {tuple(shape)}")
    return N, C, H, W, K, KS, S, P, G


def conv_out_hw(shape, pool: PoolSpec | None) -> tuple[int, int, int, int]:
    """(OH, OW, OH', OW'): the conv output and, after pooling, the stored output."""
    N, C, H, W, K, KS, S, P, G = conv_fields(shape)
    OH, OW = reference.conv_out_hw(H, W, KS, S, P)
    if pool is None:
        return OH, OW, OH, OW
    if OH < pool.ks or OW < pool.ks:
        raise cc.CompileError(f"a {pool.ks}x{pool.ks} pool does not fit the {OH}x{OW} conv output")
    return OH, OW, (OH - pool.ks) // pool.stride + 1, (OW - pool.ks) // pool.stride + 1


def conv_row_order(shape, pool: PoolSpec | None) -> np.ndarray:
    """Conv output pixels (indices into the (n, oh, ow) raster) in the order the layer computes
    them: raster order, or pooling window after pooling window (members in (i, j) order)."""
    N = int(shape[0])
    OH, OW, PH, PW = conv_out_hw(shape, pool)
    if pool is None:
        return np.arange(N * OH * OW)
    n, ph, pw, i, j = np.meshgrid(np.arange(N), np.arange(PH), np.arange(PW), np.arange(pool.ks),
                                  np.arange(pool.ks), indexing="ij")
    return (n * OH * OW + (ph * pool.stride + i) * OW + (pw * pool.stride + j)).reshape(-1)


def conv_rows(x: np.ndarray, shape, pool: PoolSpec | None) -> np.ndarray:
    """NCHW input values -> (G, rows, C/G*KS*KS): im2col rows in the layer's pixel order."""
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    cols = cc.im2col(np.asarray(x).astype(np.int16), KS, S, P, G)
    return cols[:, conv_row_order(shape, pool)]


def _check_layer(qa: int, qw: int, out_bits: int, out_signed: bool, a_signed: bool, relu: bool,
                 pool: PoolSpec | None, mult, shift, cfg: cc.ArrayConfig) -> None:
    for name, b in (("qa", qa), ("qw", qw)):
        if b not in cc.SUPPORTED_BITS:
            raise cc.CompileError(f"{name}={b}: the accelerator runs 1..8-bit operands")
    if not 0 <= out_bits <= 8:
        raise cc.CompileError(f"out_bits={out_bits}: outputs are 1..8 bits, or 0 for int32")
    if (not out_signed and out_bits < 2) or (not a_signed and qa < 2):
        raise cc.CompileError("unsigned values need at least 2 bits (1-bit values are +-1)")
    if cfg.cols * container_bits(out_bits) < 8:
        raise cc.CompileError(f"{cfg.cols} columns of {out_bits}-bit codes are less than a byte")
    if out_bits == 0 and (relu or pool is not None):
        raise cc.CompileError("int32 outputs (out_bits=0) take neither ReLU nor pooling")
    if pool is not None:
        if pool.kind not in ("max", "avg") or pool.ks < 1 or pool.stride < 1 or pool.n > 255:
            raise cc.CompileError(f"unsupported pooling {pool}")
        if pool.kind == "avg" and out_bits == 1:
            raise cc.CompileError("average pooling of 1-bit values is not defined")
    if out_bits >= 2:
        m, s = np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)
        if m.size and (m.min() < 1 or m.max() >= 1 << 31):
            raise cc.CompileError("requantisation multipliers must be in 1 .. 2^31-1")
        if s.size and (s.min() < 1 or s.max() > 62):
            raise cc.CompileError("requantisation shifts must be in 1..62")


@dataclass(frozen=True)
class LayerGemm:
    """What a layer is to the array: its GEMMs, output mode and input row pitch (words)."""

    gemm: cc.Gemm
    out: cc.OutMode
    in_pitch: int
    k_in: int                   # values per input row that matter (<= in_pitch * 32 / container)
    out_rows: int               # meaningful output rows
    out_hw: tuple = (1, 1)


def layer_gemm(cfg: cc.ArrayConfig, op: str, shape, qa: int, qw: int, out_bits: int, out_signed: bool = True,
               relu: bool = False, pool: PoolSpec | tuple | None = None, *, a_signed: bool = True,
               y_pitch: int | None = None, a_pitch: int | None = None, k_in: int | None = None) -> LayerGemm:
    """The GEMM, output mode and layouts of a layer (no data): what ``compile_layer`` tiles."""
    if isinstance(pool, tuple):
        pool = PoolSpec(*pool)
    ea, eo = cc.eff_bits(qa), container_bits(out_bits)
    out_hw = (1, 1)
    if op == "matmul":
        if pool is not None:
            raise cc.CompileError("a matmul layer does not pool")
        N, M, K = (int(v) for v in shape)
        G, Mg, rows_in, out_rows = 1, M, N, N
        k_in = K if k_in is None else k_in
    elif op == "conv2d":
        N, C, H, W, K, KS, S, P, G = conv_fields(shape)
        OH, OW, PH, PW = conv_out_hw(shape, pool)
        out_hw = (PH, PW)
        Mg = K // G
        k_in = C // G * KS * KS if k_in is None else k_in
        rows_in = N * (PH * PW * pool.n if pool else OH * OW)
        out_rows = N * PH * PW
    else:
        raise cc.CompileError(f"unknown op {op!r}")
    pitch_in = a_pitch if a_pitch is not None else cc.am_pitch_words(cfg, k_in, ea)
    if pitch_in % cfg.row_align or pitch_in * 32 < k_in * ea:
        raise cc.CompileError(f"input pitch {pitch_in} words: needs a multiple of {cfg.row_align} "
                              f"holding {k_in} {ea}-bit values")
    block = -(-Mg * eo // 8)
    pitch_out = y_pitch if y_pitch is not None else 4 * cc.am_pitch_words(cfg, G * block * 8 // eo, eo)
    if pitch_out < G * block:
        raise cc.CompileError(f"output pitch {pitch_out} B is smaller than a row ({G * block} B)")
    gemm = cc.Gemm(G, rows_in, pitch_in * 32 // ea, Mg, qa, qw, a_signed, True)
    out = cc.OutMode(out_bits, out_signed or out_bits <= 1, relu, pool.kind if pool else "none",
                     pool.n if pool else 1, pitch_out, block)
    return LayerGemm(gemm, out, pitch_in, k_in, out_rows, out_hw)


def compile_layer(cfg: cc.ArrayConfig, op: str, shape, qa: int, qw: int, weights, bias, mult, shift, relu: bool,
                  out_bits: int, out_signed: bool = True, pool: PoolSpec | tuple | None = None, a_base: int = 0,
                  y_base: int | None = None, *, a_signed: bool = True, w_base: int | None = None,
                  y_pitch: int | None = None, a_pitch: int | None = None, in_positions=None,
                  plan: cc.Plan | None = None) -> LayerProgram:
    """Compile one layer; addresses are 32-bit word addresses, ``a_base`` a whole number of
    DRAM beats (``y_base`` may be any word; on a whole beat the model's count of store beats
    is exact).  ``y_base`` defaults to after the input, ``w_base`` (weights, then the output
    unit's parameters) to after the output.  ``shape``: matmul (N, M, K), conv2d
    (N, C, H, W, K, KS, S, P, G); ``weights`` (M, K) / (K, C/G, KS, KS); bias, mult, shift one
    per output channel.  ``in_positions`` (matmul, or a 1x1 conv with stride 1, no padding and
    one group): the element index of every input feature inside the input row (a flatten of
    another layer's output, or the channels of its output rows; ``input_image`` does not apply
    then: the input is that layer's output region); ``pool``: (kind, ks, stride)."""
    if isinstance(pool, tuple):
        pool = PoolSpec(*pool)
    _check_layer(qa, qw, out_bits, out_signed, a_signed, relu, pool, mult, shift, cfg)
    w = np.asarray(weights).astype(np.int16)
    lo, hi = value_range(qw)
    if w.size and (int(w.min()) < lo or int(w.max()) > hi):
        raise cc.CompileError(f"weights outside the {qw}-bit range [{lo}, {hi}]")
    k_in = None
    if in_positions is not None:
        if op == "conv2d" and tuple(conv_fields(shape)[5:]) != (1, 1, 0, 1):
            raise cc.CompileError("in_positions is for matmul layers and 1x1 convs (stride 1, no padding, one group)")
        M, K = (int(shape[4]), int(shape[1])) if op == "conv2d" else (int(shape[1]), int(shape[2]))
        w = w.reshape(M, K)
        pos = np.asarray(in_positions, dtype=np.int64)
        if pos.shape != (K,) or len(np.unique(pos)) != K or pos.min() < 0:
            raise cc.CompileError("in_positions must give K distinct element indices")
        wk = np.zeros((M, int(pos.max()) + 1), dtype=np.int16)
        wk[:, pos] = w
        w = wk
        k_in = w.shape[-1]
    elif op == "matmul":
        w = w.reshape(int(shape[1]), int(shape[2]))
        k_in = w.shape[-1]
    lg = layer_gemm(cfg, op, shape, qa, qw, out_bits, out_signed, relu, pool, a_signed=a_signed, y_pitch=y_pitch,
                    a_pitch=a_pitch, k_in=k_in)
    gemm, out = lg.gemm, lg.out
    wg = w.reshape(gemm.groups, gemm.M, lg.k_in)
    plan = plan or cc.choose_plan(cfg, gemm, out, lg.in_pitch)
    if a_base % cfg.wpb:
        raise cc.CompileError(f"a_base {a_base} is not a whole DRAM beat ({cfg.wpb} words)")
    a_words, w_words, p_words, y_words = cc.region_words(plan)
    al = max(cfg.wpb, 16)
    y_base = cc._align(a_base + a_words, al) if y_base is None else y_base
    w_base = cc._align(max(a_base + a_words, y_base + y_words), al) if w_base is None else w_base
    if w_base % cfg.wpb:
        raise cc.CompileError(f"w_base {w_base} is not a whole DRAM beat")
    p_base = cc._align(w_base + w_words, al)
    lay = cc.Layout(a_base, w_base, y_base, a_words, w_words, y_words, p_base, p_words)
    if lay.end * 4 > cfg.dram_mib << 20 or (y_base + y_words) * 4 >= 1 << 32:
        raise cc.CompileError(f"the layer needs {lay.end * 4 / 2**20:.1f} MiB of DRAM; the model has "
                              f"{cfg.dram_mib} MiB (outputs must lie below 4 GiB)")
    wfull = np.zeros((gemm.groups, gemm.M, gemm.K), dtype=np.int16)
    wfull[:, :, :lg.k_in] = wg
    return LayerProgram(op, tuple(int(v) for v in shape), plan, lay, cc.program(plan, lay), cc.pack_w(plan, wfull),
                        cc.pack_p(plan, bias, mult, shift), lg.in_pitch, plan.np_, plan.n_tiles * plan.rows_out,
                        lg.out_rows, out.pitch, out.block, gemm.M, out_bits, out.out_signed, pool, a_signed,
                        {"out_hw": lg.out_hw})


def reference_output(op: str, shape, x, weights, bias, mult, shift, relu: bool, out_bits: int,
                     out_signed: bool = True, pool: PoolSpec | tuple | None = None) -> np.ndarray:
    """The layer through ``kernels.reference`` (int32 GEMM, ``requant``, ``maxpool`` / ``avgpool``).

    Unsigned b-bit outputs are the signed (b+1)-bit requantisation after ReLU (identical:
    clamp(y, 0, 2^b - 1)); out_bits = 0 is acc + bias."""
    if isinstance(pool, tuple):
        pool = PoolSpec(*pool)
    if op == "matmul":
        acc = reference.matmul(np.asarray(x), np.asarray(weights))
    else:
        N, C, H, W, K, KS, S, P, G = conv_fields(shape)
        acc = reference.conv2d(np.asarray(x), np.asarray(weights), S, P, G)
    nch = acc.shape[1]
    b = np.broadcast_to(np.asarray(bias, dtype=np.int64), (nch,))
    if out_bits == 0:
        return acc.astype(np.int64) + b.reshape([1, nch] + [1] * (acc.ndim - 2))
    if out_signed or out_bits == 1:
        y = reference.requant(acc, b, mult, shift, relu, out_bits).astype(np.int64)
    else:
        y = reference.requant(acc, b, mult, shift, True, out_bits + 1).astype(np.int64) % 256
    if pool is not None:
        f = reference.maxpool if pool.kind == "max" else reference.avgpool
        y = f(y, pool.ks, pool.stride).astype(np.int64)
        if not out_signed:
            y %= 256
    return y


def run_isa(cfg: cc.ArrayConfig, layer: LayerProgram, a_img: np.ndarray, dram_words: int | None = None) -> np.ndarray:
    """Run a compiled layer on the ISA interpreter; returns the Y region (uint32 words)."""
    from . import isa_sim

    lay = layer.layout
    dram = np.zeros(max(dram_words or 0, lay.end + 64, lay.a_base + a_img.size + 64), dtype=np.uint32)
    dram[lay.a_base:lay.a_base + a_img.size] = a_img
    dram[lay.w_base:lay.w_base + layer.w_img.size] = layer.w_img
    dram[lay.p_base:lay.p_base + layer.p_img.size] = layer.p_img
    isa_sim.run(cfg, layer.program, dram)
    return dram[lay.y_base:lay.y_base + lay.y_words].copy()



def load_rtl(client, layer: LayerProgram) -> None:
    """Write the layer's weights and output-unit parameters into the testbench's DRAM."""
    client.write(layer.layout.w_base, layer.w_img.astype("<u4").tobytes())
    client.write(layer.layout.p_base, layer.p_img.astype("<u4").tobytes())


def run_rtl(client, cfg: cc.ArrayConfig, layer: LayerProgram, a_img: np.ndarray | None = None, repeats: int = 1,
            timeout: float | None = None, max_cycles: int | None = None):
    """Run a loaded layer on the RTL testbench (``link.BFClient``), writing its input first when
    given; returns the link's ``RunResult`` (cycles per repeat, the Y region's bytes, counters)."""
    from .model import predict

    lay = layer.layout
    if a_img is not None:
        client.write(lay.a_base, np.asarray(a_img, dtype="<u4").tobytes())
    limit = max_cycles or 8 * predict(layer.plan).cycles + 200_000
    return client.run(layer.program, lay.y_base, lay.y_words, cfg.dram_latency, repeats, max_cycles=limit,
                      timeout=timeout)
