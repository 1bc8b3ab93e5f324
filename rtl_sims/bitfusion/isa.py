"""The BitFusion accelerator's instruction set (rtl/bf_top.v holds the decoder).

64-bit instructions, opcode in bits [63:60]:

========  ==  =====================================================================
HALT       0  wait until every engine is idle and the array has drained
SETUP      1  precision mode (qa, qw in {2,4,8}, signed operands) and ring slots
LOOP       2  repeat the body up to the matching ENDLOOP ``count`` times (<= 6 deep)
ENDLOOP    3
STRIDE     4  address group g moves by ``stride`` per iteration of loop level l
LD         5  DRAM -> next free IBUF (ns 0) / WBUF (ns 1) slot, ``words`` 32-bit words
ST         6  oldest finished OBUF slot -> DRAM
COMPUTE    7  stream CSHAPE.nt rows x CSHAPE.st steps through the array
CSHAPE     8  rows, steps, IBUF steps per row for the following COMPUTEs
========  ==  =====================================================================

Addresses are 32-bit word addresses (DRAM) or step positions (inside an IBUF /
WBUF slot); every address an instruction names is its immediate plus the sum
over the enclosing loops of (iteration index x the group's stride for that
level).  COMPUTE's four level fields are conditions "every enclosing loop at
depth >= L is at its first / last iteration" (L >= depth: always true).
"""

from __future__ import annotations

from dataclasses import dataclass

OP_HALT, OP_SETUP, OP_LOOP, OP_ENDLOOP, OP_STRIDE, OP_LD, OP_ST, OP_COMPUTE, OP_CSHAPE = range(9)
OP_NAMES = {OP_HALT: "HALT", OP_SETUP: "SETUP", OP_LOOP: "LOOP", OP_ENDLOOP: "ENDLOOP", OP_STRIDE: "STRIDE",
            OP_LD: "LD", OP_ST: "ST", OP_COMPUTE: "COMPUTE", OP_CSHAPE: "CSHAPE"}
NS_IBUF, NS_WBUF = 0, 1
MAX_LOOPS = 6
N_GROUPS = 8
ALWAYS = 7          # a level no loop reaches: the condition always holds
BITS_CODE = {2: 0, 4: 1, 8: 2}

# accelerator error codes (bf_top.v E_*)
ERRORS = {1: "unknown opcode", 2: "loops nested deeper than 6", 3: "program counter left the instruction memory",
          4: "ENDLOOP without LOOP", 5: "LD length is zero, unaligned or larger than the buffer",
          6: "ST length is zero, unaligned or larger than the buffer", 7: "zero count or shape"}


def _op(op: int) -> int:
    return op << 60


def halt() -> int:
    return _op(OP_HALT)


def setup(qa: int, qw: int, a_signed: bool = True, w_signed: bool = True, islots: int = 2,
          wslots: int = 2, oslots: int = 2) -> int:
    for s in (islots, wslots, oslots):
        if s not in (1, 2):
            raise ValueError("rings have 1 or 2 slots")
    return (_op(OP_SETUP) | BITS_CODE[qa] | BITS_CODE[qw] << 2 | int(a_signed) << 4 | int(w_signed) << 5
            | (islots == 2) << 6 | (wslots == 2) << 7 | (oslots == 2) << 8)


def loop(count: int) -> int:
    if not 1 <= count < 1 << 32:
        raise ValueError(f"loop count {count} out of range")
    return _op(OP_LOOP) | count


def endloop() -> int:
    return _op(OP_ENDLOOP)


def stride(group: int, level: int, value: int) -> int:
    if not (0 <= group < N_GROUPS and 0 <= level < MAX_LOOPS):
        raise ValueError("bad address group or loop level")
    if not -(1 << 31) <= value < 1 << 32:
        raise ValueError(f"stride {value} out of range")
    return _op(OP_STRIDE) | group << 56 | level << 53 | (value & 0xFFFFFFFF)


def ld(ns: int, group: int, words: int, addr: int) -> int:
    if not (0 < words < 1 << 24 and 0 <= addr < 1 << 32):
        raise ValueError("LD length or address out of range")
    return _op(OP_LD) | ns << 59 | group << 56 | words << 32 | addr


def st(group: int, words: int, addr: int) -> int:
    if not (0 < words < 1 << 24 and 0 <= addr < 1 << 32):
        raise ValueError("ST length or address out of range")
    return _op(OP_ST) | group << 56 | words << 32 | addr


def compute(gi: int, gw: int, acquire: int, finish: int, rel_i: int, rel_w: int, ib: int = 0, wb: int = 0) -> int:
    for lv in (acquire, finish, rel_i, rel_w):
        if not 0 <= lv <= 7:
            raise ValueError("levels are 0..7")
    if not (0 <= ib < 1 << 16 and 0 <= wb < 1 << 16):
        raise ValueError("COMPUTE step base out of range")
    return (_op(OP_COMPUTE) | gi << 56 | gw << 53 | acquire << 50 | finish << 47 | rel_i << 44 | rel_w << 41
            | wb << 16 | ib)


def cshape(nt: int, steps: int, nstride: int) -> int:
    if not (0 < nt < 1 << 16 and 0 < steps < 1 << 16 and 0 <= nstride < 1 << 16):
        raise ValueError(f"CSHAPE ({nt}, {steps}, {nstride}) out of range")
    return _op(OP_CSHAPE) | nstride << 32 | steps << 16 | nt


@dataclass(frozen=True)
class Decoded:
    op: str
    fields: dict

    def __str__(self) -> str:
        return self.op + ("" if not self.fields else " " + " ".join(f"{k}={v}" for k, v in self.fields.items()))


def decode(word: int) -> Decoded:
    op = word >> 60
    name = OP_NAMES.get(op, f"?{op}")
    f: dict = {}
    if op == OP_SETUP:
        codes = {0: 2, 1: 4, 2: 8, 3: 8}
        f = {"qa": codes[word & 3], "qw": codes[word >> 2 & 3], "a_signed": word >> 4 & 1, "w_signed": word >> 5 & 1,
             "islots": 1 + (word >> 6 & 1), "wslots": 1 + (word >> 7 & 1), "oslots": 1 + (word >> 8 & 1)}
    elif op == OP_LOOP:
        f = {"count": word & 0xFFFFFFFF}
    elif op == OP_STRIDE:
        v = word & 0xFFFFFFFF
        f = {"group": word >> 56 & 7, "level": word >> 53 & 7, "stride": v - (1 << 32) if v >> 31 else v}
    elif op in (OP_LD, OP_ST):
        f = {"group": word >> 56 & 7, "words": word >> 32 & 0xFFFFFF, "addr": word & 0xFFFFFFFF}
        if op == OP_LD:
            f = {"buf": "WBUF" if word >> 59 & 1 else "IBUF", **f}
    elif op == OP_COMPUTE:
        f = {"gi": word >> 56 & 7, "gw": word >> 53 & 7, "acquire": word >> 50 & 7, "finish": word >> 47 & 7,
             "rel_i": word >> 44 & 7, "rel_w": word >> 41 & 7, "wb": word >> 16 & 0xFFFF, "ib": word & 0xFFFF}
    elif op == OP_CSHAPE:
        f = {"nt": word & 0xFFFF, "steps": word >> 16 & 0xFFFF, "nstride": word >> 32 & 0xFFFF}
    return Decoded(name, f)


def disassemble(words) -> str:
    out, depth = [], 0
    for i, w in enumerate(words):
        d = decode(int(w))
        if d.op == "ENDLOOP":
            depth -= 1
        out.append(f"{i:4d}  {'  ' * depth}{d}")
        if d.op == "LOOP":
            depth += 1
    return "\n".join(out)
