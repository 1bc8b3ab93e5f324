"""cocotb tests of the BitFusion output unit (``bf_out_unit`` in rtl_sims/bitfusion/rtl/bf_datapath.v).

Run by tests/test_bitfusion_cocotb.py; not a pytest module.  One value per
cycle, back to back, through the two pipeline stages; every code that comes
out is checked against the NumPy reference of the numeric spec
(``kernels.reference.requant`` / ``maxpool`` / ``avgpool``; unsigned outputs as
the spec defines them, clamp to [0, 2^b - 1]) and against the value model
(rtl_sims/bitfusion/outunit.py).  Covered: out_bits 0 (int32) and 1..8,
signed and unsigned, ReLU, rounding edges (exact halves, both signs, every
shift 1..62), saturation at both ends, the int64 extremes of (acc + bias) *
mult, padding columns (code 0), max and avg pooling windows of 1 to 16 rows.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kernels import reference  # noqa: E402
from rtl_sims.bitfusion import outunit as ou  # noqa: E402

POOL = {"none": 0, "max": 1, "avg": 2}


def spec_requant(acc: int, bias: int, mult: int, shift: int, relu: bool, b: int, signed: bool) -> int:
    """One value through kernels.reference (the numeric spec)."""
    if b == 0:
        return ((acc + bias + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    if signed or b == 1:
        return int(reference.requant(np.array([[acc]]), [bias], [mult], [shift], relu, b)[0, 0])
    # unsigned b bits == signed b+1 bits after ReLU (clamp to [0, 2^b - 1]); int8 wraps at 8 bits
    return int(reference.requant(np.array([[acc]]), [bias], [mult], [shift], True, b + 1)[0, 0]) % 256


def spec_pool(vals: list[int], kind: str, signed: bool) -> int:
    """A window of ks*ks rows == one ks x ks pooling window of the reference (NCHW, int8 values)."""
    ks = int(round(len(vals) ** 0.5))
    x = np.array(vals, dtype=np.int64).reshape(1, 1, ks, ks)
    v = int((reference.maxpool if kind == "max" else reference.avgpool)(x, ks, ks)[0, 0, 0, 0])
    return v if signed else v % 256


async def start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("in_v", "in_acc", "in_pf", "in_pl", "bias", "mult", "shift", "chan_ok", "in_tag", "relu", "pool",
                 "recip_m", "recip_k"):
        getattr(dut, name).value = 0
    dut.out_bits.value = 8
    dut.out_signed.value = 1
    dut.pool_n.value = 1
    await RisingEdge(dut.clk)


async def set_mode(dut, b: int, signed: bool, relu: bool, pool: str = "none", n: int = 1) -> None:
    await FallingEdge(dut.clk)
    dut.out_bits.value = b
    dut.out_signed.value = int(signed)
    dut.relu.value = int(relu)
    dut.pool.value = POOL[pool]
    dut.pool_n.value = n
    m, k = ou.avg_recip(n, ou.container_bits(b)) if pool == "avg" else (0, 0)
    dut.recip_m.value = m
    dut.recip_k.value = k


async def stream(dut, items: list[dict]) -> list[tuple[int, int]]:
    """Drive one item per cycle; return (code, tag) of every out_v, in order."""
    got: list[tuple[int, int]] = []

    async def collect(cycles: int) -> None:
        for _ in range(cycles):
            await RisingEdge(dut.clk)
            await ReadOnly()
            if int(dut.out_v.value):
                got.append((int(dut.out_code.value), int(dut.out_tag.value)))

    mon = cocotb.start_soon(collect(len(items) + 4))
    for it in items:
        await FallingEdge(dut.clk)
        dut.in_v.value = 1
        dut.in_acc.value = it["acc"] & 0xFFFFFFFF
        dut.bias.value = it["bias"] & 0xFFFFFFFF
        dut.mult.value = it["mult"]
        dut.shift.value = it["shift"]
        dut.chan_ok.value = int(it.get("ok", True))
        dut.in_pf.value = int(it.get("pf", True))
        dut.in_pl.value = int(it.get("pl", True))
        dut.in_tag.value = it.get("tag", 0)
    await FallingEdge(dut.clk)
    dut.in_v.value = 0
    await mon
    return got


def i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def edge_items(rng: random.Random, b: int) -> list[dict]:
    """Rounding edges, saturation and extremes for out_bits b."""
    items = []
    for s in (1, 2, 3, 7, 15, 16, 30, 31, 32, 40, 61, 62):
        h = 1 << (s - 1)
        for t in (h, h - 1, h + 1, -h, -h - 1, -h + 1, 3 * h, -3 * h, 0, 1, -1):
            if -(1 << 31) <= t < 1 << 31:
                items.append({"acc": t, "bias": 0, "mult": 1, "shift": s})
    hi = (1 << 31) - 1
    for acc, bias in ((hi, hi), (-(1 << 31), -(1 << 31)), (hi, -(1 << 31)), (0, 0), (-1, 0), (1, -1)):
        for mult in (1, (1 << 30), hi):
            items.append({"acc": acc, "bias": bias, "mult": mult, "shift": rng.choice((1, 31, 62))})
    # saturation: values just inside / at / beyond the b-bit range after a plain shift of 8
    for v in (-(1 << 9), -129, -128, -5, -2, -1, 0, 1, 2, 3, 4, 7, 8, 15, 16, 127, 128, 255, 256, 1 << 12):
        items.append({"acc": v << 8, "bias": 0, "mult": 1, "shift": 8})
        items.append({"acc": (v << 8) + 128, "bias": -1, "mult": 1, "shift": 8})
    for _ in range(150):
        items.append({"acc": rng.getrandbits(32) - (1 << 31), "bias": rng.getrandbits(32) - (1 << 31),
                      "mult": rng.randrange(1, 1 << 31), "shift": rng.randrange(1, 63)})
        items.append({"acc": rng.randrange(-(1 << 20), 1 << 20), "bias": rng.randrange(-4096, 4096),
                      "mult": rng.randrange(1 << 30, 1 << 31), "shift": rng.randrange(28, 44)})
    for i, it in enumerate(items):
        it["tag"] = i & 0xFF
    return items


@cocotb.test()
async def requant_every_width_and_sign(dut):
    """out_bits 0..8 x signed/unsigned x ReLU: codes == the numeric spec, rounding and saturation edges."""
    rng = random.Random(31)
    await start(dut)
    total = 0
    for b in range(0, 9):
        for signed in ((True,) if b <= 1 else (True, False)):
            for relu in ((False,) if b == 0 else (False, True)):
                await set_mode(dut, b, signed, relu)
                items = edge_items(rng, b)
                for it in items[::7]:
                    it["ok"] = False
                got = await stream(dut, items)
                assert len(got) == len(items), f"{b} bits: {len(got)} outputs for {len(items)} inputs"
                e = ou.container_bits(b)
                for it, (code, tag) in zip(items, got, strict=True):
                    assert tag == it["tag"]
                    if not it.get("ok", True):
                        assert code == 0, f"padding column gave code {code}"
                        continue
                    want = spec_requant(it["acc"], it["bias"], it["mult"], it["shift"], relu, b, signed)
                    model = int(ou.requant_values(it["acc"], it["bias"], it["mult"], it["shift"], relu, b, signed))
                    assert model == want, (b, signed, relu, it, model, want)
                    val = int(ou.from_codes(code, e, signed or b <= 1)) if b else i32(code)
                    assert val == want, (f"out_bits {b} signed {signed} relu {relu} acc {it['acc']} bias {it['bias']} "
                                         f"mult {it['mult']} shift {it['shift']}: got {val}, spec {want}")
                    total += 1
    dut._log.info("%d requantised values checked", total)
    assert total > 9 * 300


@cocotb.test()
async def pooling_windows(dut):
    """max / avg over windows of 1, 4, 9, 16 rows (first / last flags), every width, both signs: == the spec."""
    rng = random.Random(32)
    await start(dut)
    total = 0
    for b in range(1, 9):
        for signed in ((True,) if b == 1 else (True, False)):
            for kind in (("max",) if b == 1 else ("max", "avg")):
                for n in (1, 4, 9, 16):
                    relu = rng.random() < 0.3
                    await set_mode(dut, b, signed, relu, kind, n)
                    items, windows = [], []
                    for w in range(12):
                        win = []
                        for i in range(n):
                            # small accumulators, shift 4: values sweep the whole range, saturate at both ends
                            acc = rng.randrange(-(1 << (b + 5)), 1 << (b + 5))
                            if w == 0:
                                acc = -(1 << 20)        # all saturated low
                            elif w == 1:
                                acc = 1 << 20           # all saturated high
                            it = {"acc": acc, "bias": rng.randrange(-8, 8), "mult": 1, "shift": 4, "pf": i == 0,
                                  "pl": i == n - 1, "tag": w}
                            items.append(it)
                            win.append(spec_requant(it["acc"], it["bias"], 1, 4, relu, b, signed))
                        windows.append(win)
                    got = await stream(dut, items)
                    assert len(got) == len(windows)
                    e = ou.container_bits(b)
                    for w, (win, (code, tag)) in enumerate(zip(windows, got, strict=True)):
                        want = spec_pool(win, kind, signed or b == 1)
                        model = int(ou.pool_values(np.array(win).reshape(-1, 1), kind, n, e)[0, 0])
                        assert model % (1 << e) == want % (1 << e), (b, kind, n, win, model, want)
                        assert tag == w and code == want % (1 << e), (f"{kind} pool of {n} at {b} bits signed "
                                                                     f"{signed}: {win} -> code {code}, spec {want}")
                        total += 1
    dut._log.info("%d pooled windows checked", total)
