"""Value-level Python model of one Fusion Unit (for the cocotb tests).

Independent of the BitBrick decomposition: a Fusion Unit in mode (qa, qw)
with qa, qw in {2, 4, 8} takes P = 16 / ((qa/2) * (qw/2)) activations and
weights packed LSB-first in its two 32-bit input words and returns the dot
product of the P pairs, each value read as two's complement (signed) or
unsigned.  ``psum_out = psum_in + dot`` wraps at 32 bits.
"""

from __future__ import annotations

MODES = ((2, 2), (2, 4), (2, 8), (4, 2), (4, 4), (4, 8), (8, 2), (8, 4), (8, 8))
CODE = {2: 0, 4: 1, 8: 2}


def products(qa: int, qw: int) -> int:
    return 16 // ((qa // 2) * (qw // 2))


def field(word: int, pos: int, bits: int, signed: bool) -> int:
    v = (word >> pos) & ((1 << bits) - 1)
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


def dot(a: int, w: int, qa: int, qw: int, a_signed: bool, w_signed: bool) -> int:
    return sum(field(a, p * qa, qa, a_signed) * field(w, p * qw, qw, w_signed) for p in range(products(qa, qw)))


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def psum_out(psum_in: int, a: int, w: int, qa: int, qw: int, a_signed: bool, w_signed: bool) -> int:
    return to_s32(psum_in + dot(a, w, qa, qw, a_signed, w_signed))


def pack(values, bits: int) -> int:
    """Values (ints, any sign) into one word, value p at bits [p*bits, p*bits+bits)."""
    w = 0
    for p, v in enumerate(values):
        w |= (int(v) & ((1 << bits) - 1)) << (p * bits)
    return w


def edge_words(bits: int, n: int, signed: bool) -> list[int]:
    """Words whose n values sit at the extremes of the range, zero, or alternate."""
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    pats = [[lo], [hi], [0], [lo, hi], [hi, lo], [lo, 0, hi], [1], [-1 if signed else 1], [hi, hi, lo]]
    words = {pack([pat[i % len(pat)] for i in range(n)], bits) for pat in pats}
    words |= {0xFFFFFFFF & ((1 << (n * bits)) - 1), 0x55555555 & ((1 << (n * bits)) - 1),
              0xAAAAAAAA & ((1 << (n * bits)) - 1)}
    return sorted(words)
