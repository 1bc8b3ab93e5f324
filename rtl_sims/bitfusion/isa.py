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
OSETUP     9  the output unit: packed outputs on/off, out_bits, signedness, ReLU,
              pooling over consecutive rows, the OBUF offset of the packed region
YSHAPE    10  rows, DRAM row pitch (bytes) and group-block bytes of the following STPs
STP       11  oldest finished OBUF slot (packed region) -> DRAM, row by row, byte-exact
========  ==  =====================================================================

LD names three buffers: IBUF (activations), WBUF (weights) and PBUF (the output
unit's per-column parameters: bias, multiplier, shift, one ring of 2 slots).

Addresses are 32-bit word addresses (DRAM; STP: byte addresses) or step positions (inside an IBUF /
WBUF slot); every address an instruction names is its immediate plus the sum
over the enclosing loops of (iteration index x the group's stride for that
level).  COMPUTE's four level fields are conditions "every enclosing loop at
depth >= L is at its first / last iteration" (L >= depth: always true).
"""

from __future__ import annotations

from dataclasses import dataclass

(OP_HALT, OP_SETUP, OP_LOOP, OP_ENDLOOP, OP_STRIDE, OP_LD, OP_ST, OP_COMPUTE, OP_CSHAPE, OP_OSETUP, OP_YSHAPE,
 OP_STP) = range(12)
OP_NAMES = {OP_HALT: "HALT", OP_SETUP: "SETUP", OP_LOOP: "LOOP", OP_ENDLOOP: "ENDLOOP", OP_STRIDE: "STRIDE",
            OP_LD: "LD", OP_ST: "ST", OP_COMPUTE: "COMPUTE", OP_CSHAPE: "CSHAPE", OP_OSETUP: "OSETUP",
            OP_YSHAPE: "YSHAPE", OP_STP: "STP"}
NS_IBUF, NS_WBUF, NS_PBUF = 0, 1, 2
NS_NAMES = {NS_IBUF: "IBUF", NS_WBUF: "WBUF", NS_PBUF: "PBUF"}
POOL_CODES = {"none": 0, "max": 1, "avg": 2}
MAX_LOOPS = 6
N_GROUPS = 8
ALWAYS = 7          # a level no loop reaches: the condition always holds
BITS_CODE = {2: 0, 4: 1, 8: 2}

# accelerator error codes (bf_top.v E_*)
ERRORS = {1: "unknown opcode", 2: "loops nested deeper than 6", 3: "program counter left the instruction memory",
          4: "ENDLOOP without LOOP", 5: "LD length is zero, unaligned or larger than the buffer",
          6: "ST length is zero, unaligned or larger than the buffer", 7: "zero count or shape"}
PBUF_WORDS_PER_COL = 3      # bias, multiplier, shift | channel-valid << 8


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
    """[59] ns bit 0, [55] ns bit 1 (PBUF), [58:56] group, [54:32] words, [31:0] word address."""
    if not (0 < words < 1 << 23 and 0 <= addr < 1 << 32 and ns in NS_NAMES):
        raise ValueError("LD buffer, length or address out of range")
    return _op(OP_LD) | (ns & 1) << 59 | (ns >> 1) << 55 | group << 56 | words << 32 | addr


def st(group: int, words: int, addr: int) -> int:
    if not (0 < words < 1 << 24 and 0 <= addr < 1 << 32):
        raise ValueError("ST length or address out of range")
    return _op(OP_ST) | group << 56 | words << 32 | addr


def compute(gi: int, gw: int, acquire: int, finish: int, rel_i: int, rel_w: int, ib: int = 0, wb: int = 0,
            rel_p: int = ALWAYS) -> int:
    """rel_p (bits [40:38]) releases the PBUF slot; it only counts in packed-output mode."""
    for lv in (acquire, finish, rel_i, rel_w, rel_p):
        if not 0 <= lv <= 7:
            raise ValueError("levels are 0..7")
    if not (0 <= ib < 1 << 16 and 0 <= wb < 1 << 16):
        raise ValueError("COMPUTE step base out of range")
    return (_op(OP_COMPUTE) | gi << 56 | gw << 53 | acquire << 50 | finish << 47 | rel_i << 44 | rel_w << 41
            | rel_p << 38 | wb << 16 | ib)


def cshape(nt: int, steps: int, nstride: int) -> int:
    if not (0 < nt < 1 << 16 and 0 < steps < 1 << 16 and 0 <= nstride < 1 << 16):
        raise ValueError(f"CSHAPE ({nt}, {steps}, {nstride}) out of range")
    return _op(OP_CSHAPE) | nstride << 32 | steps << 16 | nt


def osetup(out_bits: int, out_signed: bool = True, relu: bool = False, pool: str = "none", pool_n: int = 1,
           recip_m: int = 0, recip_k: int = 0, in_place: bool = False) -> int:
    """Packed-output mode.  [0] on, [4:1] out_bits (0: int32 acc + bias), [5] signed, [6] ReLU,
    [8:7] pool (0 none, 1 max, 2 avg), [16:9] rows per pooling window, [22:17] / [42:23] the
    avg-pool reciprocal (k, m), [43] in place: packed row i goes over the int32 partial sums
    of the window's last row (i * pool_n + pool_n - 1; k_tiles > 1), else densely from the
    slot's start (``max(1, C * e / 32)`` words per row)."""
    if not (0 <= out_bits <= 8 and 1 <= pool_n < 256 and 0 <= recip_k < 64 and 0 <= recip_m < 1 << 20
            and pool in POOL_CODES):
        raise ValueError("OSETUP field out of range")
    return (_op(OP_OSETUP) | 1 | out_bits << 1 | int(out_signed) << 5 | int(relu) << 6 | POOL_CODES[pool] << 7
            | pool_n << 9 | recip_k << 17 | recip_m << 23 | int(in_place) << 43)


def osetup_off() -> int:
    """OSETUP with the packed mode off (int32 partial sums out, as after SETUP)."""
    return _op(OP_OSETUP) | 1 << 9


def yshape(rows: int, pitch: int, block: int) -> int:
    """[15:0] rows per STP, [43:16] DRAM row pitch in bytes, [59:44] bytes of one group block
    (an STP writes at most ``block - clip offset`` bytes per row)."""
    if not (0 < rows < 1 << 16 and 0 < pitch < 1 << 28 and 0 < block < 1 << 16):
        raise ValueError(f"YSHAPE ({rows}, {pitch}, {block}) out of range")
    return _op(OP_YSHAPE) | block << 44 | pitch << 16 | rows


def stp(group: int, clip_group: int, chunk: int, addr: int) -> int:
    """[58:56] address group, [55:53] clip group, [41:32] chunk bytes per row, [31:0] byte address."""
    if not (0 < chunk < 1 << 10 and 0 <= addr < 1 << 32 and 0 <= group < N_GROUPS and 0 <= clip_group < N_GROUPS):
        raise ValueError("STP chunk, group or address out of range")
    return _op(OP_STP) | group << 56 | clip_group << 53 | chunk << 32 | addr


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
    elif op == OP_LD:
        f = {"buf": NS_NAMES.get((word >> 59 & 1) | (word >> 55 & 1) << 1, "?"), "group": word >> 56 & 7,
             "words": word >> 32 & 0x7FFFFF, "addr": word & 0xFFFFFFFF}
    elif op == OP_ST:
        f = {"group": word >> 56 & 7, "words": word >> 32 & 0xFFFFFF, "addr": word & 0xFFFFFFFF}
    elif op == OP_COMPUTE:
        f = {"gi": word >> 56 & 7, "gw": word >> 53 & 7, "acquire": word >> 50 & 7, "finish": word >> 47 & 7,
             "rel_i": word >> 44 & 7, "rel_w": word >> 41 & 7, "rel_p": word >> 38 & 7, "wb": word >> 16 & 0xFFFF,
             "ib": word & 0xFFFF}
    elif op == OP_OSETUP:
        pools = {v: k for k, v in POOL_CODES.items()}
        f = {"on": word & 1, "out_bits": word >> 1 & 15, "out_signed": word >> 5 & 1, "relu": word >> 6 & 1,
             "pool": pools.get(word >> 7 & 3, "?"), "pool_n": word >> 9 & 0xFF, "recip_k": word >> 17 & 63,
             "recip_m": word >> 23 & 0xFFFFF, "in_place": word >> 43 & 1}
    elif op == OP_YSHAPE:
        f = {"rows": word & 0xFFFF, "pitch": word >> 16 & 0xFFFFFFF, "block": word >> 44 & 0xFFFF}
    elif op == OP_STP:
        f = {"group": word >> 56 & 7, "clip_group": word >> 53 & 7, "chunk": word >> 32 & 0x3FF,
             "addr": word & 0xFFFFFFFF}
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
