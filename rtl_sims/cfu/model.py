"""Bit-accurate Python model of the mico_simd_cfu instruction.

See the package docstring (``rtl_sims/cfu/__init__.py``) and the header of
``mico_simd_cfu.v`` for the semantics; ``cfu(function_id, rs1, rs2)`` returns
rd as a signed int32 (Python int).
"""

from __future__ import annotations

from kernels.numeric import BITS
OPCODE = 0x0B          # custom-0
_MASK32 = 0xFFFFFFFF


def _index(b: int) -> int:
    if b not in BITS:
        raise ValueError(f"bit-width {b!r} is not one of {BITS}")
    return BITS.index(b)


def funct7(qa: int, qw: int) -> int:
    """funct7 of the (qa, qw) pair: ia*4 + iw."""
    return _index(qa) * 4 + _index(qw)


def segments(qa: int, qw: int) -> int:
    """R = max/min: how many instructions (segments) use one narrow word."""
    _index(qa), _index(qw)
    return max(qa, qw) // min(qa, qw)


def lanes(qa: int, qw: int) -> int:
    """L = 32 / max(qa, qw): MACs per instruction."""
    _index(qa), _index(qw)
    return 32 // max(qa, qw)


def encode_function_id(qa: int, qw: int, segment: int = 0) -> int:
    """function_id = {funct7, funct3} of the (qa, qw) pair and segment."""
    if not 0 <= int(segment) < 8:
        raise ValueError(f"segment {segment!r} does not fit funct3")
    return (funct7(qa, qw) << 3) | int(segment)


def encode_instruction(qa: int, qw: int, segment: int, rd: int, rs1: int, rs2: int) -> int:
    """The 32-bit R-type instruction word ``.insn r 0x0B, seg, funct7, rd, rs1, rs2``."""
    for r in (rd, rs1, rs2):
        if not 0 <= r < 32:
            raise ValueError(f"register x{r} out of range")
    return ((funct7(qa, qw) << 25) | (rs2 << 20) | (rs1 << 15) | (int(segment) << 12)
            | (rd << 7) | OPCODE)


def value(code: int, b: int) -> int:
    """Value of a b-bit code: b = 1 -> 2c-1, else two's complement."""
    code &= (1 << b) - 1
    if b == 1:
        return 2 * code - 1
    half = 1 << (b - 1)
    return (code ^ half) - half


def elements(word: int, b: int) -> list[int]:
    """The 32/b values packed in one word."""
    return [value(int(word) >> (i * b), b) for i in range(32 // b)]


def cfu(function_id: int, rs1: int, rs2: int) -> int:
    """rd of one CFU instruction as a signed int32."""
    fid = int(function_id) & 0x3FF
    f7, seg = fid >> 3, fid & 7
    if f7 >> 4:
        return 0
    qa, qw = BITS[(f7 >> 2) & 3], BITS[f7 & 3]
    R = max(qa, qw) // min(qa, qw)
    if seg >= R:
        return 0
    L = 32 // max(qa, qw)
    a_el = elements(int(rs1) & _MASK32, qa)
    w_el = elements(int(rs2) & _MASK32, qw)
    if qa <= qw:        # activation is the narrow (or equal) operand
        acc = sum(a_el[seg * L + i] * w_el[i] for i in range(L))
    else:
        acc = sum(a_el[i] * w_el[seg * L + i] for i in range(L))
    acc &= _MASK32
    return acc - (1 << 32) if acc >> 31 else acc


def dot_words(qa: int, qw: int, act_words, wgt_words, K: int) -> int:
    """Dot product of two packed rows of K elements computed the way the
    SIMD kernels do it (one instruction per wide word, narrow words reused
    across R segments, 1x1 pad lanes subtracted); equals the plain dot."""
    wide, narrow = max(qa, qw), min(qa, qw)
    R = wide // narrow
    n_wide = (K + 32 // wide - 1) // (32 // wide)
    acc = 0
    for k in range(n_wide):
        j, s = divmod(k, R)
        fid = encode_function_id(qa, qw, s)
        if qa <= qw:
            acc += cfu(fid, act_words[j], wgt_words[k])
        else:
            acc += cfu(fid, act_words[k], wgt_words[j])
    if qa == qw == 1:
        acc -= 32 * n_wide - K
    return acc
