"""NumPy bit-exact reference of the kernel library (DESIGN.md section 3).

Integer semantics are exactly those of ``kernels/include/mico_kernels.h``:
codes and packing, matmul / conv2d (int32 results), pooling, requantisation,
the xorshift32 input generator of ``RUN_KERNEL`` and the output checksum.
Values are plain integer arrays in logical layout (matmul A (N, K), W (M, K);
conv2d X (N, C, H, W), W (K, C/G, KS, KS)).  Quantisation from float lives in
``mpq/``, not here.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from .numeric import BITS, SPEC_BITS, check_bits, value_range  # noqa: F401  (value_range: part of this module's API)

XORSHIFT_ZERO_STATE = 0x9E3779B9   # replaces the state 0 before the first step
_MASK32 = 0xFFFFFFFF
# The most memory one reference computation may take.  A device tensor packed
# at 1 bit grows 64-fold as float64 here, so a shape the device accepts can
# still be far too large to check on the host: refused, not swapped to death.
MAX_REFERENCE_BYTES = 2 << 30


class ReferenceTooLarge(ValueError):
    """The reference computation would allocate more than MAX_REFERENCE_BYTES."""


def _check_alloc(nbytes: int, what: str) -> None:
    if nbytes > MAX_REFERENCE_BYTES:
        raise ReferenceTooLarge(f"the NumPy reference of {what} would need about {nbytes / 2**30:.1f} GiB, "
                                f"more than the {MAX_REFERENCE_BYTES / 2**30:.0f} GiB it may allocate.")


def _check_bits(b: int) -> int:
    return check_bits("bit-width", b, BITS)


def words_per_row(L: int, b: int) -> int:
    """``mico_words``: 32-bit words holding L codes of b bits."""
    per = 32 // _check_bits(b)
    return (int(L) + per - 1) // per


# ---- codes and packing --------------------------------------------------------

def values_from_codes(codes: np.ndarray, b: int) -> np.ndarray:
    """b-bit codes (unsigned) -> int8 values (b=1: 2c-1, else two's complement)."""
    check_bits("bit-width", b, SPEC_BITS)
    c = np.asarray(codes).astype(np.int32) & ((1 << b) - 1)
    if b == 1:
        return (2 * c - 1).astype(np.int8)
    half = 1 << (b - 1)
    return ((c ^ half) - half).astype(np.int8)


def codes_from_values(vals: np.ndarray, b: int) -> np.ndarray:
    """int values -> b-bit codes as uint32 (b=1: v >= 0 -> 1, else low b bits).

    Values must already be in range for b bits (as for ``mico_pack``)."""
    _check_bits(b)
    v = np.asarray(vals).astype(np.int64)
    if b == 1:
        return (v >= 0).astype(np.uint32)
    return (v & ((1 << b) - 1)).astype(np.uint32)


def pack(vals: np.ndarray, b: int) -> np.ndarray:
    """Pack values along the last axis (one row per leading index) into uint32
    words, ``words_per_row(L, b)`` per row, pad bits zero (``mico_pack``)."""
    _check_bits(b)
    codes = codes_from_values(vals, b)
    L = codes.shape[-1]
    per = 32 // b
    nw = words_per_row(L, b)
    lead = codes.shape[:-1]
    padded = np.zeros(lead + (nw * per,), dtype=np.uint32)
    padded[..., :L] = codes
    shifts = (np.arange(per, dtype=np.uint32) * b).astype(np.uint32)
    parts = padded.reshape(lead + (nw, per)) << shifts
    return np.bitwise_or.reduce(parts, axis=-1).astype(np.uint32)


def unpack(words: np.ndarray, L: int, b: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first L codes of each packed row as int8."""
    _check_bits(b)
    w = np.asarray(words, dtype=np.uint32)
    per = 32 // b
    shifts = (np.arange(per, dtype=np.uint32) * b).astype(np.uint32)
    codes = (w[..., :, None] >> shifts) & np.uint32((1 << b) - 1)
    codes = codes.reshape(w.shape[:-1] + (w.shape[-1] * per,))[..., :L]
    return values_from_codes(codes, b)


# ---- xorshift32 ---------------------------------------------------------------

def _xs_step(x: int) -> int:
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    x ^= (x << 5) & _MASK32
    return x


def xorshift32_sequential(state: int, n: int) -> tuple[np.ndarray, int]:
    """The first n outputs (new states) of xorshift32 from ``state``, one step
    at a time exactly like ``mico_xorshift32``; returns (outputs, new state)."""
    x = int(state) & _MASK32
    if x == 0:
        x = XORSHIFT_ZERO_STATE
    out = np.empty(int(n), dtype=np.uint32)
    for i in range(int(n)):
        x = _xs_step(x)
        out[i] = x
    return out, x


def _apply(cols: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the GF(2) 32x32 matrix given by its columns (cols[j] = M e_j) to
    every uint32 of x, through four 256-entry byte tables."""
    tabs = _byte_tables(cols)
    x = np.asarray(x, dtype=np.uint32)
    return (tabs[0][x & 0xFF] ^ tabs[1][(x >> 8) & 0xFF]
            ^ tabs[2][(x >> 16) & 0xFF] ^ tabs[3][x >> 24])


def _byte_tables(cols: np.ndarray) -> list[np.ndarray]:
    v = np.arange(256, dtype=np.uint32)
    tabs = []
    for k in range(4):
        t = np.zeros(256, dtype=np.uint32)
        for i in range(8):
            t ^= np.where((v >> i) & 1, cols[8 * k + i], 0).astype(np.uint32)
        tabs.append(t)
    return tabs


@lru_cache(maxsize=None)
def _jump_cols(log2_steps: int) -> np.ndarray:
    """Columns of T^(2^log2_steps), T the (linear) xorshift32 step."""
    if log2_steps == 0:
        return np.array([_xs_step(1 << j) for j in range(32)], dtype=np.uint32)
    half = _jump_cols(log2_steps - 1)
    return _apply(half, half)   # columns of half∘half


_SEQ_BLOCK_LOG2 = 6   # first 64 outputs sequentially, then doubling jumps


def xorshift32_stream(state: int, n: int) -> tuple[np.ndarray, int]:
    """Vectorised :func:`xorshift32_sequential` (identical output).

    xorshift32 is linear over GF(2): out[i + 2^j] = T^(2^j) out[i], so once
    the first 2^j outputs are known the next 2^j follow from one matrix
    application (byte tables), doubling the filled prefix each round."""
    n = int(n)
    block = 1 << _SEQ_BLOCK_LOG2
    first, last = xorshift32_sequential(state, min(n, block))
    if n <= block:
        return first, (last if n else (int(state) & _MASK32 or XORSHIFT_ZERO_STATE))
    out = np.empty(n, dtype=np.uint32)
    out[:block] = first
    filled, lg = block, _SEQ_BLOCK_LOG2
    while filled < n:
        m = min(filled, n - filled)
        out[filled:filled + m] = _apply(_jump_cols(lg), out[:m])
        filled += m
        lg += 1
    return out, int(out[-1])


def random_codes(state: int, n: int, b: int) -> tuple[np.ndarray, int]:
    """n codes of b bits (top bits of each new state), and the new state."""
    _check_bits(b)
    s, new = xorshift32_stream(state, n)
    return s >> np.uint32(32 - b), new


def fill_random(state: int, rows: int, L: int, b: int) -> tuple[np.ndarray, int]:
    """``mico_fill_random``: (packed (rows, words) uint32, new state)."""
    codes, new = random_codes(state, rows * L, b)
    vals = values_from_codes(codes, b).reshape(rows, L)
    return pack(vals, b), new


# ---- shapes ---------------------------------------------------------------------

def conv_out_hw(H: int, W: int, KS: int, S: int, P: int) -> tuple[int, int]:
    return (H + 2 * P - KS) // S + 1, (W + 2 * P - KS) // S + 1


def _conv_fields(shape: Sequence[int]) -> tuple[int, ...]:
    if len(shape) != 9:
        raise ValueError(f"conv2d shape must be (N,C,H,W,K,KS,S,P,G), got {tuple(shape)}")
    N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
    if min(N, C, H, W, K, KS, S, G) < 1 or P < 0 or C % G or K % G \
            or H + 2 * P < KS or W + 2 * P < KS:
        raise ValueError(f"impossible conv2d shape {tuple(shape)}")
    return N, C, H, W, K, KS, S, P, G


def reference_bytes(op: str, shape: Sequence[int]) -> int:
    """Peak bytes of ``expected_output(op, shape, ...)``, from the shape alone
    (an upper estimate: every array that is alive at the same time)."""
    if op == "matmul":
        N, M, K = (int(v) for v in shape)
        ins, outs, work = N * K + M * K, N * M, 8 * (N * K + M * K)
    elif op == "conv2d":
        N, C, H, W, K, KS, S, P, G = _conv_fields(shape)
        OH, OW = conv_out_hw(H, W, KS, S, P)
        ins, outs = N * C * H * W + K * (C // G) * KS * KS, N * K * OH * OW
        # padded float64 input, one strided window copy, weights as float64
        work = 8 * (N * C * (H + 2 * P) * (W + 2 * P) + N * C * OH * OW + K * (C // G) * KS * KS)
    else:
        raise ValueError(f"unknown op {op!r}")
    # the xorshift stream (uint32) and int8 values; float64 sums, a transposed copy, int64 and int32 results
    return 5 * ins + work + 28 * outs


def check_budget(op: str, shape: Sequence[int]) -> None:
    """Raise ReferenceTooLarge (one sentence) if checking this shape would
    allocate more than MAX_REFERENCE_BYTES; allocates nothing itself."""
    _check_alloc(reference_bytes(op, shape), f"{op} {','.join(map(str, shape))}")


def random_inputs(op: str, shape: Sequence[int], qa: int, qw: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs a ``RUN_KERNEL`` generates on the device from ``seed``, as int8
    values in logical layout: matmul (N,M,K) -> A (N,K), W (M,K);
    conv2d (N,C,H,W,K,KS,S,P,G) -> X (N,C,H,W), W (K,C/G,KS,KS).
    Activations are drawn first, then weights, from one continuing state.
    Any width a kernel family runs (``SPEC_BITS``) is drawn: an accelerator
    with odd widths checks its outputs against this reference too."""
    check_bits("qa", qa, SPEC_BITS)
    check_bits("qw", qw, SPEC_BITS)
    check_budget(op, shape)
    if op == "matmul":
        N, M, K = (int(v) for v in shape)
        na, nw = N * K, M * K
        a_shape, w_shape = (N, K), (M, K)
    elif op == "conv2d":
        N, C, H, W, K, KS, S, P, G = _conv_fields(shape)
        na, nw = N * C * H * W, K * (C // G) * KS * KS
        a_shape, w_shape = (N, C, H, W), (K, C // G, KS, KS)
    else:
        raise ValueError(f"unknown op {op!r}")
    s, _ = xorshift32_stream(seed, na + nw)
    a = values_from_codes(s[:na] >> np.uint32(32 - qa), qa).reshape(a_shape)
    w = values_from_codes(s[na:] >> np.uint32(32 - qw), qw).reshape(w_shape)
    return a, w


# ---- kernels --------------------------------------------------------------------

def _to_int32(y: np.ndarray) -> np.ndarray:
    # float64 sums of integers below 2^53 are exact; wrap like int32
    return np.rint(y).astype(np.int64).astype(np.int32)


def matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Y[n, m] = sum_k a[n, k] * w[m, k] as int32; a (N, K), w (M, K)."""
    a = np.asarray(a)
    w = np.asarray(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1]:
        raise ValueError(f"matmul needs (N,K) and (M,K), got {a.shape} and {w.shape}")
    return _to_int32(a.astype(np.float64) @ w.astype(np.float64).T)


def conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: int = 0,
           groups: int = 1) -> np.ndarray:
    """int32 NCHW conv2d, zero padding (value 0), groups; w (K, C/G, KS, KS)."""
    x = np.asarray(x)
    w = np.asarray(w)
    N, C, H, W = x.shape
    K, Cg, KS, KS2 = w.shape
    S, P, G = int(stride), int(padding), int(groups)
    if KS != KS2 or C != Cg * G or K % G or S < 1 or P < 0:
        raise ValueError(f"bad conv2d operands x {x.shape}, w {w.shape}, groups {G}")
    OH, OW = conv_out_hw(H, W, KS, S, P)
    if OH < 1 or OW < 1:
        raise ValueError("conv2d kernel does not fit the padded input")
    Kg = K // G
    Hp, Wp = H + 2 * P, W + 2 * P
    _check_alloc(8 * (N * C * Hp * Wp + 2 * N * K * OH * OW), f"conv2d of {x.shape} with padding {P}")
    xp = np.zeros((N, C, Hp, Wp), dtype=np.float64)
    xp[:, :, P:P + H, P:P + W] = x
    xg = xp.reshape(N, G, Cg, Hp, Wp)
    wg = w.astype(np.float64).reshape(G, Kg, Cg, KS, KS)
    npix = N * OH * OW
    y = np.zeros((G, Kg, npix), dtype=np.float64)
    for kh in range(KS):
        for kw in range(KS):
            xs = xg[:, :, :, kh:kh + S * (OH - 1) + 1:S, kw:kw + S * (OW - 1) + 1:S]
            xs = xs.transpose(1, 2, 0, 3, 4).reshape(G, Cg, npix)
            wk = wg[:, :, :, kh, kw]
            if Cg == 1:
                y += wk * xs          # (G,Kg,1) * (G,1,npix): depthwise-style
            else:
                y += wk @ xs          # (G,Kg,Cg) @ (G,Cg,npix)
    y = y.reshape(G, Kg, N, OH, OW).transpose(2, 0, 1, 3, 4).reshape(N, K, OH, OW)
    return _to_int32(y)


def _windows(x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[2] < ks or x.shape[3] < ks or ks < 1 or stride < 1:
        raise ValueError(f"pooling needs NCHW with H, W >= KS, got {x.shape}, KS {ks}")
    v = np.lib.stride_tricks.sliding_window_view(x, (ks, ks), axis=(2, 3))
    return v[:, :, ::stride, ::stride]


def maxpool(x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    """Max pool of int8 NCHW values, square window, no padding."""
    return _windows(x, ks, stride).max(axis=(-2, -1)).astype(np.int8)


def avgpool(x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    """Average pool rounding half up: floor((2*sum + cnt) / (2*cnt))."""
    s = _windows(np.asarray(x).astype(np.int64), ks, stride).sum(axis=(-2, -1))
    cnt = ks * ks
    return np.floor_divide(2 * s + cnt, 2 * cnt).astype(np.int8)


def requant(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
            relu: bool, out_bits: int, channel_axis: int = 1) -> np.ndarray:
    """``mico_requant`` with per-channel bias/mult/shift along ``channel_axis``
    (1 for NCHW conv output and for (N, M) matmul output)."""
    acc = np.asarray(acc).astype(np.int64)
    ax = channel_axis % acc.ndim
    bshape = [1] * acc.ndim
    bshape[ax] = acc.shape[ax]

    def per_channel(v: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(v).astype(np.int64), (acc.shape[ax],)).reshape(bshape)

    v = acc + per_channel(bias)
    if out_bits == 1:
        return np.where(v >= 0, 1, -1).astype(np.int8)
    t = v * per_channel(mult)
    s = per_channel(shift)
    y = (t >> s) + ((t >> (s - 1)) & 1)
    if relu:
        y = np.maximum(y, 0)
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return np.clip(y, lo, hi).astype(np.int8)


# ---- RUN_KERNEL check -------------------------------------------------------------

def checksum(y: np.ndarray) -> int:
    """CRC-32 of the int32 output tensor, little-endian, C order."""
    return zlib.crc32(np.ascontiguousarray(np.asarray(y).astype("<i4")).tobytes())


def expected_output(op: str, shape: Sequence[int], qa: int, qw: int, seed: int) -> np.ndarray:
    """The int32 output tensor a ``RUN_KERNEL`` computes from ``seed``."""
    a, w = random_inputs(op, shape, qa, qw, seed)
    if op == "matmul":
        return matmul(a, w)
    N, C, H, W, K, KS, S, P, G = _conv_fields(shape)
    return conv2d(a, w, S, P, G)


def expected_checksum(op: str, shape: Sequence[int], qa: int, qw: int, seed: int) -> int:
    """The checksum a correct ``RUN_KERNEL(op, shape, qa, qw, seed)`` reports."""
    return checksum(expected_output(op, shape, qa, qw, seed))
