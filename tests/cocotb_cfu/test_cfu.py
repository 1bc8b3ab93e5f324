"""cocotb tests of rtl_sims/cfu/mico_simd_cfu.v against rtl_sims/cfu/model.py.

Run by tests/test_cfu_cocotb.py (cocotb_tools.runner, Verilator); not a
pytest module.  Every (qa, qw) pair and every valid segment gets edge words
(all-min, all-max, zero, alternating patterns, crossed with each other) and
random words, issued back to back (one command per cycle); invalid segments
and reserved funct7 bits must return 0; a randomised stream checks the
handshake under rsp_ready back-pressure and gaps in cmd_valid.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtl_sims.cfu import model as M  # noqa: E402

BITS = M.BITS
RANDOM_PER_SEGMENT = int(os.environ.get("MICO_CFU_RANDOM", "300"))


def edge_words(b: int) -> list[int]:
    """Words with every element at one extreme value, zero, or alternating."""
    per = 32 // b

    def rep(codes):
        w = 0
        for i in range(per):
            w |= (codes[i % len(codes)] & ((1 << b) - 1)) << (i * b)
        return w

    if b == 1:
        lo, hi, zero = 0, 1, 0                 # -1, +1 (no zero value: code 0 is -1)
    else:
        lo, hi, zero = 1 << (b - 1), (1 << (b - 1)) - 1, 0
    words = {rep([lo]), rep([hi]), rep([zero]), rep([lo, hi]), rep([hi, lo]),
             rep([zero, lo]), rep([lo, zero, hi]), 0x55555555, 0xAAAAAAAA,
             0x0F0F0F0F, 0xF0F0F0F0, 0x00FF00FF, 0xFFFFFFFF, 0x80000001}
    return sorted(words)


def valid_commands(rng: random.Random) -> list[tuple[int, int, int]]:
    cmds = []
    for qa, qw in itertools.product(BITS, BITS):
        for seg in range(M.segments(qa, qw)):
            fid = M.encode_function_id(qa, qw, seg)
            for a, w in itertools.product(edge_words(qa), edge_words(qw)):
                cmds.append((fid, a, w))
            for _ in range(RANDOM_PER_SEGMENT):
                cmds.append((fid, rng.getrandbits(32), rng.getrandbits(32)))
    return cmds


def invalid_commands(rng: random.Random) -> list[tuple[int, int, int]]:
    cmds = []
    for qa, qw in itertools.product(BITS, BITS):
        f7 = M.funct7(qa, qw)
        for seg in range(M.segments(qa, qw), 8):          # segment >= R
            for _ in range(4):
                cmds.append(((f7 << 3) | seg, rng.getrandbits(32), rng.getrandbits(32)))
        for hi in range(1, 8):                             # reserved funct7[6:4]
            cmds.append(((((hi << 4) | f7) << 3) | rng.randrange(M.segments(qa, qw)),
                         0xFFFFFFFF, 0xFFFFFFFF))
    return cmds


async def start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.cmd_valid.value = 0
    dut.rsp_ready.value = 1
    dut.cmd_function_id.value = 0
    dut.cmd_inputs_0.value = 0
    dut.cmd_inputs_1.value = 0
    dut.reset.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.reset.value = 0
    await RisingEdge(dut.clk)


async def stream(dut, cmds, rng: random.Random, p_valid: float = 1.0,
                 p_ready: float = 1.0, max_cycles: int | None = None) -> dict:
    """Drive ``cmds`` through the CFU, check every response against the
    model, in order, exactly once each, and the handshake rules:
    cmd_ready == !rsp_valid || rsp_ready; a response not taken is held
    unchanged; nothing comes out that was not asked for."""
    pending: deque[int] = deque()
    i = ngot = cycles = stalls = 0
    cmd_up = False
    held = None                    # response value seen with rsp_ready low
    limit = max_cycles or (len(cmds) * 20 + 100)
    while ngot < len(cmds):
        cycles += 1
        assert cycles < limit, f"stuck: {ngot}/{len(cmds)} responses after {cycles} cycles"
        if not cmd_up and i < len(cmds) and rng.random() < p_valid:
            cmd_up = True
        if cmd_up:
            fid, a, w = cmds[i]
            dut.cmd_valid.value = 1
            dut.cmd_function_id.value = fid
            dut.cmd_inputs_0.value = a
            dut.cmd_inputs_1.value = w
        else:
            dut.cmd_valid.value = 0
            dut.cmd_function_id.value = rng.getrandbits(10)
            dut.cmd_inputs_0.value = rng.getrandbits(32)
            dut.cmd_inputs_1.value = rng.getrandbits(32)
        ready = rng.random() < p_ready
        dut.rsp_ready.value = int(ready)
        await ReadOnly()
        cmd_ready = bool(dut.cmd_ready.value)
        rsp_valid = bool(dut.rsp_valid.value)
        assert cmd_ready == ((not rsp_valid) or ready), "cmd_ready != !rsp_valid || rsp_ready"
        if rsp_valid:
            assert pending, "response without a command"
            out = dut.rsp_outputs_0.value.to_signed()
            if held is not None:
                assert out == held, "response changed while rsp_ready was low"
            if ready:
                want = pending.popleft()
                assert out == want, f"response {ngot}: got {out}, model {want}"
                ngot += 1
                held = None
            else:
                held = out
                stalls += 1
        else:
            assert held is None, "response dropped before rsp_ready"
        if cmd_up and cmd_ready:
            fid, a, w = cmds[i]
            pending.append(M.cfu(fid, a, w))
            i += 1
            cmd_up = False
            if i < len(cmds) and rng.random() < p_valid:
                cmd_up = True
        await RisingEdge(dut.clk)
    dut.cmd_valid.value = 0
    return {"cycles": cycles, "stalls": stalls}


@cocotb.test()
async def all_pairs_segments_back_to_back(dut):
    """All 16 pairs x every valid segment: edge and random words, one command
    per cycle (rsp_ready always high: full throughput, no bubbles)."""
    rng = random.Random(1)
    await start(dut)
    cmds = valid_commands(rng)
    res = await stream(dut, cmds, rng)
    # one command per cycle: n commands take n + 1 cycles (1-cycle latency)
    assert res["cycles"] == len(cmds) + 1, res
    dut._log.info("%d commands in %d cycles", len(cmds), res["cycles"])


@cocotb.test()
async def invalid_segments_and_reserved_bits_return_zero(dut):
    rng = random.Random(2)
    await start(dut)
    cmds = invalid_commands(rng)
    assert all(M.cfu(*c) == 0 for c in cmds)
    await stream(dut, cmds, rng)


@cocotb.test()
async def backpressure_and_gaps(dut):
    """Random cmd_valid gaps and rsp_ready back-pressure, all function ids."""
    rng = random.Random(3)
    await start(dut)
    cmds = [(rng.getrandbits(10) if rng.random() < 0.2 else
             (M.funct7(rng.choice(BITS), rng.choice(BITS)) << 3) | rng.randrange(8),
             rng.getrandbits(32), rng.getrandbits(32)) for _ in range(3000)]
    for p_valid, p_ready in ((1.0, 0.5), (0.5, 0.7), (0.8, 0.2), (0.3, 1.0)):
        res = await stream(dut, cmds[:750], rng, p_valid, p_ready)
        cmds = cmds[750:]
        if p_ready < 1.0:
            assert res["stalls"] > 0
    # the unit is idle again: nothing left over
    await ReadOnly()
    await RisingEdge(dut.clk)
    dut.rsp_ready.value = 1
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert not bool(dut.rsp_valid.value)


@cocotb.test()
async def reset_clears_pending_response(dut):
    rng = random.Random(4)
    await start(dut)
    dut.cmd_valid.value = 1
    dut.cmd_function_id.value = M.encode_function_id(8, 8, 0)
    dut.cmd_inputs_0.value = 0x01020304
    dut.cmd_inputs_1.value = 0x01010101
    dut.rsp_ready.value = 0
    await RisingEdge(dut.clk)
    dut.cmd_valid.value = 0
    await ReadOnly()
    assert bool(dut.rsp_valid.value) and dut.rsp_outputs_0.value.to_signed() == 10
    assert not bool(dut.cmd_ready.value)
    await RisingEdge(dut.clk)
    dut.reset.value = 1
    await RisingEdge(dut.clk)
    dut.reset.value = 0
    await ReadOnly()
    assert not bool(dut.rsp_valid.value) and bool(dut.cmd_ready.value)
    await RisingEdge(dut.clk)
    await stream(dut, valid_commands(rng)[:200], rng, 0.7, 0.7)
