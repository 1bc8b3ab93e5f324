"""The SIMD kernels of kernels/src/simd.c (mico_matmul_simd / mico_conv2d_simd
on the mico_simd_cfu instruction), built for the host with -DMICO_CFU
-DMICO_CFU_EMULATE, against the NumPy reference element by element; the C
emulation of the instruction against rtl_sims/cfu/model.py (which the cocotb
tests check against the Verilog); and the rv32 build of simd.c: warning-free,
freestanding, with the inner loops in the intended shape."""

from __future__ import annotations

import collections
import ctypes
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kernels import reference as R
from kernels import toolchain
from rtl_sims.cfu import model as CFU

BITS = (1, 2, 4, 8)
PAIRS = list(itertools.product(BITS, BITS))
PER_PAIR = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CFLAGS = ("-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Wextra", "-Werror",
          "-DMICO_CFU", "-DMICO_CFU_EMULATE")
LIB_NAME = "libmico_kernels_cfu_emu.so"
HEADERS = [toolchain.INCLUDE_DIR / "mico_kernels.h", toolchain.INCLUDE_DIR / "mico_cfu.h"]

_u32p = ctypes.POINTER(ctypes.c_uint32)
_i32p = ctypes.POINTER(ctypes.c_int32)


class _ConvShape(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("N", "C", "H", "W", "K", "KS", "S", "P", "G")]


def build() -> toolchain.Artifact:
    cc = toolchain.find_tool("gcc", "install gcc (apt-get install gcc)")
    srcs = toolchain.kernel_sources()
    flags = [*CFLAGS, "-I", str(toolchain.INCLUDE_DIR)]

    def _build(out: Path) -> None:
        toolchain.run_tool([cc, *flags, *map(str, srcs), "-o", str(out / LIB_NAME)], timeout=300)

    return toolchain.build_cached("libkernels-cfu-emu", [*srcs, *HEADERS],
                                  [*CFLAGS, toolchain.tool_identity(cc)], LIB_NAME, _build)


@pytest.fixture(scope="module")
def lib():
    lib = ctypes.CDLL(str(build().path))
    u32, c_int = ctypes.c_uint32, ctypes.c_int
    sp = ctypes.POINTER(_ConvShape)
    for name, res, args in [
        ("mico_cfu_emulate", ctypes.c_int32, [u32, u32, u32]),
        ("mico_matmul_scratch", u32, [u32]),
        ("mico_matmul_simd", None, [_u32p, _u32p, _i32p, u32, u32, u32, c_int, c_int, ctypes.c_void_p]),
        ("mico_matmul", None, [_u32p, _u32p, _i32p, u32, u32, u32, c_int, c_int, ctypes.c_void_p]),
        ("mico_conv_out_h", u32, [sp]),
        ("mico_conv_out_w", u32, [sp]),
        ("mico_conv_scratch", u32, [sp]),
        ("mico_conv2d_simd", None, [_u32p, _u32p, _i32p, sp, c_int, c_int, ctypes.c_void_p]),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def make_vals(rng: np.random.Generator, shape, b: int, mode: str = "random") -> np.ndarray:
    lo, hi = R.value_range(b)
    if mode == "min":
        return np.full(shape, lo, dtype=np.int8)
    if mode == "max":
        return np.full(shape, hi, dtype=np.int8)
    if mode == "zero":
        return np.zeros(shape, dtype=np.int8)   # b = 1 packs 0 as +1, like the reference
    if b == 1:
        return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def as_packed(v: np.ndarray, b: int) -> np.ndarray:
    """The values a packed tensor holds (1-bit packing maps 0 to +1)."""
    return R.values_from_codes(R.codes_from_values(v, b), b)


MODES = st.sampled_from(["random", "random", "random", "min", "max", "zero"])


def matmul_simd(lib, a: np.ndarray, w: np.ndarray, qa: int, qw: int) -> np.ndarray:
    (N, K), M = a.shape, w.shape[0]
    A = np.ascontiguousarray(R.pack(a, qa))
    W = np.ascontiguousarray(R.pack(w, qw))
    Y = np.full((N, M), 0x5A5A5A5A, dtype=np.int32)       # every output must be written
    scratch = np.zeros(max(1, (lib.mico_matmul_scratch(K) + 3) // 4), dtype=np.uint32)
    lib.mico_matmul_simd(A.ctypes.data_as(_u32p), W.ctypes.data_as(_u32p), Y.ctypes.data_as(_i32p),
                         N, M, K, qa, qw, scratch.ctypes.data)
    return Y


def conv2d_simd(lib, x, w, qa, qw, S, P, G) -> np.ndarray:
    N, C, H, W_ = x.shape
    K, _, KS, _ = w.shape
    s = _ConvShape(N, C, H, W_, K, KS, S, P, G)
    OH, OW = lib.mico_conv_out_h(ctypes.byref(s)), lib.mico_conv_out_w(ctypes.byref(s))
    X = np.ascontiguousarray(R.pack(x.reshape(N * C, H * W_), qa))
    Wt = np.ascontiguousarray(R.pack(w.reshape(K, -1), qw))
    Y = np.full((N, K, OH, OW), 0x5A5A5A5A, dtype=np.int32)
    scratch = np.zeros(max(1, (lib.mico_conv_scratch(ctypes.byref(s)) + 3) // 4), dtype=np.uint32)
    lib.mico_conv2d_simd(X.ctypes.data_as(_u32p), Wt.ctypes.data_as(_u32p), Y.ctypes.data_as(_i32p),
                         ctypes.byref(s), qa, qw, scratch.ctypes.data)
    return Y


# ---- the instruction: C emulation == Python model ----------------------------------------

def _edge_words(b: int) -> list[int]:
    per = 32 // b

    def rep(*codes):
        return sum((codes[i % len(codes)] & ((1 << b) - 1)) << (i * b) for i in range(per))

    lo, hi = (0, 1) if b == 1 else (1 << (b - 1), (1 << (b - 1)) - 1)
    return [0, 0xFFFFFFFF, rep(lo), rep(hi), rep(lo, hi), rep(hi, lo), 0x55555555, 0xAAAAAAAA]


def test_cfu_emulation_matches_model_every_function_id(lib):
    rng = np.random.default_rng(5)
    for fid in range(1024):
        f7 = fid >> 3
        qa, qw = BITS[(f7 >> 2) & 3], BITS[f7 & 3]
        pairs = [(a, w) for a in _edge_words(qa)[:4] for w in _edge_words(qw)[:4]]
        pairs += [tuple(int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64)) for _ in range(6)]
        for a, w in pairs:
            assert lib.mico_cfu_emulate(fid, a, w) == CFU.cfu(fid, a, w), (fid, hex(a), hex(w))


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_cfu_emulation_matches_model_random(lib, qa, qw):
    rng = np.random.default_rng(qa * 16 + qw)
    words = rng.integers(0, 2**32, size=(400, 2), dtype=np.uint64)
    for seg in range(CFU.segments(qa, qw)):
        fid = CFU.encode_function_id(qa, qw, seg)
        for a, w in itertools.chain(words, itertools.product(_edge_words(qa), _edge_words(qw))):
            a, w = int(a), int(w)
            assert lib.mico_cfu_emulate(fid, a, w) == CFU.cfu(fid, a, w), (qa, qw, seg, hex(a), hex(w))


def test_model_semantics_known_values():
    # 8x8: 1*1 + 2*1 + 3*1 + 4*1
    assert CFU.cfu(CFU.encode_function_id(8, 8), 0x04030201, 0x01010101) == 10
    # 1x1: 32 lanes of (+1)(+1), of (-1)(+1)
    assert CFU.cfu(CFU.encode_function_id(1, 1), 0xFFFFFFFF, 0xFFFFFFFF) == 32
    assert CFU.cfu(CFU.encode_function_id(1, 1), 0, 0xFFFFFFFF) == -32
    # 8x8 extremes: 4 * (-128)^2
    assert CFU.cfu(CFU.encode_function_id(8, 8), 0x80808080, 0x80808080) == 65536
    # qa=1 (narrow), qw=8: segment 1 uses activation bits 4..7 against 4 weights
    a = 0b1010 << 4
    assert CFU.cfu(CFU.encode_function_id(1, 8, 1), a, 0x04030201) == -1 + 2 - 3 + 4
    # qa=8, qw=2 (narrow weight): segment 3 uses weight bits 24..31 (4 codes)
    w = 0b01_11_10_01 << 24          # values 1, -2, -1, 1
    assert CFU.cfu(CFU.encode_function_id(8, 2, 3), 0x01FF0203, w) == 3 * 1 + 2 * -2 + -1 * -1 + 1 * 1
    # segment >= R, reserved funct7 bits
    assert CFU.cfu(CFU.encode_function_id(4, 4, 1), 0x11111111, 0x11111111) == 0
    assert CFU.cfu((0x10 | CFU.funct7(8, 8)) << 3, 0x01010101, 0x01010101) == 0
    # .insn r 0x0B, 0, 15, a0, a1, a2
    assert CFU.encode_instruction(8, 8, 0, 10, 11, 12) == (15 << 25) | (12 << 20) | (11 << 15) | (10 << 7) | 0x0B
    insn = CFU.encode_instruction(2, 4, 1, 10, 11, 12)
    assert insn & 0x7F == 0x0B and (insn >> 12) & 7 == 1 and insn >> 25 == CFU.funct7(2, 4) == 6


# ---- kernels == reference ---------------------------------------------------------------------

@pytest.mark.parametrize("qa,qw", PAIRS)
@PER_PAIR
@given(N=st.integers(1, 4), M=st.integers(1, 6),
       K=st.one_of(st.sampled_from([1, 3, 4, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 257]),
                   st.integers(1, 300)),
       seed=st.integers(0, 2**32 - 1), mode_a=MODES, mode_w=MODES)
def test_matmul_simd_matches_reference(lib, qa, qw, N, M, K, seed, mode_a, mode_w):
    rng = np.random.default_rng(seed)
    a = make_vals(rng, (N, K), qa, mode_a)
    w = make_vals(rng, (M, K), qw, mode_w)
    np.testing.assert_array_equal(matmul_simd(lib, a, w, qa, qw),
                                  R.matmul(as_packed(a, qa), as_packed(w, qw)))


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_matmul_simd_every_tail_length(lib, qa, qw):
    """K over two whole blocks of every pair plus each possible tail."""
    rng = np.random.default_rng(qa * 10 + qw)
    step = 32 // max(qa, qw)                      # codes per wide word
    for K in range(1, 2 * 8 * step + 2 * step + 2):
        a = make_vals(rng, (2, K), qa)
        w = make_vals(rng, (3, K), qw)
        np.testing.assert_array_equal(matmul_simd(lib, a, w, qa, qw), R.matmul(a, w), err_msg=f"K={K}")


@st.composite
def conv_shapes(draw):
    G = draw(st.sampled_from([1, 1, 2, 3, "dw"]))
    if G == "dw":
        C_ = draw(st.integers(1, 6))
        G, Cg, Kg = C_, 1, 1
    else:
        Cg, Kg = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    KS = draw(st.integers(1, 5))
    P = draw(st.integers(0, 2))
    S = draw(st.integers(1, 3))
    H = draw(st.integers(max(1, KS - 2 * P), 9))
    W = draw(st.integers(max(1, KS - 2 * P), 9))
    N = draw(st.integers(1, 2))
    return (N, Cg * G, H, W, Kg * G, KS, S, P, G)


@pytest.mark.parametrize("qa,qw", PAIRS)
@PER_PAIR
@given(shape=conv_shapes(), seed=st.integers(0, 2**32 - 1), mode_a=MODES, mode_w=MODES)
def test_conv2d_simd_matches_reference(lib, qa, qw, shape, seed, mode_a, mode_w):
    N, C_, H, W, K, KS, S, P, G = shape
    rng = np.random.default_rng(seed)
    x = as_packed(make_vals(rng, (N, C_, H, W), qa, mode_a), qa)
    w = as_packed(make_vals(rng, (K, C_ // G, KS, KS), qw, mode_w), qw)
    np.testing.assert_array_equal(conv2d_simd(lib, x, w, qa, qw, S, P, G), R.conv2d(x, w, S, P, G))


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_conv2d_simd_fixed_shapes(lib, qa, qw):
    """Long patches (several blocks + tail), padding on every side, 1-bit
    padding = value 0, depthwise, stride > kernel, window rows wider than
    32 bits (5 and 9 columns), windows entirely in the padding (P > KS)."""
    rng = np.random.default_rng(100 + qa * 10 + qw)
    for shape in [(1, 10, 7, 6, 6, 3, 1, 1, 2), (1, 37, 5, 5, 3, 3, 1, 2, 1), (2, 6, 8, 7, 6, 3, 2, 1, 6),
                  (1, 3, 4, 4, 2, 5, 1, 2, 1), (1, 4, 9, 9, 4, 2, 3, 0, 2), (1, 64, 3, 3, 2, 3, 1, 1, 1),
                  (1, 2, 7, 7, 3, 5, 1, 0, 1), (1, 2, 11, 10, 2, 9, 1, 0, 2), (1, 3, 6, 40, 2, 1, 1, 3, 1)]:
        N, C_, H, W, K, KS, S, P, G = shape
        x = make_vals(rng, (N, C_, H, W), qa)
        w = make_vals(rng, (K, C_ // G, KS, KS), qw)
        np.testing.assert_array_equal(conv2d_simd(lib, x, w, qa, qw, S, P, G), R.conv2d(x, w, S, P, G),
                                      err_msg=str(shape))
    ones = np.ones((1, 1, 4, 4), dtype=np.int8)
    y = conv2d_simd(lib, ones, np.ones((1, 1, 3, 3), dtype=np.int8), qa, qw, 1, 1, 1)
    assert y[0, 0, 0, 0] == 4 and y[0, 0, 1, 1] == 9 and y[0, 0, 0, 1] == 6


# ---- exact-size buffers under ASan/UBSan, SIMD == scalar -----------------------------------------

ASAN_DRIVER = r"""
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "mico_kernels.h"
static void *xmalloc(size_t n) { void *p = malloc(n ? n : 1); if (!p) abort(); return p; }
int main(void) {
    static const uint32_t mm[][3] = {{1,1,1},{3,5,17},{2,3,33},{1,2,100},{4,3,15},{2,2,257},{1,3,1024}};
    static const uint32_t cv[][9] = {{1,3,5,5,6,3,1,1,3},{2,4,6,7,4,3,2,2,2},{1,6,5,5,6,3,1,0,6},
                                     {1,5,4,4,4,1,1,0,1},{1,2,7,7,4,5,3,2,2},{1,40,6,6,6,3,1,1,2}};
    int bits[4] = {1, 2, 4, 8}, bad = 0;
    uint32_t state = 7;
    for (int ia = 0; ia < 4; ia++) for (int iw = 0; iw < 4; iw++) {
        int qa = bits[ia], qw = bits[iw];
        for (unsigned t = 0; t < sizeof mm / sizeof mm[0]; t++) {
            uint32_t N = mm[t][0], M = mm[t][1], K = mm[t][2];
            uint32_t *A = xmalloc(4u * N * mico_words(K, qa)), *W = xmalloc(4u * M * mico_words(K, qw));
            int32_t *Y = xmalloc(4u * N * M), *Z = xmalloc(4u * N * M);
            void *scr = xmalloc(mico_matmul_scratch(K));
            mico_fill_random(&state, A, N, K, qa);
            mico_fill_random(&state, W, M, K, qw);
            mico_matmul(A, W, Y, N, M, K, qa, qw, scr);
            mico_matmul_simd(A, W, Z, N, M, K, qa, qw, NULL);
            if (memcmp(Y, Z, 4u * N * M)) { printf("matmul %d %d %u\n", qa, qw, t); bad = 1; }
            free(A); free(W); free(Y); free(Z); free(scr);
        }
        for (unsigned t = 0; t < sizeof cv / sizeof cv[0]; t++) {
            mico_conv_shape s = {cv[t][0], cv[t][1], cv[t][2], cv[t][3], cv[t][4], cv[t][5],
                                 cv[t][6], cv[t][7], cv[t][8]};
            uint32_t red = s.C / s.G * s.KS * s.KS, outs = s.N * s.K * mico_conv_out_h(&s) * mico_conv_out_w(&s);
            uint32_t need = 4u * (mico_words(red, qa) > 2u * mico_words(red, 1) ? mico_words(red, qa)
                                                                              : (qa == 1 ? 2u * mico_words(red, 1) : mico_words(red, qa)));
            uint32_t *X = xmalloc(4u * s.N * s.C * mico_words(s.H * s.W, qa));
            uint32_t *Wt = xmalloc(4u * s.K * mico_words(red, qw));
            int32_t *Y = xmalloc(4u * outs), *Z = xmalloc(4u * outs);
            void *scr = xmalloc(mico_conv_scratch(&s)), *scr2 = xmalloc(need);
            if (need > mico_conv_scratch(&s)) { printf("scratch bound\n"); bad = 1; }
            mico_fill_random(&state, X, s.N * s.C, s.H * s.W, qa);
            mico_fill_random(&state, Wt, s.K, red, qw);
            mico_conv2d(X, Wt, Y, &s, qa, qw, scr);
            mico_conv2d_simd(X, Wt, Z, &s, qa, qw, scr2);
            if (memcmp(Y, Z, 4u * outs)) { printf("conv %d %d %u\n", qa, qw, t); bad = 1; }
            free(X); free(Wt); free(Y); free(Z); free(scr); free(scr2);
        }
    }
    printf(bad ? "MISMATCH\n" : "ok\n");
    return bad;
}
"""


def test_simd_kernels_clean_under_asan_ubsan(tmp_path):
    """Exact-size heap buffers (a read one word past a packed row is an
    error), the documented scratch size, results equal to the scalar kernels."""
    drv = tmp_path / "drv.c"
    drv.write_text(ASAN_DRIVER)
    exe = tmp_path / "drv"
    res = subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=all", "-DMICO_CFU", "-DMICO_CFU_EMULATE",
                          "-I", str(toolchain.INCLUDE_DIR), str(drv),
                          *map(str, toolchain.kernel_sources()), "-o", str(exe)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "asan" in res.stderr.lower():
        pytest.skip("gcc has no AddressSanitizer runtime here")
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout + run.stderr[-3000:]


# ---- rv32 build -------------------------------------------------------------------------------------

RV32 = ["-march=rv32im", "-mabi=ilp32", "-ffreestanding", "-nostdlib", "-std=c99", "-O2",
        "-Wall", "-Wextra", "-Werror", "-DMICO_CFU"]


def _rv32_cc():
    cc = shutil.which("riscv64-unknown-elf-gcc")
    if not cc:
        pytest.skip("riscv64-unknown-elf-gcc not installed (apt-get install gcc-riscv64-unknown-elf)")
    return cc


def test_simd_compiles_for_rv32im_and_needs_nothing_else(tmp_path):
    cc = _rv32_cc()
    obj = tmp_path / "simd.o"
    src = toolchain.SRC_DIR / "simd.c"
    res = subprocess.run([cc, *RV32, "-pedantic", "-I", str(toolchain.INCLUDE_DIR), "-c", str(src), "-o", str(obj)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stderr, res.stderr
    nm = shutil.which("riscv64-unknown-elf-nm")
    if nm:
        undef = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, timeout=60).stdout.split()
        assert all(s == "U" or s.startswith("mico_") for s in undef), undef


def inner_loops(asm: str, longest: bool = False) -> dict[tuple[int, int], list[str]]:
    """The shortest (one weight row) or longest (four rows) backward-branch
    loop holding CFU ops and no other loop, of each per-pair row function in
    gcc's assembly."""
    loops = {}
    for qa, qw in PAIRS:
        f = f"rows_{qa}_{qw}"
        m = re.search(rf"^{f}:\n(.*?)\.size\t{f}", asm, re.S | re.M)
        assert m, f
        body = [ln.strip() for ln in m.group(1).splitlines()
                if ln.strip() and not ln.strip().startswith(("#", ".loc", ".cfi"))]
        labels = {ln[:-1]: i for i, ln in enumerate(body) if ln.endswith(":")}
        best = None
        for i, ln in enumerate(body):
            mm = re.match(r"b\w+\s.*,(\.L\d+)$", ln)
            if mm and labels.get(mm.group(1), i) < i:
                inner = body[labels[mm.group(1)] + 1:i + 1]
                if any(x.endswith(":") and labels.get(x[:-1], -1) != -1 and
                       any(re.match(rf"b\w+\s.*,{re.escape(x[:-1])}$", y) for y in inner) for x in inner):
                    continue   # holds another loop
                blk = [x for x in inner if not x.endswith(":")]
                if any(x.startswith(".insn") for x in blk) and (
                        best is None or (len(blk) > len(best) if longest else len(blk) < len(best))):
                    best = blk
        assert best, f
        loops[(qa, qw)] = best
    return loops


def _check_cfu_spacing(qa, qw, loop):
    """No CFU op within two instructions after a load, store or branch
    (VexRiscv holds a CFU op while one of them is in memory / write-back)."""
    ops = [x.split()[0] for x in loop]
    for i, o in enumerate(ops):
        if o == ".insn":
            assert not any(p in ("lw", "sw") or p.startswith("b") for p in ops[max(0, i - 2):i]), (qa, qw, loop)
    f7 = CFU.funct7(qa, qw)
    assert all(f", {f7}," in x for x in loop if x.startswith(".insn"))


def _rv32_simd_asm(tmp_path) -> str:
    cc = _rv32_cc()
    out = tmp_path / "simd.s"
    res = subprocess.run([cc, *RV32, "-I", str(toolchain.INCLUDE_DIR), "-S", str(toolchain.SRC_DIR / "simd.c"),
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return out.read_text()


def test_rv32_inner_loops_are_tight(tmp_path):
    """One weight row, per block of U = 8 wide words: the loads (2 per word
    for qa == qw, 1 + R per R words otherwise; activation words first), two
    pointer increments, 8 CFU ops, 8 adds, one branch; CFU ops spaced from
    loads."""
    for (qa, qw), loop in inner_loops(_rv32_simd_asm(tmp_path)).items():
        ops = [x.split()[0] for x in loop]
        c = collections.Counter(ops)
        R_ = max(qa, qw) // min(qa, qw)
        U = 8
        loads = 2 * U if R_ == 1 else U + U // R_
        assert c[".insn"] == U and c["lw"] == loads, (qa, qw, loop)
        assert len(loop) == loads + 2 * U + 3, (qa, qw, loop)
        last_load = max(i for i, o in enumerate(ops) if o == "lw")
        first_cfu = ops.index(".insn")
        assert first_cfu - last_load >= 3 and last_load < first_cfu, (qa, qw, loop)
        _check_cfu_spacing(qa, qw, loop)
        segs = sorted(int(x.split()[3].rstrip(",")) for x in loop if x.startswith(".insn"))
        assert segs == sorted(j % R_ for j in range(U))


def test_rv32_four_row_loops_are_tight(tmp_path):
    """Four weight rows, per block of U = 8 wide words: the activation words
    once (U, or U/R when they are the narrow operand) before the weight words
    (4 per wide word, or 4 per R wide words when narrow), 32 CFU ops, 32
    adds, five pointer increments, one branch: nothing else but at most two
    register copies, no spill, and no CFU op within two instructions after a
    load."""
    for (qa, qw), loop in inner_loops(_rv32_simd_asm(tmp_path), longest=True).items():
        ops = [x.split()[0] for x in loop]
        c = collections.Counter(ops)
        R_ = max(qa, qw) // min(qa, qw)
        U = 8
        sa = U if qa >= qw else U // R_
        sw = U if qw >= qa else U // R_
        assert c[".insn"] == 4 * U and c["lw"] == sa + 4 * sw, (qa, qw, loop)
        assert c["add"] == 4 * U and c["addi"] == 5 and c["mv"] <= 2, (qa, qw, loop)
        assert len(loop) == sa + 4 * sw + 8 * U + 6 + c["mv"], (qa, qw, loop)
        assert not any("sp)" in x for x in loop), (qa, qw, loop)
        assert all(o == "lw" for o in ops[:sa]), (qa, qw, loop)
        _check_cfu_spacing(qa, qw, loop)
        segs = sorted(int(x.split()[3].rstrip(",")) for x in loop if x.startswith(".insn"))
        assert segs == sorted(j % R_ for j in range(U) for _ in range(4))
