"""The C kernel library (kernels/src, built for the host through
kernels/native.py) against the NumPy reference, element by element."""

from __future__ import annotations

import ctypes
import itertools
import shutil
import subprocess
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kernels import native as C
from kernels import reference as R
from kernels import toolchain

BITS = (1, 2, 4, 8)
PAIRS = list(itertools.product(BITS, BITS))
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_PAIR = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def lib():
    return C.load()


def make_vals(seed: int, shape, b: int, mode: str = "random") -> np.ndarray:
    """Values for b bits: uniform, or all at the lowest / highest value
    (stresses sign handling and the int32 range of the sums)."""
    lo, hi = R.value_range(b)
    if mode == "min":
        return np.full(shape, lo, dtype=np.int8)
    if mode == "max":
        return np.full(shape, hi, dtype=np.int8)
    rng = np.random.default_rng(seed)
    if b == 1:
        return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


MODES = st.sampled_from(["random", "random", "random", "min", "max"])


# ---- build -------------------------------------------------------------------------

def test_sources_compile_freestanding_without_warnings(tmp_path):
    """Every source compiles alone, freestanding, with warnings as errors, and
    calls nothing outside the library but (at most) memset/memcpy."""
    for src in toolchain.kernel_sources():
        obj = tmp_path / (src.stem + ".o")
        res = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic",
                              "-ffreestanding", "-I", str(toolchain.INCLUDE_DIR), "-c", str(src),
                              "-o", str(obj)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        undef = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, timeout=60).stdout.split()
        foreign = [s for s in undef if s not in ("U",) and not s.startswith("mico_")
                   and s not in ("memset", "memcpy")]
        assert not foreign, f"{src.name} calls {foreign}"


RV32_FLAGS = ["-march=rv32im", "-mabi=ilp32", "-ffreestanding", "-nostdlib", "-std=c99", "-O2",
              "-Wall", "-Wextra", "-Werror"]


def test_sources_compile_for_rv32im(tmp_path):
    """The same sources build for the RISC-V firmware and need no libc (and,
    so far, not even libgcc helpers)."""
    cc = shutil.which("riscv64-unknown-elf-gcc")
    nm = shutil.which("riscv64-unknown-elf-nm")
    if not cc or not nm:
        pytest.skip("riscv64-unknown-elf-gcc not installed (apt-get install gcc-riscv64-unknown-elf)")
    for src in toolchain.kernel_sources():
        obj = tmp_path / (src.stem + ".o")
        res = subprocess.run([cc, *RV32_FLAGS, "-I", str(toolchain.INCLUDE_DIR), "-c", str(src), "-o", str(obj)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        undef = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, timeout=60).stdout.split()
        foreign = [s for s in undef if s != "U" and not s.startswith("mico_")
                   and s not in ("memset", "memcpy")]
        assert not foreign, f"{src.name} needs {foreign} on rv32im"


ASAN_DRIVER = r"""
#include <stdlib.h>
#include <stdio.h>
#include "mico_kernels.h"
/* exact-size heap buffers, so ASan sees any read one word past a row */
static void *xmalloc(size_t n) { void *p = malloc(n ? n : 1); if (!p) abort(); return p; }
int main(void) {
    static const uint32_t mm[][3] = {{1,1,1},{3,5,17},{2,3,33},{1,2,100},{4,3,15}};
    static const uint32_t cv[][9] = {{1,3,5,5,6,3,1,1,3},{2,4,6,7,4,3,2,2,2},{1,6,5,5,6,3,1,0,6},
                                     {1,5,4,4,4,1,1,0,1},{1,2,7,7,4,5,3,2,2},{1,10,6,6,6,3,1,0,2}};
    int bits[4] = {1, 2, 4, 8};
    uint32_t state = 7, crc = 0;
    for (int ia = 0; ia < 4; ia++) for (int iw = 0; iw < 4; iw++) {
        int qa = bits[ia], qw = bits[iw];
        for (unsigned t = 0; t < sizeof mm / sizeof mm[0]; t++) {
            uint32_t N = mm[t][0], M = mm[t][1], K = mm[t][2];
            uint32_t *A = xmalloc(4u * N * mico_words(K, qa)), *W = xmalloc(4u * M * mico_words(K, qw));
            int32_t *Y = xmalloc(4u * N * M);
            void *scr = xmalloc(mico_matmul_scratch(K));
            mico_fill_random(&state, A, N, K, qa);
            mico_fill_random(&state, W, M, K, qw);
            mico_matmul(A, W, Y, N, M, K, qa, qw, scr);
            crc = mico_crc32(crc, Y, 4u * N * M);
            free(A); free(W); free(Y); free(scr);
        }
        for (unsigned t = 0; t < sizeof cv / sizeof cv[0]; t++) {
            mico_conv_shape s = {cv[t][0], cv[t][1], cv[t][2], cv[t][3], cv[t][4], cv[t][5],
                                 cv[t][6], cv[t][7], cv[t][8]};
            if (mico_conv_check(&s)) return 2;
            uint32_t red = s.C / s.G * s.KS * s.KS, outs = s.N * s.K * mico_conv_out_h(&s) * mico_conv_out_w(&s);
            uint32_t *X = xmalloc(4u * s.N * s.C * mico_words(s.H * s.W, qa));
            uint32_t *Wt = xmalloc(4u * s.K * mico_words(red, qw));
            int32_t *Y = xmalloc(4u * outs);
            void *scr = xmalloc(mico_conv_scratch(&s));
            mico_fill_random(&state, X, s.N * s.C, s.H * s.W, qa);
            mico_fill_random(&state, Wt, s.K, red, qw);
            mico_conv2d(X, Wt, Y, &s, qa, qw, scr);
            crc = mico_crc32(crc, Y, 4u * outs);
            free(X); free(Wt); free(Y); free(scr);
        }
    }
    {
        int8_t x[2 * 3 * 5 * 4], y[64];
        int32_t acc[7] = {2147483647, -2147483647 - 1, 0, -1, 1, 5, -5}, b[7], m[7];
        uint8_t sh[7];
        int8_t o[7];
        for (unsigned i = 0; i < sizeof x; i++) x[i] = (int8_t)(i * 37u);
        mico_maxpool(x, y, 2, 3, 5, 4, 2, 2);
        mico_avgpool(x, y, 2, 3, 5, 4, 3, 1);
        for (int i = 0; i < 7; i++) { b[i] = i & 1 ? 2147483647 : -2147483647 - 1; m[i] = 2147483647; sh[i] = (uint8_t)(1 + 10 * i); }
        for (int ob = 1; ob <= 8; ob *= 2) mico_requant(acc, o, 7, 7, 1, b, m, sh, ob & 1, ob);
    }
    printf("%08x\n", (unsigned)crc);
    return 0;
}
"""


def test_kernels_clean_under_asan_ubsan(tmp_path):
    """No out-of-bounds access or undefined behaviour on any (qa, qw), with
    exact-size buffers (a read one word past a packed row is an error)."""
    drv = tmp_path / "drv.c"
    drv.write_text(ASAN_DRIVER)
    exe = tmp_path / "drv"
    res = subprocess.run(["gcc", "-std=c99", "-O1", "-g", "-fsanitize=address,undefined",
                          "-fno-sanitize-recover=all", "-I", str(toolchain.INCLUDE_DIR), str(drv),
                          *map(str, toolchain.kernel_sources()), "-o", str(exe)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and "asan" in res.stderr.lower():
        pytest.skip("gcc has no AddressSanitizer runtime here")
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120,
                         env={"ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.stdout.strip()) == 8


def test_library_is_cached():
    a = C.build()
    b = C.build()
    assert b.cached and a.path == b.path and a.digest == b.digest


# ---- packing -------------------------------------------------------------------------

@SETTINGS
@given(b=st.sampled_from(BITS), rows=st.integers(1, 3), L=st.integers(1, 140), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_match_reference_and_pad_bits_zero(b, rows, L, seed):
    v = make_vals(seed, (rows, L), b)
    words = C.pack(v, b)
    np.testing.assert_array_equal(words, R.pack(v, b))
    np.testing.assert_array_equal(C.unpack(words, L, b), v)
    per = 32 // b
    used = (L % per) * b
    if used:
        assert (words[:, -1] >> np.uint32(used) == 0).all(), "pad bits must be zero"


def test_pack_1bit_pad_bits_zero_with_all_minus_one_and_plus_one():
    assert C.pack(np.full(33, 1, dtype=np.int8), 1).tolist() == [0xFFFFFFFF, 1]
    assert C.pack(np.full(33, -1, dtype=np.int8), 1).tolist() == [0, 0]
    assert C.pack(np.full(5, -1, dtype=np.int8), 8).tolist() == [0xFFFFFFFF, 0xFF]
    # b=1 packs values >= 0 as +1 (code 1), like the 1-bit requant
    zero = np.array([0, -1, 1], dtype=np.int8)
    assert C.pack(zero, 1).tolist() == R.pack(zero, 1).tolist() == [0b101]


@SETTINGS
@given(x=st.integers(0, 2**32 - 1))
def test_popcount(x):
    assert C.popcount32(x) == bin(x).count("1")


# ---- matmul ----------------------------------------------------------------------------

@pytest.mark.parametrize("qa,qw", PAIRS)
@PER_PAIR
@given(N=st.integers(1, 7), M=st.integers(1, 9),
       K=st.one_of(st.sampled_from([1, 2, 15, 16, 17, 31, 32, 33, 64, 65]), st.integers(1, 300)),
       seed=st.integers(0, 2**32 - 1), mode_a=MODES, mode_w=MODES)
def test_matmul_matches_reference(qa, qw, N, M, K, seed, mode_a, mode_w):
    a = make_vals(seed, (N, K), qa, mode_a)
    w = make_vals(seed + 1, (M, K), qw, mode_w)
    y = C.matmul(a, w, qa, qw)
    assert y.dtype == np.int32 and y.shape == (N, M)
    np.testing.assert_array_equal(y, R.matmul(a, w))


@pytest.mark.parametrize("b", [1, 2])
def test_popcount_fast_paths_signs(b):
    """The 1- and 2-bit popcount paths on every product of two values, one
    product per row pair, K odd so the last word is partial."""
    vals = [-1, 1] if b == 1 else [-2, -1, 0, 1]
    for va, vw in itertools.product(vals, vals):
        for K in (1, 7, 16, 33, 77):
            a = np.full((1, K), va, dtype=np.int8)
            w = np.full((2, K), vw, dtype=np.int8)
            w[1, 0] = vals[0]
            y = C.matmul(a, w, b, b)
            assert y[0, 0] == va * vw * K, (va, vw, K)
            assert y[0, 1] == va * vw * (K - 1) + va * vals[0]


def test_matmul_packed_words_interface():
    a = make_vals(1, (3, 45), 4)
    w = make_vals(2, (5, 45), 2)
    y = C.matmul_packed(R.pack(a, 4), R.pack(w, 2), 3, 5, 45, 4, 2)
    np.testing.assert_array_equal(y, R.matmul(a, w))
    with pytest.raises(ValueError):
        C.matmul_packed(R.pack(a, 4), R.pack(w, 2), 3, 5, 50, 4, 2)
    with pytest.raises(ValueError):
        C.matmul(a, a, 3, 4)


# ---- conv2d -----------------------------------------------------------------------------

@st.composite
def conv_shapes(draw):
    G = draw(st.sampled_from([1, 1, 2, 3, "dw"]))
    if G == "dw":
        C_ = draw(st.integers(1, 6))
        G, Cg, Kg = C_, 1, 1
    else:
        Cg, Kg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
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
def test_conv2d_matches_reference(qa, qw, shape, seed, mode_a, mode_w):
    N, C_, H, W, K, KS, S, P, G = shape
    x = make_vals(seed, (N, C_, H, W), qa, mode_a)
    w = make_vals(seed + 1, (K, C_ // G, KS, KS), qw, mode_w)
    y = C.conv2d(x, w, qa, qw, S, P, G)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, R.conv2d(x, w, S, P, G))


@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("P", [0, 1])
def test_conv2d_popcount_path_with_and_without_padding(b, P):
    # several output channels per group (the packed fast path), patch length
    # 3*3*5 = 45 (not a multiple of 16 or 32); P=1 mixes padded border windows
    shape = (1, 10, 7, 6, 6, 3, 1, P, 2)
    x = make_vals(11, (1, 10, 7, 6), b)
    w = make_vals(12, (6, 5, 3, 3), b)
    np.testing.assert_array_equal(C.conv2d(x, w, b, b, 1, P, 2), R.conv2d(x, w, 1, P, 2))
    y = C.run_kernel("conv2d", shape, b, b, 3)
    np.testing.assert_array_equal(y, R.expected_output("conv2d", shape, b, b, 3))


STEM_SHAPES = [(1, 1, 6, 7, 5, 3, 1, 1, 1), (1, 1, 5, 5, 3, 4, 1, 2, 1), (2, 2, 5, 6, 4, 2, 2, 1, 2),
               (1, 4, 5, 5, 6, 2, 1, 0, 1), (1, 1, 4, 4, 40, 4, 1, 1, 1)]


@pytest.mark.parametrize("qa,qw", PAIRS)
@pytest.mark.parametrize("shape", STEM_SHAPES)
def test_conv2d_short_patches_at_the_extremes(qa, qw, shape):
    """Patches of <= 16 codes (the conv stem path: weights prepared once in
    lanes, a whole row summed in one multiply lane) with every combination
    of the most negative / most positive values, and padding."""
    N, C_, H, W, K, KS, S, P, G = shape
    for mode_a, mode_w in itertools.product(["min", "max", "random"], repeat=2):
        x = make_vals(7, (N, C_, H, W), qa, mode_a)
        w = make_vals(8, (K, C_ // G, KS, KS), qw, mode_w)
        np.testing.assert_array_equal(C.conv2d(x, w, qa, qw, S, P, G), R.conv2d(x, w, S, P, G),
                                      err_msg=f"{mode_a} {mode_w}")


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_matmul_lane_sums_at_the_extremes(qa, qw):
    """Rows long enough for many flushes of the lane sums, with the values
    that drive a lane furthest negative and positive (every pair, every
    K mod 32 class of the last, partial weight word)."""
    for K in (31, 32, 33, 95, 257, 1000):
        for mode_a, mode_w in itertools.product(["min", "max"], repeat=2):
            a = make_vals(1, (2, K), qa, mode_a)
            w = make_vals(2, (5, K), qw, mode_w)
            np.testing.assert_array_equal(C.matmul(a, w, qa, qw), R.matmul(a, w), err_msg=f"{K} {mode_a} {mode_w}")


def test_scratch_bounds_cover_every_pair_and_fit_the_codegen_budget():
    """mico_matmul_scratch(K) covers the prepared row of every pair, and both
    scratch sizes stay within 2*K + 64 bytes (what generated models reserve)."""
    lib = C.load()
    for K in list(range(1, 70)) + [255, 256, 257, 784, 1000, 1568]:
        need = max(lib.mico_act_prep_bytes(K, qa, qw) for qa, qw in PAIRS)
        assert need <= lib.mico_matmul_scratch(K) <= 2 * K + 64, K
    for shape in [(1, 1, 8, 8, 16, 3, 1, 1, 1), (1, 16, 14, 14, 32, 3, 1, 1, 1), (1, 7, 5, 5, 3, 5, 2, 2, 1)]:
        s = C._conv_struct(shape)
        L = shape[1] // shape[8] * shape[5] ** 2
        assert lib.mico_conv_scratch(ctypes.byref(s)) <= 2 * L + 64


def test_conv2d_one_bit_padding_is_zero_not_minus_one():
    x = np.ones((1, 1, 4, 4), dtype=np.int8)
    w = np.ones((1, 1, 3, 3), dtype=np.int8)
    y = C.conv2d(x, w, 1, 1, 1, 1, 1)
    assert y[0, 0, 0, 0] == 4 and y[0, 0, 1, 1] == 9 and y[0, 0, 0, 1] == 6


@SETTINGS
@given(shape=st.tuples(*[st.integers(0, 4)] * 9))
def test_conv_check(shape):
    N, C_, H, W, K, KS, S, P, G = shape
    ok = (min(N, C_, H, W, K, KS, S, G) >= 1 and C_ % G == 0 and K % G == 0
          and H + 2 * P >= KS and W + 2 * P >= KS)
    assert C.conv_check(shape) == ok


# ---- pooling and requant --------------------------------------------------------------------

@SETTINGS
@given(N=st.integers(1, 2), C_=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       ks=st.integers(1, 4), s=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["random", "random", "min", "max"]))
def test_pools_match_reference(N, C_, H, W, ks, s, seed, mode):
    if H < ks or W < ks:
        return
    x = make_vals(seed, (N, C_, H, W), 8, mode)
    np.testing.assert_array_equal(C.maxpool(x, ks, s), R.maxpool(x, ks, s))
    np.testing.assert_array_equal(C.avgpool(x, ks, s), R.avgpool(x, ks, s))


def test_avgpool_negative_half_rounds_up():
    x = np.array([0, 0, 0, -2, -1, -1, -1, -3, 0, 0, 0, -3], dtype=np.int8).reshape(3, 1, 2, 2)
    assert C.avgpool(x, 2, 2).reshape(-1).tolist() == [0, -1, -1]


@SETTINGS
@given(shape=st.sampled_from([(2, 3, 4, 5), (3, 7), (1, 1, 1, 1), (2, 4, 9)]),
       axis=st.sampled_from([0, 1, -1]), relu=st.booleans(), out_bits=st.sampled_from(BITS),
       big=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_requant_matches_reference(shape, axis, relu, out_bits, big, seed):
    rng = np.random.default_rng(seed)
    ch = shape[axis]
    lim = 2**31 if big else 3000
    acc = rng.integers(-lim, lim, size=shape).astype(np.int32)
    bias = rng.integers(-lim, lim, size=ch).astype(np.int32)
    mult = rng.integers(1, 2**31 if big else 2**12, size=ch).astype(np.int32)
    shift = rng.integers(1, 63 if big else 16, size=ch).astype(np.uint8)
    y = C.requant(acc, bias, mult, shift, relu, out_bits, channel_axis=axis)
    np.testing.assert_array_equal(y, R.requant(acc, bias, mult, shift, relu, out_bits, channel_axis=axis))
    if out_bits > 1 and not big and relu:
        assert (y >= 0).all()


def test_requant_extremes():
    acc = np.array([2**31 - 1, -2**31, 0, -1, 1], dtype=np.int32).reshape(1, 5)
    for shift in (1, 31, 62):
        for bias in (2**31 - 1, -2**31):
            args = (acc, [bias] * 5, [2**31 - 1] * 5, [shift] * 5)
            for relu, ob in itertools.product([False, True], BITS):
                np.testing.assert_array_equal(C.requant(*args, relu, ob), R.requant(*args, relu, ob))


# ---- data generation and checksums -------------------------------------------------------------

@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_xorshift_step(seed):
    v, new = C.xorshift32(seed)
    ref, st_ = R.xorshift32_sequential(seed, 1)
    assert v == new == int(ref[0]) == st_


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 4), L=st.integers(1, 100),
       b=st.sampled_from(BITS), b2=st.sampled_from(BITS))
def test_fill_random_matches_reference(seed, rows, L, b, b2):
    w1, s1 = C.fill_random(seed, rows, L, b)
    w2, s2 = C.fill_random(s1, 2, L + 3, b2)          # the state continues
    r1, t1 = R.fill_random(seed, rows, L, b)
    r2, t2 = R.fill_random(t1, 2, L + 3, b2)
    np.testing.assert_array_equal(w1, r1)
    np.testing.assert_array_equal(w2, r2)
    assert s1 == t1 and s2 == t2
    if rows:
        used = (L % (32 // b)) * b
        if used:
            assert (w1[:, -1] >> np.uint32(used) == 0).all()


@SETTINGS
@given(data=st.binary(max_size=300), crc=st.integers(0, 2**32 - 1))
def test_crc32_matches_zlib(data, crc):
    assert C.crc32(data) == zlib.crc32(data)
    assert C.crc32(data, crc) == zlib.crc32(data, crc)


def test_crc32_known_value():
    assert C.crc32(b"123456789") == 0xCBF43926


@pytest.mark.parametrize("qa,qw", PAIRS)
def test_run_kernel_checksums_match_reference(qa, qw):
    for op, shape in [("matmul", (3, 5, 77)), ("matmul", (1, 1, 1)),
                      ("conv2d", (2, 3, 9, 8, 6, 3, 2, 1, 3)), ("conv2d", (1, 4, 5, 5, 4, 3, 1, 1, 4))]:
        seed = 1000 * qa + qw
        y = C.run_kernel(op, shape, qa, qw, seed)
        np.testing.assert_array_equal(y, R.expected_output(op, shape, qa, qw, seed))
        assert C.checksum(y) == R.expected_checksum(op, shape, qa, qw, seed)
