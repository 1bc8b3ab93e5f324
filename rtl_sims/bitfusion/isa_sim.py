"""Reference interpreter of the BitFusion instruction set (functional, no timing).

Runs a program one instruction at a time on a DRAM image, with the same
buffers, slot rings and address generation as the RTL (rtl/bf_top.v), and the
Fusion Units' arithmetic at value level.  Tests use it to check the compiler
independently of the RTL; a program that runs correctly here runs correctly
on the overlapped engines (see the note in bf_top.v).
"""

from __future__ import annotations

import numpy as np

from . import isa
from .compiler import ArrayConfig

CODES = {0: 2, 1: 4, 2: 8, 3: 8}


class ProgramError(RuntimeError):
    pass


def _values(words: np.ndarray, shift: np.ndarray, bits: int, count: int, signed: bool = True) -> np.ndarray:
    """`count` fields of `bits` bits from (words >> shift), LSB first, as int64 (last axis)."""
    w = (words.astype(np.uint64) >> shift.astype(np.uint64))[..., None]
    f = (w >> (np.arange(count, dtype=np.uint64) * np.uint64(bits))) & np.uint64((1 << bits) - 1)
    v = f.astype(np.int64)
    if signed:
        v = np.where(v >> (bits - 1), v - (1 << bits), v)
    return v


def run(cfg: ArrayConfig, program: list[int], dram: np.ndarray) -> dict:
    """Execute `program` on `dram` (uint32 words, modified in place); returns counters."""
    R, C, RC = cfg.rows, cfg.cols, cfg.rows * cfg.cols
    ibuf = np.zeros(cfg.ib_depth * R, dtype=np.uint32)
    wbuf = np.zeros(cfg.wb_depth * RC, dtype=np.uint32)
    obuf = np.zeros(cfg.ob_depth * C, dtype=np.int64)
    stride = np.zeros((isa.N_GROUPS, isa.MAX_LOOPS), dtype=np.int64)
    loops: list[list[int]] = []          # [start pc, count, index]
    mode = dict(qa=8, qw=8, a_signed=True, w_signed=True, islots=1, wslots=1, oslots=1)
    rings = {}
    shape = (1, 1, 0)
    stats = {"ld": 0, "st": 0, "compute": 0, "macs": 0}

    def reset_rings():
        rings.update(i=dict(loaded=[], free=list(range(mode["islots"]))),
                     w=dict(loaded=[], free=list(range(mode["wslots"]))),
                     o=dict(cur=None, done=[], free=list(range(mode["oslots"]))))

    reset_rings()

    def off(g: int) -> int:
        return int(sum(l[2] * stride[g][d] for d, l in enumerate(loops)))

    def cond(level: int, first: bool) -> bool:
        return all((l[2] == 0) if first else (l[2] == l[1] - 1) for d, l in enumerate(loops) if d >= level)

    pc = 0
    steps = 0
    while True:
        steps += 1
        if steps > 50_000_000 or pc >= len(program):
            raise ProgramError(f"program ran off its end at pc {pc}")
        word = int(program[pc])
        op = word >> 60
        pc += 1
        if op == isa.OP_HALT:
            break
        if op == isa.OP_SETUP:
            d = isa.decode(word).fields
            mode.update(qa=d["qa"], qw=d["qw"], a_signed=bool(d["a_signed"]), w_signed=bool(d["w_signed"]),
                        islots=d["islots"], wslots=d["wslots"], oslots=d["oslots"])
            reset_rings()
        elif op == isa.OP_LOOP:
            if len(loops) == isa.MAX_LOOPS:
                raise ProgramError("loops nested too deep")
            loops.append([pc, word & 0xFFFFFFFF, 0])
        elif op == isa.OP_ENDLOOP:
            top = loops[-1]
            if top[2] + 1 < top[1]:
                top[2] += 1
                pc = top[0]
            else:
                loops.pop()
        elif op == isa.OP_STRIDE:
            d = isa.decode(word).fields
            stride[d["group"]][d["level"]] = d["stride"]
        elif op == isa.OP_CSHAPE:
            d = isa.decode(word).fields
            shape = (d["nt"], d["steps"], d["nstride"])
        elif op == isa.OP_LD:
            d = isa.decode(word).fields
            addr, n = d["addr"] + off(d["group"]), d["words"]
            ring, buf, depth, slots = ((rings["w"], wbuf, cfg.wb_depth * RC, mode["wslots"]) if d["buf"] == "WBUF"
                                       else (rings["i"], ibuf, cfg.ib_depth * R, mode["islots"]))
            if not ring["free"]:
                raise ProgramError(f"LD {d['buf']} with no free slot (pc {pc - 1})")
            if n > depth // slots or addr + n > len(dram):
                raise ProgramError(f"LD {d['buf']} of {n} words at {addr} out of range")
            slot = ring["free"].pop(0)
            base = slot * (depth // slots)
            buf[base:base + n] = dram[addr:addr + n]
            ring["loaded"].append(slot)
            stats["ld"] += 1
        elif op == isa.OP_ST:
            d = isa.decode(word).fields
            addr, n = d["addr"] + off(d["group"]), d["words"]
            o = rings["o"]
            if not o["done"]:
                raise ProgramError("ST with no finished OBUF slot")
            slot = o["done"].pop(0)
            base = slot * (cfg.ob_depth // mode["oslots"]) * C
            dram[addr:addr + n] = (obuf[base:base + n] & 0xFFFFFFFF).astype(np.uint32)
            o["free"].append(slot)
            stats["st"] += 1
        elif op == isa.OP_COMPUTE:
            d = isa.decode(word).fields
            ib, wb = d["ib"] + off(d["gi"]), d["wb"] + off(d["gw"])
            acq, fin = cond(d["acquire"], True), cond(d["finish"], False)
            reli, relw = cond(d["rel_i"], False), cond(d["rel_w"], False)
            ri, rw, ro = rings["i"], rings["w"], rings["o"]
            if not ri["loaded"] or not rw["loaded"]:
                raise ProgramError(f"COMPUTE before its operands were loaded (pc {pc - 1})")
            if acq:
                if not ro["free"]:
                    raise ProgramError("COMPUTE acquires an OBUF slot but none is free")
                ro["cur"] = ro["free"].pop(0)
            if ro["cur"] is None:
                raise ProgramError("COMPUTE without an OBUF slot")
            nt, st, nstride = shape
            qa, qw = mode["qa"], mode["qw"]
            la, lw = {2: 0, 4: 1, 8: 2}[qa], {2: 0, 4: 1, 8: 2}[qw]
            P = 16 >> (la + lw)
            ibase = ri["loaded"][0] * (cfg.ib_depth // mode["islots"])
            wbase = rw["loaded"][0] * (cfg.wb_depth // mode["wslots"])
            obase = ro["cur"] * (cfg.ob_depth // mode["oslots"])
            pos = ib + np.arange(nt)[:, None] * nstride + np.arange(st)[None, :]            # (nt, st)
            word_i = ibase + (pos >> lw)
            sh_i = (pos & ((1 << lw) - 1)) << (5 - lw)
            aw = ibuf.reshape(-1, R)[word_i]                                                 # (nt, st, R)
            av = _values(aw, np.broadcast_to(sh_i[..., None], aw.shape), qa, P, mode["a_signed"])  # (nt,st,R,P)
            wpos = wb + np.arange(st)
            word_w = wbase + (wpos >> la)
            sh_w = (wpos & ((1 << la) - 1)) << (5 - la)
            ww = wbuf.reshape(-1, RC)[word_w]                                                # (st, RC)
            wv = _values(ww, np.broadcast_to(sh_w[:, None], ww.shape), qw, P, mode["w_signed"])   # (st, RC, P)
            wv = wv.reshape(st, R, C, P)
            y = np.einsum("nsrp,srcp->nc", av, wv)
            rows = obuf.reshape(-1, C)
            if acq:
                rows[obase:obase + nt] = y
            else:
                rows[obase:obase + nt] += y
            rows[obase:obase + nt] = ((rows[obase:obase + nt] + 2**31) % 2**32) - 2**31
            if fin:
                ro["done"].append(ro["cur"])
                ro["cur"] = None
            if reli:
                ri["free"].append(ri["loaded"].pop(0))
            if relw:
                rw["free"].append(rw["loaded"].pop(0))
            stats["compute"] += 1
            stats["macs"] += nt * st * R * C * P
        else:
            raise ProgramError(f"unknown opcode {op} at pc {pc - 1}")
    return stats
