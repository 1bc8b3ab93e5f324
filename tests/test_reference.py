"""The NumPy reference (kernels/reference.py) against independent oracles:
hand-computed bit patterns, naive Python loops, zlib and torch."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kernels import reference as R

BITS = (1, 2, 4, 8)
SETTINGS = settings(max_examples=40, deadline=None)


def rand_vals(rng: np.random.Generator, shape, b: int) -> np.ndarray:
    if b == 1:
        return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    lo, hi = R.value_range(b)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


# ---- codes and packing --------------------------------------------------------

def test_codes_known_values():
    assert R.values_from_codes(np.array([0, 1]), 1).tolist() == [-1, 1]
    assert R.values_from_codes(np.array([0, 1, 2, 3]), 2).tolist() == [0, 1, -2, -1]
    assert R.values_from_codes(np.array([7, 8, 15]), 4).tolist() == [7, -8, -1]
    assert R.values_from_codes(np.array([127, 128, 255]), 8).tolist() == [127, -128, -1]
    assert R.codes_from_values(np.array([-1, 1]), 1).tolist() == [0, 1]
    assert R.codes_from_values(np.array([-2, -1, 0, 1]), 2).tolist() == [2, 3, 0, 1]


def test_pack_known_words():
    # element i at bits [(i % (32/b)) * b, +b), little-endian inside the word
    assert R.pack(np.array([1, -1, 1]), 1).tolist() == [0b101]
    assert R.pack(np.array([1, -1, 0, -2]), 2).tolist() == [1 | 3 << 2 | 0 << 4 | 2 << 6]
    assert R.pack(np.array([-8, 7]), 4).tolist() == [0x78]
    assert R.pack(np.array([-1, 2, 0, 0, 5]), 8).tolist() == [0x2FF, 5]
    assert R.pack(np.ones(33, dtype=np.int8), 1).tolist() == [0xFFFFFFFF, 1]
    assert R.pack(np.full(17, -1, dtype=np.int8), 2).tolist() == [0xFFFFFFFF, 3]
    assert R.words_per_row(33, 1) == 2 and R.words_per_row(32, 1) == 1 and R.words_per_row(5, 8) == 2


@SETTINGS
@given(b=st.sampled_from(BITS), rows=st.integers(1, 4), L=st.integers(1, 150), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_roundtrip_and_pad_bits(b, rows, L, seed):
    rng = np.random.default_rng(seed)
    v = rand_vals(rng, (rows, L), b)
    words = R.pack(v, b)
    assert words.dtype == np.uint32 and words.shape == (rows, R.words_per_row(L, b))
    np.testing.assert_array_equal(R.unpack(words, L, b), v)
    # naive bit placement and zero pad bits
    per = 32 // b
    for r in range(rows):
        expect = [0] * words.shape[1]
        for i in range(L):
            code = (1 if v[r, i] >= 0 else 0) if b == 1 else int(v[r, i]) & ((1 << b) - 1)
            expect[i // per] |= code << ((i % per) * b)
        assert words[r].tolist() == expect


# ---- xorshift32 ----------------------------------------------------------------

def test_xorshift_known_values():
    out, st1 = R.xorshift32_sequential(1, 2)
    # 1 -> 0x2001 -> 0x2001 -> 0x42021
    assert out[0] == 0x42021 == 270369
    x = 270369
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    assert out[1] == x and st1 == x
    # state 0 is replaced by 0x9E3779B9 before the first step
    z, _ = R.xorshift32_sequential(0, 3)
    g, _ = R.xorshift32_sequential(0x9E3779B9, 3)
    np.testing.assert_array_equal(z, g)
    assert z[0] != 0


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 3000))
def test_xorshift_stream_equals_sequential(seed, n):
    a, sa = R.xorshift32_sequential(seed, n)
    b, sb = R.xorshift32_stream(seed, n)
    np.testing.assert_array_equal(a, b)
    assert sa == sb


def test_xorshift_stream_long_and_continuing():
    n = 70_000   # several doubling rounds
    a, sa = R.xorshift32_sequential(12345, n)
    b, sb = R.xorshift32_stream(12345, n)
    np.testing.assert_array_equal(a, b)
    # a stream continued from the returned state equals one long stream
    c, _ = R.xorshift32_stream(sb, 100)
    d, _ = R.xorshift32_sequential(12345, n + 100)
    np.testing.assert_array_equal(c, d[n:])


def test_random_inputs_order_and_codes():
    seed = 77
    a, w = R.random_inputs("matmul", (3, 5, 7), 4, 2, seed)
    s, _ = R.xorshift32_sequential(seed, 3 * 7 + 5 * 7)
    np.testing.assert_array_equal(a, R.values_from_codes(s[:21] >> 28, 4).reshape(3, 7))
    np.testing.assert_array_equal(w, R.values_from_codes(s[21:] >> 30, 2).reshape(5, 7))
    x, k = R.random_inputs("conv2d", (2, 4, 5, 6, 6, 3, 1, 1, 2), 1, 8, seed)
    assert x.shape == (2, 4, 5, 6) and k.shape == (6, 2, 3, 3)
    s, _ = R.xorshift32_sequential(seed, x.size + k.size)
    np.testing.assert_array_equal(x.reshape(-1), np.where(s[:x.size] >> 31, 1, -1))
    np.testing.assert_array_equal(k.reshape(-1), (s[x.size:] >> 24).astype(np.uint8).view(np.int8))
    with pytest.raises(ValueError):
        R.random_inputs("conv2d", (1, 3, 4, 4, 4, 3, 1, 0, 2), 8, 8, 1)   # G does not divide C
    with pytest.raises(ValueError):
        R.random_inputs("matmul", (1, 1, 1), 9, 8, 1)   # no family runs 9 bits (3: BitFusion does)


# ---- matmul / conv2d ---------------------------------------------------------------

def naive_matmul(a, w):
    N, K = a.shape
    M = w.shape[0]
    y = np.zeros((N, M), dtype=np.int64)
    for n, m in itertools.product(range(N), range(M)):
        y[n, m] = sum(int(a[n, k]) * int(w[m, k]) for k in range(K))
    return y


@SETTINGS
@given(N=st.integers(1, 5), M=st.integers(1, 5), K=st.integers(1, 40),
       qa=st.sampled_from(BITS), qw=st.sampled_from(BITS), seed=st.integers(0, 2**32 - 1))
def test_matmul_naive(N, M, K, qa, qw, seed):
    rng = np.random.default_rng(seed)
    a, w = rand_vals(rng, (N, K), qa), rand_vals(rng, (M, K), qw)
    y = R.matmul(a, w)
    assert y.dtype == np.int32 and y.shape == (N, M)
    np.testing.assert_array_equal(y, naive_matmul(a, w))


def test_matmul_extremes_exact():
    K = 4099
    a = np.full((2, K), -128, dtype=np.int8)
    w = np.full((3, K), -128, dtype=np.int8)
    assert (R.matmul(a, w) == 16384 * K).all()


@SETTINGS
@given(N=st.integers(1, 2), Cg=st.integers(1, 3), G=st.integers(1, 3), Kg=st.integers(1, 3),
       H=st.integers(1, 9), W=st.integers(1, 9), KS=st.integers(1, 5), S=st.integers(1, 3),
       P=st.integers(0, 2), qa=st.sampled_from(BITS), qw=st.sampled_from(BITS),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_against_torch(N, Cg, G, Kg, H, W, KS, S, P, qa, qw, seed):
    torch = pytest.importorskip("torch")
    if H + 2 * P < KS or W + 2 * P < KS:
        return
    C, K = Cg * G, Kg * G
    rng = np.random.default_rng(seed)
    x, w = rand_vals(rng, (N, C, H, W), qa), rand_vals(rng, (K, Cg, KS, KS), qw)
    y = R.conv2d(x, w, S, P, G)
    t = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                   torch.from_numpy(w.astype(np.float64)),
                                   stride=S, padding=P, groups=G)
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, t.numpy().astype(np.int64))


def test_conv2d_naive_small():
    rng = np.random.default_rng(3)
    x = rand_vals(rng, (1, 4, 5, 4), 4)
    w = rand_vals(rng, (2, 2, 3, 3), 8)
    S, P, G = 2, 1, 2
    y = R.conv2d(x, w, S, P, G)
    OH, OW = R.conv_out_hw(5, 4, 3, S, P)
    assert y.shape == (1, 2, OH, OW) == (1, 2, 3, 2)
    for k, oh, ow in itertools.product(range(2), range(OH), range(OW)):
        g = k   # Kg = 1
        acc = 0
        for c, kh, kw in itertools.product(range(2), range(3), range(3)):
            ih, iw = oh * S + kh - P, ow * S + kw - P
            if 0 <= ih < 5 and 0 <= iw < 4:
                acc += int(x[0, g * 2 + c, ih, iw]) * int(w[k, c, kh, kw])
        assert y[0, k, oh, ow] == acc


def test_conv2d_padding_is_value_zero_for_1bit():
    # all inputs +1 (1-bit), all weights +1, 3x3, P=1: a corner sees only 4 real pixels
    x = np.ones((1, 1, 4, 4), dtype=np.int8)
    w = np.ones((1, 1, 3, 3), dtype=np.int8)
    y = R.conv2d(x, w, 1, 1, 1)
    assert y[0, 0, 0, 0] == 4 and y[0, 0, 1, 1] == 9 and y[0, 0, 0, 1] == 6


def test_reference_speed():
    import time
    t = time.perf_counter()
    R.expected_checksum("matmul", (64, 256, 256), 8, 8, 1)
    R.expected_checksum("conv2d", (1, 64, 128, 128, 64, 3, 1, 1, 1), 4, 2, 1)   # 1M inputs
    assert time.perf_counter() - t < 5.0   # typically ~0.2 s; loose for a busy CI machine


# ---- pooling ------------------------------------------------------------------------

def naive_pool(x, ks, s, avg):
    N, C, H, W = x.shape
    OH, OW = (H - ks) // s + 1, (W - ks) // s + 1
    y = np.zeros((N, C, OH, OW), dtype=np.int64)
    for n, c, oh, ow in itertools.product(range(N), range(C), range(OH), range(OW)):
        win = [int(x[n, c, oh * s + i, ow * s + j]) for i in range(ks) for j in range(ks)]
        if avg:
            cnt = ks * ks
            y[n, c, oh, ow] = (2 * sum(win) + cnt) // (2 * cnt)   # Python // floors
        else:
            y[n, c, oh, ow] = max(win)
    return y


def test_avgpool_rounds_half_up():
    def one(vals):
        return int(R.avgpool(np.array(vals, dtype=np.int8).reshape(1, 1, 2, 2), 2, 2)[0, 0, 0, 0])
    assert one([0, 0, 0, -2]) == 0      # -0.5  -> 0
    assert one([-1, -1, -1, -3]) == -1  # -1.5  -> -1
    assert one([1, 1, 1, 3]) == 2       # 1.5   -> 2
    assert one([0, 0, 0, -3]) == -1     # -0.75 -> -1
    assert one([0, 0, 0, 1]) == 0       # 0.25  -> 0
    assert one([-128] * 4) == -128 and one([127] * 4) == 127


@SETTINGS
@given(N=st.integers(1, 2), C=st.integers(1, 3), H=st.integers(1, 8), W=st.integers(1, 8),
       ks=st.integers(1, 4), s=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_pools_naive(N, C, H, W, ks, s, seed):
    if H < ks or W < ks:
        return
    x = np.random.default_rng(seed).integers(-128, 128, size=(N, C, H, W)).astype(np.int8)
    np.testing.assert_array_equal(R.maxpool(x, ks, s), naive_pool(x, ks, s, False))
    np.testing.assert_array_equal(R.avgpool(x, ks, s), naive_pool(x, ks, s, True))


# ---- requant --------------------------------------------------------------------------

def naive_requant(acc, bias, mult, shift, relu, out_bits):
    """Python ints, channel axis 1 of an (N, C, X) array."""
    out = np.zeros(acc.shape, dtype=np.int64)
    for idx in itertools.product(*map(range, acc.shape)):
        c = idx[1]
        v = int(acc[idx]) + int(bias[c])
        if out_bits == 1:
            out[idx] = 1 if v >= 0 else -1
            continue
        s = int(shift[c])
        y = (v * int(mult[c]) + (1 << (s - 1))) >> s     # Python >> floors
        if relu:
            y = max(y, 0)
        out[idx] = min(max(y, -(1 << (out_bits - 1))), (1 << (out_bits - 1)) - 1)
    return out


@SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 4), X=st.integers(1, 5), relu=st.booleans(),
       out_bits=st.sampled_from(BITS), big=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_requant_naive(N, C, X, relu, out_bits, big, seed):
    rng = np.random.default_rng(seed)
    lim = 2**31 if big else 5000
    acc = rng.integers(-lim, lim, size=(N, C, X)).astype(np.int32)
    bias = rng.integers(-lim, lim, size=C).astype(np.int32)
    mult = rng.integers(1, 2**31 if big else 2**16, size=C).astype(np.int32)
    shift = rng.integers(1, 63 if big else 24, size=C).astype(np.uint8)
    y = R.requant(acc, bias, mult, shift, relu, out_bits, channel_axis=1)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, naive_requant(acc, bias, mult, shift, relu, out_bits))


def test_requant_rounding_known():
    acc = np.array([[5, -5, 6, -6, 7, -7, 2**31 - 1, -2**31]], dtype=np.int32).T  # (8, 1)
    y = R.requant(acc, [0], [1], [2], False, 8, channel_axis=1)
    # x/4 rounded half up: 1.25->1, -1.25->-1, 1.5->2, -1.5->-1, 1.75->2, -1.75->-2, clamps
    assert y[:, 0].tolist() == [1, -1, 2, -1, 2, -2, 127, -128]
    y = R.requant(acc, [0], [1], [2], True, 4, channel_axis=1)
    assert y[:, 0].tolist() == [1, 0, 2, 0, 2, 0, 7, 0]
    y = R.requant(acc, [-5], [1], [2], False, 1, channel_axis=1)
    assert y[:, 0].tolist() == [1, -1, 1, -1, 1, -1, 1, -1]


# ---- checksum -----------------------------------------------------------------------------

def test_checksum_is_crc_of_le_int32():
    y = np.array([[1, -1], [0x12345678, -2**31]], dtype=np.int64)
    raw = b"".join(int(v).to_bytes(4, "little", signed=True) for v in y.reshape(-1))
    assert R.checksum(y) == zlib.crc32(raw)
    assert R.checksum(y) != R.checksum(y.T)


def test_expected_checksum_matches_output():
    y = R.expected_output("conv2d", (1, 3, 6, 6, 4, 3, 1, 1, 1), 2, 4, 9)
    assert y.shape == (1, 4, 6, 6)
    assert R.expected_checksum("conv2d", (1, 3, 6, 6, 4, 3, 1, 1, 1), 2, 4, 9) == R.checksum(y)
    assert R.expected_checksum("matmul", (2, 3, 4), 8, 8, 1) != R.expected_checksum("matmul", (2, 3, 4), 8, 8, 2)


# ---- allocation bound -----------------------------------------------------------------

@pytest.mark.parametrize("op,shape", [
    ("conv2d", (1, 1, 65536, 65536, 1, 1, 1, 0, 1)),         # the 16 GiB xorshift stream of issue 9
    ("conv2d", (1, 1, 1, 1, 1, 1, 1, 2**30, 1)),             # padding: a 2^31 x 2^31 float64 plane
    ("conv2d", (1, 1, 46000, 46000, 1, 1, 46000, 0, 1)),     # small output, huge input
    ("matmul", (50000, 50000, 1)),
])
def test_reference_refuses_oversized_work_before_allocating(op, shape):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(R.ReferenceTooLarge, match="GiB") as e:
            R.expected_checksum(op, shape, 8, 8, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert isinstance(e.value, ValueError) and str(e.value).count(". ") == 0


def test_reference_conv2d_refuses_huge_padding_of_real_arrays():
    x = np.ones((1, 1, 2, 2), np.int8)
    w = np.ones((1, 1, 1, 1), np.int8)
    with pytest.raises(R.ReferenceTooLarge):
        R.conv2d(x, w, padding=2**20)


def test_reference_bytes_bounds_what_small_shapes_use():
    # the estimate is an upper bound: a real computation stays under it
    import tracemalloc

    for op, shape in (("matmul", (7, 9, 130)), ("conv2d", (2, 4, 11, 9, 6, 3, 2, 2, 2))):
        tracemalloc.start()
        try:
            R.expected_output(op, shape, 4, 2, 5)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= R.reference_bytes(op, shape) + (64 << 10)
