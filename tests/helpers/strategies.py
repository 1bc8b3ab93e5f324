"""Hypothesis strategies shared by tests: bit-widths, kernel shapes (valid and
hostile), RUN_KERNEL payloads, model-image mutations and framing garbage.

Hostile values concentrate where C arithmetic breaks: 0, 1, 2^16, 2^31,
2^32 - 1, values just below a wrap (0xFFFFFFE1, 0xFFFFFFF0), and pairs whose
product is 2^32 (plus a little) so that a 32-bit product wraps to something
small and plausible.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from harness import protocol as P
from harness.spec import BITS, MAX_DIM, MAX_REDUCTION

U32 = 0xFFFFFFFF
BOUNDARY_U32 = (0, 1, 2, 3, 7, 8, 31, 32, 33, 255, 256, 362, 363, 46341, 65535, 65536, 65537,
                MAX_REDUCTION, MAX_REDUCTION + 1, MAX_DIM // 2, MAX_DIM - 1, MAX_DIM, MAX_DIM + 1,
                2**31 + 1, 0xFFFFFFE1, 0xFFFFFFF0, U32 - 1, U32)


def bits() -> st.SearchStrategy[int]:
    return st.sampled_from(BITS)


def wire_bits() -> st.SearchStrategy[int]:
    """A bit-width field as a hostile host may fill it: mostly valid, sometimes any byte."""
    return st.one_of(bits(), bits(), bits(), st.sampled_from((0, 3, 5, 7, 9, 16, 255)))


def u32() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(BOUNDARY_U32), st.integers(0, 40), st.integers(0, U32))


@st.composite
def wrapping_pair(draw) -> tuple[int, int]:
    """(a, b) with a * b = 2^32 + r for a small r: wraps to r in 32 bits."""
    k = draw(st.integers(1, 31))
    r = draw(st.integers(0, 3))
    return 1 << k, (1 << (32 - k)) + r


def small_matmul_shapes() -> st.SearchStrategy[tuple[int, int, int]]:
    """Valid, cheap matmul shapes (K crosses word boundaries at every bit-width)."""
    return st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 80))


@st.composite
def small_conv_shapes(draw) -> tuple[int, ...]:
    """Valid, cheap conv2d shapes: padding, stride, groups, kernels larger than the input."""
    g = draw(st.integers(1, 2))
    c, k = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    ks = draw(st.integers(1, 4))
    p = draw(st.integers(max(0, (ks - min(h, w) + 1) // 2), 2))
    return (draw(st.integers(1, 2)), c, h, w, k, ks, draw(st.integers(1, 3)), p, g)


@st.composite
def hostile_dims(draw, op: int) -> tuple[int, ...]:
    """Dims for op 0 (matmul) or 1 (conv2d): boundary values in a few fields of
    a small valid shape, products that wrap 32 bits, or anything at all."""
    n = 3 if op == 0 else 9
    base = list(draw(small_matmul_shapes() if op == 0 else small_conv_shapes()))
    kind = draw(st.sampled_from(("boundary", "boundary", "wrap", "random")))
    if kind == "boundary":
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3)):
            base[i] = draw(st.sampled_from(BOUNDARY_U32))
    elif kind == "wrap":
        a, b = draw(wrapping_pair())
        i, j = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
        base[i], base[j] = a, b
    else:
        base = draw(st.lists(u32(), min_size=n, max_size=n))
    return tuple(base)


@st.composite
def run_kernel_payloads(draw) -> bytes:
    """RUN_KERNEL payloads, a third each: valid small kernels (checked against
    the reference), valid headers with hostile dims, and hostile headers
    (unknown ops, bad bit-widths, extreme repeat counts, wrong dim counts,
    truncated or padded payloads)."""
    mode = draw(st.sampled_from(("valid", "dims", "header")))
    op = draw(st.sampled_from((0, 1)))
    qa, qw = draw(bits()), draw(bits())
    warmup, repeats = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    if mode == "valid":
        dims = draw(small_matmul_shapes() if op == 0 else small_conv_shapes())
    else:
        dims = draw(hostile_dims(op))
    if mode == "header":
        op = draw(st.one_of(st.just(op), st.integers(0, 255)))
        qa, qw = draw(wire_bits()), draw(wire_bits())
        warmup = draw(st.one_of(st.just(warmup), st.sampled_from((0, 1, 0xFFFF))))
        repeats = draw(st.one_of(st.just(repeats), st.sampled_from((0, 1, 2043, 2044, 2045, 0xFFFF))))
        if draw(st.integers(0, 4)) == 0:
            dims = tuple(draw(st.lists(u32(), max_size=12)))
    body = P.run_kernel_payload(op, qa, qw, draw(st.integers(0, U32)), warmup, repeats, dims,
                                flags=draw(st.integers(0, 255)))
    if mode == "header":
        cut = draw(st.sampled_from(("as is", "as is", "cut", "extra", "count")))
        if cut == "cut":
            body = body[:draw(st.integers(0, len(body) - 1))]
        elif cut == "extra":
            body += draw(st.binary(min_size=1, max_size=16))
        elif cut == "count":   # the dims count field disagrees with the dims carried
            body = body[:12] + bytes([draw(st.integers(0, 255))]) + body[13:]
    return body


def header_values() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from((0, 1, 4, 8, 31, 32, 33, 36, 60, 64, 0xFFFF, 0x10000, 16368, 16384,
                                      2**31, U32 - 3, U32)), st.integers(0, 512), st.integers(0, U32))


@st.composite
def header_mutations(draw) -> dict[str, int]:
    """Model-header fields to overwrite (entry offsets inside the header, sizes that wrap...)."""
    names = ("magic", "abi", "entry_offset", "image_size", "in_count", "out_count", "n_layers", "scratch_bytes")
    picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    return {n: draw(header_values()) for n in picked}


@st.composite
def garbage(draw) -> bytes:
    """Bytes that are not a valid frame: noise, flipped or cut frames, COBS
    codes that overrun, oversized frames.  Always ends with a delimiter."""
    frame = P.encode_frame(draw(st.integers(0, 255)), draw(st.integers(0, 0xFFFF)),
                           draw(st.binary(max_size=64)))[:-1]
    kind = draw(st.sampled_from(("noise", "flip", "cut", "cobs", "huge", "zeros")))
    if kind == "noise":
        data = draw(st.binary(min_size=1, max_size=300))
    elif kind == "flip":
        data = bytearray(frame)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        data = bytes(data)
    elif kind == "cut":
        data = frame[:draw(st.integers(1, len(frame) - 1))]
    elif kind == "cobs":
        data = bytes([draw(st.integers(2, 255))]) + draw(st.binary(max_size=8)).replace(b"\0", b"\1")
    elif kind == "huge":
        data = bytes([draw(st.integers(1, 255))]) * draw(st.sampled_from((16500, 17000, 40000)))
    else:
        data = b"\0" * draw(st.integers(1, 4))
    return data + b"\0"


def request_types() -> st.SearchStrategy[int]:
    """Request types including the unknown ones (0, 8.., replies, 0xFF)."""
    return st.one_of(st.integers(0, 255), st.sampled_from((0, 8, 0x80, 0x82, 0xFE, 0xFF)))


def model_data_payload(off: int, total: int, chunk: bytes) -> bytes:
    return struct.pack("<II", off & U32, total & U32) + chunk
