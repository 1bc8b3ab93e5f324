"""The C kernel library built for the host, called through ctypes.

``load()`` compiles ``kernels/src/*.c`` with the host gcc into the build cache
(kind ``libkernels``) and loads it once per process.  The wrappers take and
return NumPy arrays; value-level wrappers (``matmul``, ``conv2d``) pack their
int operands with the C packer first, ``*_packed`` variants take packed words.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from kernels import toolchain
from kernels.numeric import BITS

CFLAGS = ("-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Wextra", "-Werror")
LIB_NAME = "libmico_kernels.so"

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_artifact: toolchain.Artifact | None = None

_u32p = ctypes.POINTER(ctypes.c_uint32)
_i32p = ctypes.POINTER(ctypes.c_int32)
_i8p = ctypes.POINTER(ctypes.c_int8)
_u8p = ctypes.POINTER(ctypes.c_uint8)


class _ConvShape(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("N", "C", "H", "W", "K", "KS", "S", "P", "G")]


def build() -> toolchain.Artifact:
    """Compile the kernel library (cached by sources, header, flags, compiler)."""
    cc = toolchain.find_tool("gcc", "install gcc (apt-get install gcc)")
    srcs = toolchain.kernel_sources()
    if not srcs:
        raise toolchain.ToolError(f"no kernel sources in {toolchain.SRC_DIR}")
    header = toolchain.INCLUDE_DIR / "mico_kernels.h"
    flags = list(CFLAGS) + ["-I", str(toolchain.INCLUDE_DIR)]

    def _build(out: Path) -> None:
        toolchain.run_tool([cc, *flags, *map(str, srcs), "-o", str(out / LIB_NAME)], timeout=300)

    return toolchain.build_cached("libkernels", [*srcs, header],
                                  [*CFLAGS, toolchain.tool_identity(cc)], LIB_NAME, _build)


def load() -> ctypes.CDLL:
    """Build (if needed) and load the library; one handle per process."""
    global _lib, _artifact
    with _lock:
        if _lib is None:
            art = build()
            lib = ctypes.CDLL(str(art.path))
            _declare(lib)
            _lib, _artifact = lib, art
        return _lib


def artifact() -> toolchain.Artifact:
    load()
    assert _artifact is not None
    return _artifact


def _declare(lib: ctypes.CDLL) -> None:
    u32, c_int = ctypes.c_uint32, ctypes.c_int
    sig = {
        "mico_bits_ok": (c_int, [c_int]),
        "mico_popcount32": (u32, [u32]),
        "mico_pack": (None, [_i8p, u32, c_int, _u32p]),
        "mico_unpack": (None, [_u32p, u32, c_int, _i8p]),
        "mico_matmul_scratch": (u32, [u32]),
        "mico_act_prep_bytes": (u32, [u32, c_int, c_int]),
        "mico_matmul": (None, [_u32p, _u32p, _i32p, u32, u32, u32, c_int, c_int, ctypes.c_void_p]),
        "mico_conv_check": (c_int, [ctypes.POINTER(_ConvShape)]),
        "mico_conv_out_h": (u32, [ctypes.POINTER(_ConvShape)]),
        "mico_conv_out_w": (u32, [ctypes.POINTER(_ConvShape)]),
        "mico_conv_scratch": (u32, [ctypes.POINTER(_ConvShape)]),
        "mico_conv2d": (None, [_u32p, _u32p, _i32p, ctypes.POINTER(_ConvShape), c_int, c_int,
                               ctypes.c_void_p]),
        "mico_maxpool": (None, [_i8p, _i8p, u32, u32, u32, u32, u32, u32]),
        "mico_avgpool": (None, [_i8p, _i8p, u32, u32, u32, u32, u32, u32]),
        "mico_requant": (None, [_i32p, _i8p, u32, u32, u32, _i32p, _i32p, _u8p, c_int, c_int]),
        "mico_xorshift32": (u32, [_u32p]),
        "mico_fill_random": (None, [_u32p, _u32p, u32, u32, c_int]),
        "mico_crc32": (u32, [u32, ctypes.c_void_p, ctypes.c_size_t]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def _ptr(a: np.ndarray, ptype):
    return a.ctypes.data_as(ptype)


def _bits(b: int) -> int:
    if b not in BITS:
        raise ValueError(f"bit-width {b!r} is not one of {BITS}")
    return int(b)


def _words(L: int, b: int) -> int:
    per = 32 // b
    return (L + per - 1) // per


def _scratch(nbytes: int) -> np.ndarray:
    # uint32 storage: 4-byte aligned as the kernels require
    return np.zeros(max(1, (int(nbytes) + 3) // 4), dtype=np.uint32)


# ---- packing ------------------------------------------------------------------

def pack(vals: np.ndarray, b: int) -> np.ndarray:
    """Pack int values along the last axis (``mico_pack`` per row) -> uint32
    array of shape vals.shape[:-1] + (words,)."""
    lib = load()
    b = _bits(b)
    v = np.ascontiguousarray(np.asarray(vals).astype(np.int8))
    L = v.shape[-1]
    rows = v.reshape(-1, L)
    nw = _words(L, b)
    out = np.zeros((rows.shape[0], nw), dtype=np.uint32)
    for r in range(rows.shape[0]):
        lib.mico_pack(_ptr(rows[r], _i8p), L, b, _ptr(out[r], _u32p))
    return out.reshape(v.shape[:-1] + (nw,))


def unpack(words: np.ndarray, L: int, b: int) -> np.ndarray:
    """``mico_unpack`` per row: the first L codes of each packed row as int8."""
    lib = load()
    b = _bits(b)
    w = np.ascontiguousarray(np.asarray(words, dtype=np.uint32))
    if w.shape[-1] < _words(L, b):
        raise ValueError(f"{w.shape[-1]} words cannot hold {L} codes of {b} bits")
    rows = w.reshape(-1, w.shape[-1])
    out = np.zeros((rows.shape[0], L), dtype=np.int8)
    for r in range(rows.shape[0]):
        lib.mico_unpack(_ptr(rows[r], _u32p), L, b, _ptr(out[r], _i8p))
    return out.reshape(w.shape[:-1] + (L,))


def popcount32(x: int) -> int:
    return int(load().mico_popcount32(int(x) & 0xFFFFFFFF))


# ---- matmul / conv2d ------------------------------------------------------------

def matmul_packed(A: np.ndarray, W: np.ndarray, N: int, M: int, K: int,
                  qa: int, qw: int) -> np.ndarray:
    """``mico_matmul`` on packed rows: A (N, words(K,qa)), W (M, words(K,qw))."""
    lib = load()
    qa, qw = _bits(qa), _bits(qw)
    A = np.ascontiguousarray(A, dtype=np.uint32)
    W = np.ascontiguousarray(W, dtype=np.uint32)
    if A.size != N * _words(K, qa) or W.size != M * _words(K, qw):
        raise ValueError("packed operand sizes do not match (N, M, K, qa, qw)")
    Y = np.zeros((N, M), dtype=np.int32)
    scratch = _scratch(lib.mico_matmul_scratch(K))
    lib.mico_matmul(_ptr(A, _u32p), _ptr(W, _u32p), _ptr(Y, _i32p), N, M, K, qa, qw,
                    scratch.ctypes.data)
    return Y


def matmul(a: np.ndarray, w: np.ndarray, qa: int, qw: int) -> np.ndarray:
    """C matmul of int values a (N, K) at qa bits and w (M, K) at qw bits."""
    a = np.asarray(a)
    w = np.asarray(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1]:
        raise ValueError(f"matmul needs (N,K) and (M,K), got {a.shape} and {w.shape}")
    (N, K), M = a.shape, w.shape[0]
    return matmul_packed(pack(a, qa), pack(w, qw), N, M, K, qa, qw)


def _conv_struct(shape: Sequence[int]) -> _ConvShape:
    if len(shape) != 9:
        raise ValueError(f"conv2d shape must be (N,C,H,W,K,KS,S,P,G), got {tuple(shape)}")
    if min(int(v) for v in shape) < 0:
        raise ValueError(f"impossible conv2d shape {tuple(shape)}")
    return _ConvShape(*(int(v) for v in shape))


def conv_check(shape: Sequence[int]) -> bool:
    """True if ``mico_conv_check`` accepts the shape (N,C,H,W,K,KS,S,P,G)."""
    s = _conv_struct(shape)
    return load().mico_conv_check(ctypes.byref(s)) == 0


def conv2d_packed(X: np.ndarray, Wt: np.ndarray, shape: Sequence[int],
                  qa: int, qw: int) -> np.ndarray:
    """``mico_conv2d`` on packed planes X (N*C, words(H*W,qa)) and weight rows
    Wt (K, words(C/G*KS*KS, qw)); shape (N,C,H,W,K,KS,S,P,G) -> int32 NCHW."""
    lib = load()
    qa, qw = _bits(qa), _bits(qw)
    s = _conv_struct(shape)
    if lib.mico_conv_check(ctypes.byref(s)) != 0:
        raise ValueError(f"impossible conv2d shape {tuple(shape)}")
    X = np.ascontiguousarray(X, dtype=np.uint32)
    Wt = np.ascontiguousarray(Wt, dtype=np.uint32)
    red = s.C // s.G * s.KS * s.KS
    if X.size != s.N * s.C * _words(s.H * s.W, qa) or Wt.size != s.K * _words(red, qw):
        raise ValueError("packed operand sizes do not match the conv2d shape")
    OH, OW = lib.mico_conv_out_h(ctypes.byref(s)), lib.mico_conv_out_w(ctypes.byref(s))
    Y = np.zeros((s.N, s.K, OH, OW), dtype=np.int32)
    scratch = _scratch(lib.mico_conv_scratch(ctypes.byref(s)))
    lib.mico_conv2d(_ptr(X, _u32p), _ptr(Wt, _u32p), _ptr(Y, _i32p), ctypes.byref(s),
                    qa, qw, scratch.ctypes.data)
    return Y


def conv2d(x: np.ndarray, w: np.ndarray, qa: int, qw: int, stride: int = 1,
           padding: int = 0, groups: int = 1) -> np.ndarray:
    """C conv2d of int values x (N,C,H,W) at qa bits, w (K,C/G,KS,KS) at qw bits."""
    x = np.asarray(x)
    w = np.asarray(w)
    N, C, H, W = x.shape
    K, Cg, KS, _ = w.shape
    if Cg * groups != C:
        raise ValueError(f"weights {w.shape} do not match C={C} with groups={groups}")
    shape = (N, C, H, W, K, KS, stride, padding, groups)
    return conv2d_packed(pack(x.reshape(N * C, H * W), qa), pack(w.reshape(K, -1), qw),
                         shape, qa, qw)


# ---- pooling and requant ----------------------------------------------------------

def _pool(fn_name: str, x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    lib = load()
    x = np.ascontiguousarray(np.asarray(x).astype(np.int8))
    N, C, H, W = x.shape
    if ks < 1 or stride < 1 or H < ks or W < ks:
        raise ValueError(f"pooling needs H, W >= KS >= 1 and stride >= 1, got {x.shape}, {ks}, {stride}")
    OH, OW = (H - ks) // stride + 1, (W - ks) // stride + 1
    Y = np.zeros((N, C, OH, OW), dtype=np.int8)
    getattr(lib, fn_name)(_ptr(x, _i8p), _ptr(Y, _i8p), N, C, H, W, ks, stride)
    return Y


def maxpool(x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    return _pool("mico_maxpool", x, ks, stride)


def avgpool(x: np.ndarray, ks: int, stride: int) -> np.ndarray:
    return _pool("mico_avgpool", x, ks, stride)


def requant(acc: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
            relu: bool, out_bits: int, channel_axis: int = 1) -> np.ndarray:
    """``mico_requant`` with per-channel parameters along ``channel_axis``."""
    lib = load()
    acc = np.ascontiguousarray(np.asarray(acc).astype(np.int32))
    ax = channel_axis % acc.ndim
    channels = acc.shape[ax]
    inner = int(np.prod(acc.shape[ax + 1:], dtype=np.int64))
    bias = np.ascontiguousarray(np.broadcast_to(np.asarray(bias, dtype=np.int32), (channels,)))
    mult = np.ascontiguousarray(np.broadcast_to(np.asarray(mult, dtype=np.int32), (channels,)))
    shift = np.ascontiguousarray(np.broadcast_to(np.asarray(shift), (channels,)).astype(np.uint8))
    if out_bits < 1 or out_bits > 8:
        raise ValueError(f"out_bits {out_bits} is not in 1..8")
    if out_bits > 1 and (shift.min(initial=1) < 1 or shift.max(initial=1) > 62):
        raise ValueError("requant shifts must be in 1..62")
    out = np.zeros(acc.shape, dtype=np.int8)
    lib.mico_requant(_ptr(acc, _i32p), _ptr(out, _i8p), acc.size, channels, max(inner, 1),
                     _ptr(bias, _i32p), _ptr(mult, _i32p), _ptr(shift, _u8p),
                     1 if relu else 0, int(out_bits))
    return out


# ---- data generation and checksums -------------------------------------------------

def xorshift32(state: int) -> tuple[int, int]:
    """One ``mico_xorshift32`` step: (output, new state) — they are equal."""
    st = ctypes.c_uint32(int(state) & 0xFFFFFFFF)
    v = load().mico_xorshift32(ctypes.byref(st))
    return int(v), int(st.value)


def fill_random(state: int, rows: int, L: int, b: int) -> tuple[np.ndarray, int]:
    """``mico_fill_random``: (packed (rows, words) uint32, new state)."""
    lib = load()
    b = _bits(b)
    st = ctypes.c_uint32(int(state) & 0xFFFFFFFF)
    out = np.zeros((rows, _words(L, b)), dtype=np.uint32)
    lib.mico_fill_random(ctypes.byref(st), _ptr(out, _u32p), rows, L, b)
    return out, int(st.value)


def crc32(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """``mico_crc32`` (equal to zlib.crc32(data, crc))."""
    lib = load()
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    else:
        buf = np.frombuffer(bytes(data), dtype=np.uint8)
    return int(lib.mico_crc32(int(crc) & 0xFFFFFFFF, buf.ctypes.data if buf.size else None, buf.size))


def run_kernel(op: str, shape: Sequence[int], qa: int, qw: int, seed: int) -> np.ndarray:
    """What the firmware's RUN_KERNEL computes, in-process: inputs drawn with
    ``mico_fill_random`` from ``seed`` (activations then weights), one kernel run."""
    qa, qw = _bits(qa), _bits(qw)
    state = int(seed) & 0xFFFFFFFF
    if op == "matmul":
        N, M, K = (int(v) for v in shape)
        A, state = fill_random(state, N, K, qa)
        W, state = fill_random(state, M, K, qw)
        return matmul_packed(A, W, N, M, K, qa, qw)
    if op == "conv2d":
        N, C, H, W, K, KS, S, P, G = (int(v) for v in shape)
        if not conv_check(shape):
            raise ValueError(f"impossible conv2d shape {tuple(shape)}")
        X, state = fill_random(state, N * C, H * W, qa)
        Wt, state = fill_random(state, K, C // G * KS * KS, qw)
        return conv2d_packed(X, Wt, shape, qa, qw)
    raise ValueError(f"unknown op {op!r}")


def checksum(y: np.ndarray) -> int:
    """C CRC-32 of an int32 output tensor (little-endian bytes)."""
    return crc32(np.ascontiguousarray(np.asarray(y).astype("<i4")))
