"""Reference interpreter of the BitFusion instruction set (functional, no timing).

Runs a program one instruction at a time on a DRAM image, with the same
buffers, slot rings and address generation as the RTL (rtl/bf_top.v), the
Fusion Units' arithmetic and the output unit (``outunit.py``) at value level.  Tests use it to check the compiler
independently of the RTL; a program that runs correctly here runs correctly
on the overlapped engines (see the note in bf_top.v).
"""

from __future__ import annotations

import numpy as np

from . import isa
from . import outunit as ou
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


def _pack_codes(y: np.ndarray, params: np.ndarray, e: int, chw: int) -> np.ndarray:
    """Output values (rows, C) -> packed OBUF words (rows, chw); invalid channels give code 0."""
    c = ou.codes(y, e).astype(np.uint64) * ((params[:, 2] >> 8) & 1).astype(np.uint64)
    col = np.arange(y.shape[1])
    words = np.zeros((y.shape[0], chw), dtype=np.uint64)
    for j in range(chw):
        sel = (col * e) // 32 == j
        words[:, j] = np.bitwise_or.reduce(c[:, sel] << ((col[sel] * e) % 32).astype(np.uint64), axis=1)
    return words.astype(np.int64)


def _output_unit(total: np.ndarray, params: np.ndarray, pk: dict, chw: int) -> np.ndarray:
    """Finished int32 sums (nt, C) -> packed rows (nt / pool_n, chw) as the output unit writes them."""
    bias = params[:, 0].astype(np.int64)
    bias = np.where(bias >> 31, bias - (1 << 32), bias)
    y = ou.requant_values(total, bias, params[:, 1].astype(np.int64), params[:, 2].astype(np.int64) & 63, pk["relu"],
                          pk["out_bits"], pk["out_signed"])
    e = ou.container_bits(pk["out_bits"])
    return _pack_codes(ou.pool_values(y, pk["pool"], pk["pool_n"], e), params, e, chw)


def _packed_rows(slot_base: int, pk: dict, C: int, chw: int) -> tuple[int, int]:
    """OBUF word of packed row 0 and the words between two packed rows."""
    if pk["in_place"]:
        return slot_base + (pk["pool_n"] - 1) * C, pk["pool_n"] * C
    return slot_base, chw


def run(cfg: ArrayConfig, program: list[int], dram: np.ndarray) -> dict:
    """Execute `program` on `dram` (uint32 words, modified in place); returns counters."""
    R, C, RC = cfg.rows, cfg.cols, cfg.rows * cfg.cols
    ibuf = np.zeros(cfg.ib_depth * R, dtype=np.uint32)
    wbuf = np.zeros(cfg.wb_depth * RC, dtype=np.uint32)
    obuf = np.zeros(cfg.ob_depth * C, dtype=np.int64)
    pbuf = np.zeros(2 * cfg.pb_words, dtype=np.uint32)
    dram_b = dram.view(np.uint8)
    pk: dict = {"on": False}
    yshape = (1, 1, 1)
    stride = np.zeros((isa.N_GROUPS, isa.MAX_LOOPS), dtype=np.int64)
    loops: list[list[int]] = []          # [start pc, count, index]
    mode = dict(qa=8, qw=8, a_signed=True, w_signed=True, islots=1, wslots=1, oslots=1)
    rings = {}
    shape = (1, 1, 0)
    stats = {"ld": 0, "st": 0, "compute": 0, "macs": 0}

    def reset_rings():
        rings.update(i=dict(loaded=[], free=list(range(mode["islots"]))),
                     w=dict(loaded=[], free=list(range(mode["wslots"]))),
                     p=dict(loaded=[], free=[0, 1]),
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
            pk = {"on": False}
            reset_rings()
        elif op == isa.OP_OSETUP:
            d = isa.decode(word).fields
            pk = dict(d, on=bool(d["on"]))
            if pk["on"] and (d["pool_n"] == 0 or d["out_bits"] > 8):
                raise ProgramError("OSETUP with an empty pooling window or out_bits > 8")
        elif op == isa.OP_YSHAPE:
            d = isa.decode(word).fields
            yshape = (d["rows"], d["pitch"], d["block"])
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
            ring, buf, depth, slots = {"WBUF": (rings["w"], wbuf, cfg.wb_depth * RC, mode["wslots"]),
                                       "IBUF": (rings["i"], ibuf, cfg.ib_depth * R, mode["islots"]),
                                       "PBUF": (rings["p"], pbuf, 2 * cfg.pb_words, 2)}[d["buf"]]
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
        elif op == isa.OP_STP:
            d = isa.decode(word).fields
            o = rings["o"]
            if not o["done"]:
                raise ProgramError("STP with no finished OBUF slot")
            rows, pitch, block = yshape
            nbytes = min(d["chunk"], block - off(d["clip_group"]))
            if nbytes <= 0:
                raise ProgramError("STP clipped to nothing")
            slot = o["done"].pop(0)
            chw = max(1, C * ou.container_bits(pk["out_bits"]) // 32)
            base, pitch_o = _packed_rows(slot * (cfg.ob_depth // mode["oslots"]) * C, pk, C, chw)
            idx = base + np.arange(rows)[:, None] * pitch_o + np.arange(chw)[None, :]
            src = (obuf[idx] & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(rows, 4 * chw)
            addr = d["addr"] + off(d["group"])
            for r in range(rows):
                a0 = addr + r * pitch
                if a0 + nbytes > dram_b.size:
                    raise ProgramError(f"STP row at byte {a0} beyond the DRAM image")
                dram_b[a0:a0 + nbytes] = src[r, :nbytes]
            o["free"].append(slot)
            stats["st"] += 1
        elif op == isa.OP_COMPUTE:
            d = isa.decode(word).fields
            ib, wb = d["ib"] + off(d["gi"]), d["wb"] + off(d["gw"])
            acq, fin = cond(d["acquire"], True), cond(d["finish"], False)
            reli, relw = cond(d["rel_i"], False), cond(d["rel_w"], False)
            ri, rw, ro, rp = rings["i"], rings["w"], rings["o"], rings["p"]
            if not ri["loaded"] or not rw["loaded"]:
                raise ProgramError(f"COMPUTE before its operands were loaded (pc {pc - 1})")
            if pk["on"] and fin and not rp["loaded"]:
                raise ProgramError(f"COMPUTE finishes packed outputs before its parameters were loaded (pc {pc - 1})")
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
            word_i = (ibase + (pos >> lw)) % cfg.ib_depth
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
            total = y if acq else rows[obase:obase + nt] + y
            total = ((total + 2**31) % 2**32) - 2**31
            if pk["on"] and fin:
                e = ou.container_bits(pk["out_bits"])
                chw = max(1, C * e // 32)
                if nt % pk["pool_n"]:
                    raise ProgramError("rows of a packed COMPUTE are not whole pooling windows")
                params = pbuf[rp["loaded"][0] * cfg.pb_words:][:cfg.pb_words].reshape(C, isa.PBUF_WORDS_PER_COL)
                words = _output_unit(total, params, pk, chw)
                base, pitch_o = _packed_rows(obase * C, pk, C, chw)
                obuf[base + np.arange(len(words))[:, None] * pitch_o + np.arange(chw)[None, :]] = words
            else:
                rows[obase:obase + nt] = total
            if pk["on"] and cond(d["rel_p"], False):
                rp["free"].append(rp["loaded"].pop(0))
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
