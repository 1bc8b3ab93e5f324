"""cocotb tests of one BitFusion Fusion Unit (rtl_sims/bitfusion/rtl/bf_fusion_unit.v,
top ``bf_fu_wrap`` = fusion decoder + unit) against rtl_sims/bitfusion/fu_model.py.

Run by tests/test_bitfusion_cocotb.py; not a pytest module.  Every precision
mode (qa, qw in {2,4,8}: one 8x8, two 8x4/4x8, four 4x4/8x2/2x8, eight 4x2/2x4,
sixteen 2x2 products per cycle), signed and unsigned operands (all four
combinations), edge words crossed with each other and random words, one per
cycle; cycles with ``en`` low must hold the output.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtl_sims.bitfusion import fu_model as M  # noqa: E402

RANDOM_PER_MODE = int(os.environ.get("MICO_BF_RANDOM", "200"))


async def start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.en.value = 0
    dut.a.value = 0
    dut.w.value = 0
    dut.psum_in.value = 0
    dut.qa_code.value = 2
    dut.qw_code.value = 2
    dut.a_signed.value = 1
    dut.w_signed.value = 1
    await RisingEdge(dut.clk)


def vectors(rng: random.Random, qa: int, qw: int, asg: bool, wsg: bool) -> list[tuple[int, int, int, bool]]:
    """(a, w, psum_in, en): edge words crossed, then random words; some en=0 cycles."""
    P = M.products(qa, qw)
    out = []
    for a, w in itertools.product(M.edge_words(qa, P, asg), M.edge_words(qw, P, wsg)):
        out.append((a, w, rng.choice((0, 1, -1, 2**31 - 1, -(2**31), rng.getrandbits(32) - 2**31)), True))
    for _ in range(RANDOM_PER_MODE):
        # random full words: bits above P*q must be ignored
        out.append((rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32) - 2**31, rng.random() > 0.1))
    return out


async def run_stream(dut, qa: int, qw: int, asg: bool, wsg: bool, vecs) -> int:
    await FallingEdge(dut.clk)
    dut.qa_code.value = M.CODE[qa]
    dut.qw_code.value = M.CODE[qw]
    dut.a_signed.value = int(asg)
    dut.w_signed.value = int(wsg)
    held = None
    checked = 0
    for a, w, pin, en in vecs:
        await FallingEdge(dut.clk)
        dut.a.value = a
        dut.w.value = w
        dut.psum_in.value = pin & 0xFFFFFFFF
        dut.en.value = int(en)
        await RisingEdge(dut.clk)
        await ReadOnly()
        got = dut.psum_out.value.to_signed()
        if en:
            want = M.psum_out(pin, a, w, qa, qw, asg, wsg)
            assert got == want, (f"mode {qa}x{qw} signed ({asg},{wsg}): a={a:08x} w={w:08x} psum_in={pin}: "
                                 f"got {got}, model {want}")
            held = got
            checked += 1
        elif held is not None:
            assert got == held, f"mode {qa}x{qw}: output changed with en low"
    return checked


@cocotb.test()
async def every_mode_signed_and_unsigned(dut):
    """All 9 precision modes x 4 signedness combinations, edge and random words."""
    rng = random.Random(11)
    await start(dut)
    total = 0
    for (qa, qw), (asg, wsg) in itertools.product(M.MODES, itertools.product((False, True), repeat=2)):
        total += await run_stream(dut, qa, qw, asg, wsg, vectors(rng, qa, qw, asg, wsg))
    dut._log.info("%d vectors checked", total)
    assert total > 9 * 4 * 50


@cocotb.test()
async def mode_switch_every_cycle(dut):
    """The fusion configuration is combinational: changing the mode between two
    back-to-back vectors must change the next product immediately."""
    rng = random.Random(12)
    await start(dut)
    modes = [(qa, qw, asg, wsg) for (qa, qw), asg, wsg in itertools.product(M.MODES, (False, True), (False, True))]
    for _ in range(400):
        qa, qw, asg, wsg = rng.choice(modes)
        a, w, pin = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(32) - 2**31
        await FallingEdge(dut.clk)
        dut.qa_code.value = M.CODE[qa]
        dut.qw_code.value = M.CODE[qw]
        dut.a_signed.value = int(asg)
        dut.w_signed.value = int(wsg)
        dut.a.value = a
        dut.w.value = w
        dut.psum_in.value = pin & 0xFFFFFFFF
        dut.en.value = 1
        await RisingEdge(dut.clk)
        await ReadOnly()
        assert dut.psum_out.value.to_signed() == M.psum_out(pin, a, w, qa, qw, asg, wsg)
