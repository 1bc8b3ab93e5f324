"""cocotb tests of the whole BitFusion accelerator (``bf_top``, built with
``BF_FU_INSTANCES``: the array made of bf_fusion_unit instances) on small GEMMs.

Run by tests/test_bitfusion_cocotb.py with a small array (parameters in the
environment).  A Python DRAM model serves the DMA port (one beat per cycle,
fixed latency, byte strobes on writes); programs and DRAM images come from
the compiler (rtl_sims/bitfusion/compiler.py, layer.py), outputs are checked
against the NumPy reference for every loop order and ring configuration, all
precisions; layers with the output unit (requantised, pooled, packed rows)
for odd widths and unsigned values too.
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections import deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kernels import reference  # noqa: E402
from rtl_sims.bitfusion import layer as L  # noqa: E402
from rtl_sims.bitfusion.compiler import ArrayConfig, candidates, compile_kernel, kernel_gemm  # noqa: E402

CFG = ArrayConfig(**json.loads(os.environ["MICO_BF_CFG"]))
WPB = CFG.wpb


async def reset(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.start.value = 0
    dut.imem_we.value = 0
    dut.imem_addr.value = 0
    dut.imem_wdata.value = 0
    dut.dram_req_ready.value = 1
    dut.dram_rsp_valid.value = 0
    dut.dram_rsp_data.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_program(dut, program: list[int], dram: np.ndarray, latency: int, max_cycles: int = 200_000) -> int:
    """Load `program`, start, serve the DRAM port until done; returns the RTL's cycle count."""
    for i, ins in enumerate(program):
        await FallingEdge(dut.clk)
        dut.imem_we.value = 1
        dut.imem_addr.value = i
        dut.imem_wdata.value = ins
    await FallingEdge(dut.clk)
    dut.imem_we.value = 0
    dut.start.value = 1
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.start.value = 0
    queue: deque = deque()
    cyc = 0
    while True:
        # mid-cycle: registered outputs are stable; drive this cycle's response
        if not int(dut.running.value):
            break
        if queue and queue[0][0] <= cyc:
            _, beat = queue.popleft()
            val = 0
            for j in range(WPB):
                val |= int(dram[beat * WPB + j]) << (32 * j)
            dut.dram_rsp_valid.value = 1
            dut.dram_rsp_data.value = val
        else:
            dut.dram_rsp_valid.value = 0
        req = int(dut.dram_req_valid.value)
        if req:
            we = int(dut.dram_req_we.value)
            beat = int(dut.dram_req_addr.value)
            wdata = int(dut.dram_req_wdata.value) if we else 0
            strb = int(dut.dram_req_wstrb.value) if we else 0
        await RisingEdge(dut.clk)
        if req:
            if we:
                for j in range(WPB):
                    keep = sum(0xFF << (8 * i) for i in range(4) if not strb >> (4 * j + i) & 1)
                    new = (wdata >> (32 * j)) & 0xFFFFFFFF
                    dram[beat * WPB + j] = (int(dram[beat * WPB + j]) & keep) | (new & ~keep & 0xFFFFFFFF)
            else:
                queue.append((cyc + latency, beat))
        cyc += 1
        assert cyc < max_cycles, "no HALT"
        await FallingEdge(dut.clk)
    dut.dram_rsp_valid.value = 0
    assert int(dut.error.value) == 0, f"accelerator error {int(dut.error.value)}"
    assert int(dut.done.value) == 1
    return int(dut.cycles.value)


def diverse_plans(op, shape, qa, qw, limit: int = 4):
    gemm, _ = kernel_gemm(op, shape, qa, qw)
    seen = {}
    for p in candidates(CFG, gemm):
        seen.setdefault((p.order, p.islots, p.wslots, p.oslots, p.k_tiles > 1), p)
    return list(seen.values())[:limit]


async def check_kernel(dut, op, shape, qa, qw, seed, plans_per_kernel=3) -> int:
    a, w = reference.random_inputs(op, shape, qa, qw, seed)
    want = reference.expected_output(op, shape, qa, qw, seed)
    n = 0
    for plan in diverse_plans(op, shape, qa, qw, plans_per_kernel):
        c = compile_kernel(CFG, op, shape, qa, qw, a, w, plan=plan)
        lay = c.layout
        dram = np.full(lay.end + WPB, 0xDEADBEEF, dtype=np.uint64)
        dram[lay.a_base:lay.a_base + lay.a_words] = c.a_img
        dram[lay.w_base:lay.w_base + lay.w_words] = c.w_img
        cycles = await run_program(dut, c.program, dram, CFG.dram_latency)
        y = c.outputs(dram[lay.y_base:lay.y_base + lay.y_words].astype(np.uint32))
        assert np.array_equal(y, want), f"{op} {shape} {qa}x{qw} plan {plan.describe()}: outputs differ"
        assert cycles > plan.nt * plan.st
        n += 1
    return n


@cocotb.test()
async def small_gemms_every_precision(dut):
    """matmul on every (qa, qw) pair, several tilings each (loop orders, 1/2-slot rings, k tiles)."""
    await reset(dut)
    rng = random.Random(21)
    total = 0
    pairs = [(a, w) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8)]
    for qa, qw in pairs:
        shape = (rng.randint(1, 9), rng.randint(1, 2 * CFG.cols + 3), rng.randint(1, 90))
        total += await check_kernel(dut, "matmul", shape, qa, qw, rng.randint(1, 1 << 30))
    dut._log.info("%d programs checked", total)


@cocotb.test()
async def gemm_tiles_and_conv(dut):
    """Several row / column / reduction tiles, and conv2d through im2col (groups, stride, padding)."""
    await reset(dut)
    rng = random.Random(22)
    cases = [("matmul", (2 * CFG.ob_depth // 2 + 3, CFG.cols + 1, 3 * CFG.rows * 16 + 5), 8, 8),
             ("matmul", (5, 3 * CFG.cols, 700), 2, 2),
             ("conv2d", (1, 3, 6, 6, 4, 3, 1, 1, 1), 4, 4),
             ("conv2d", (1, 4, 5, 5, 4, 3, 2, 0, 4), 8, 2),
             ("conv2d", (2, 6, 4, 4, 6, 1, 1, 0, 2), 1, 4)]
    total = 0
    for op, shape, qa, qw in cases:
        total += await check_kernel(dut, op, shape, qa, qw, rng.randint(1, 1 << 30), plans_per_kernel=2)
    dut._log.info("%d programs checked", total)


def _vals(rng: np.random.Generator, b: int, shape, signed: bool = True) -> np.ndarray:
    lo, hi = L.value_range(b, signed)
    if b == 1:
        return rng.choice(np.array([-1, 1]), size=shape)
    return rng.integers(lo, hi + 1, size=shape)


@cocotb.test()
async def packed_layers(dut):
    """Layers with the output unit: requantised, ReLU, pooled, packed rows in DRAM (byte strobes);
    widths 1..8 (odd ones on their container's bricks), unsigned in / out, groups, several tilings."""
    await reset(dut)
    rng = np.random.default_rng(23)
    cases = [("matmul", (6, 9, 40), 8, 8, 8, True, None), ("matmul", (5, 7, 70), 3, 5, 3, False, None),
             ("matmul", (9, 4, 33), 2, 2, 1, True, None), ("matmul", (4, 6, 20), 7, 1, 0, True, None),
             ("conv2d", (1, 3, 5, 5, 5, 3, 1, 1, 1), 4, 4, 2, False, ("max", 2, 2)),
             ("conv2d", (1, 4, 4, 5, 4, 3, 1, 1, 2), 6, 2, 5, True, ("avg", 2, 1)),
             ("conv2d", (1, 2, 4, 4, 8, 1, 1, 0, 1), 1, 8, 4, True, None)]
    total = 0
    for op, shape, qa, qw, ob, osg, pool in cases:
        asg = bool(rng.integers(0, 2)) if qa >= 2 else True
        if op == "matmul":
            x, w, nch = _vals(rng, qa, (shape[0], shape[2]), asg), _vals(rng, qw, (shape[1], shape[2])), shape[1]
        else:
            x, nch = _vals(rng, qa, shape[:4], asg), shape[4]
            w = _vals(rng, qw, (shape[4], shape[1] // shape[8], shape[5], shape[5]))
        bias = rng.integers(-200, 200, nch)
        mult = rng.integers(1 << 30, 1 << 31, nch)
        shift = rng.integers(30, 37, nch)
        relu = ob > 0 and bool(rng.integers(0, 2))
        want = L.reference_output(op, shape, x, w, bias, mult, shift, relu, ob, osg, pool)
        first = L.compile_layer(CFG, op, shape, qa, qw, w, bias, mult, shift, relu, ob, osg, pool, 0, a_signed=asg)
        gemm = first.plan.gemm
        plans = {}
        for p in candidates(CFG, gemm, first.plan.out, first.plan.rows_a):
            plans.setdefault((p.order, p.oslots, p.k_tiles > 1), p)
        for plan in list(plans.values())[:3]:
            lp = L.compile_layer(CFG, op, shape, qa, qw, w, bias, mult, shift, relu, ob, osg, pool, 0,
                                 a_signed=asg, plan=plan)
            lay = lp.layout
            dram = np.full(lay.end + 2 * WPB, 0xDEADBEEF, dtype=np.uint64)
            a_img = lp.input_image(x)
            dram[lay.a_base:lay.a_base + a_img.size] = a_img
            dram[lay.w_base:lay.w_base + lp.w_img.size] = lp.w_img
            dram[lay.p_base:lay.p_base + lp.p_img.size] = lp.p_img
            await run_program(dut, lp.program, dram, CFG.dram_latency)
            got = lp.outputs(dram[lay.y_base:lay.y_base + lay.y_words].astype(np.uint32))
            assert np.array_equal(got, want), f"{op} {shape} {qa}x{qw} -> {ob} bits, plan {plan.describe()}"
            total += 1
    dut._log.info("%d packed layers checked", total)
    assert total >= 10
