"""Analytical cycle model of the BitFusion accelerator (target ``bitfusion-model``).

In the spirit of the published BitFusion simulator (Sharma et al., ISCA 2018):
cycles follow from the array, buffer and DRAM parameters and the compiler's
tiling, with compute-bound and memory-bound phases and double buffering, but
no RTL and no outputs.  The same model ranks the compiler's tiling candidates.

For one compiled GEMM (``Plan``): ``Tc = nt * st`` issue cycles per COMPUTE,
``kT`` COMPUTEs per output tile, DRAM beats ``BA``, ``BW``, ``BY`` per A, W and Y
tile image, latency ``L``, array depth ``R + C``:

- DMA: a load of ``B`` beats keeps the load engine ``B + L + 2`` cycles, a store
  ``B + 1``; both share one port of ``DMA_BITS`` per cycle, and the store of a
  tile starts together with the refill its last COMPUTE released, so round
  robin delays that load by ``CONTENTION * min(BY, B)`` (``CONTENTION`` = 0.75,
  calibrated once against the RTL);
- per COMPUTE, with ``D`` the load time that streams with it: double-buffered
  ``p = max(Tc, D, (D + Tc + R + C + 1) / 2)`` (the third term: a slot is
  refilled only after the COMPUTE that read it drained out of the array), a
  single-slot ring exposes its load: ``p = max(D, Tc + D_exposed + R + C + 2)``;
- per output tile: ``T = max(kT*p, store, port beats, (R + C + 3 + store + span)/2)``
  with two OBUF slots (the store overlaps the next tile), ``span + R + C + 3 +
  store`` with one;
- an operand hoisted out of the inner loops (loop orders A and B) reloads
  once per outer iteration: a bubble when it has a single slot (wait for the
  drain, then load) or when its load does not fit the slack of the streamed
  loads;
- prologue: the instructions before the first LD and the first loads;
  epilogue: draining the array and storing the last output tile.

Packed outputs (``Plan.out``): ``BY`` is the exact number of beats the STPs
touch (``compiler.store_beats``: a row of codes narrower than a beat still
takes one), the output tile's store starts ``OU_LATENCY`` cycles after its
last element left the array (the output unit's pipeline), and the PBUF load
of each column block (``3 C`` words) streams with the weights (orders S and A)
or is hoisted with them (order B).  Odd widths are priced as their containers
(``Geometry`` uses ``eff_bits``).

``predict`` returns the prediction and its breakdown.  ``bitfusion-model``
reports these predictions as if measured (see docs/bitfusion.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .compiler import ArrayConfig, Plan, _strides, dram_bytes, store_beats


@dataclass
class Prediction:
    cycles: int
    compute_cycles: int       # cycles the array issues (n_iter * Tc)
    period: float             # steady-state cycles per COMPUTE
    bound: str                # 'compute' or 'memory'
    dram_bytes: int
    breakdown: dict = field(default_factory=dict)

    @property
    def utilisation(self) -> float:
        return self.compute_cycles / self.cycles if self.cycles else 0.0


# cycles from the fin event of a tile to its store's first beat (queue, start, request register)
STORE_START = 3
# cycles from an element leaving the array to its code in OBUF (bot register, 2 output-unit stages)
OU_LATENCY = 3


def _prefix(plan: Plan) -> int:
    """Instructions the sequencer executes before it dispatches the first LD (as ``program``
    lays them out: SETUP, [OSETUP, YSHAPE], CSHAPE, the non-zero STRIDEs, then the loops
    that enclose the first LD)."""
    loops = {"S": 3 if plan.out is not None else 4, "A": 2, "B": 2}[plan.order]
    return 2 + (2 if plan.out is not None else 0) + sum(1 for v in _strides(plan).values() if v) + loops


def _interleave(loads: list[float], store: float, start: float, lat: int) -> float:
    """Store beats that go out while one of `loads` (back to back, each its beats + lat + 2
    cycles) is requesting, the store starting `start` cycles after the first load: round
    robin gives each of them every other cycle, so each such beat delays both by one."""
    t, left, d = 0.0, float(store), 0.0
    for b in loads:
        if left <= 0:
            break
        alone = min(b, max(0.0, start - t))            # requests before the store starts
        both = min(b - alone, left)                    # interleaved: one beat each per 2 cycles
        d += both
        left -= both
        t += alone + 2 * both + (b - alone - both)     # end of this load's requests
        left -= min(left, max(0.0, lat + 2 - max(0.0, start - t)))   # the store alone while the load waits
        t += lat + 2
    return d


def predict(plan: Plan) -> Prediction:
    cfg: ArrayConfig = plan.cfg
    g = plan.gemm
    lat = cfg.dram_latency
    nch = cfg.pipeline
    wpb = cfg.wpb
    G, nT, mT, kT = g.groups, plan.n_tiles, plan.m_tiles, plan.k_tiles
    Tc = plan.nt * plan.st
    n_iter = G * nT * mT * kT
    n_out = G * nT * mT
    BA, BW = plan.la / wpb, plan.lw / wpb
    BY = store_beats(plan) / n_out      # layouts align Y to a beat
    BP = plan.lp / wpb if plan.out is not None else 0.0

    def dld(b: float) -> float:
        return b + lat + 2

    # loads that stream with every COMPUTE: D = load-DMA time, beats = port time, and
    # `exposed` = the part that cannot be prefetched (a single-slot ring is refilled only
    # after the COMPUTE that read it has drained, and the load queue is in order);
    # `seq` = the beats of the loads a tile's first COMPUTE waits for, in queue order
    hoist = None
    # the PBUF load of a column block: once per output tile (S, A), with W (B)
    dp = dld(BP) if BP else 0.0
    pre = [BP] if BP else []
    if plan.order == "S":
        D, beats = dld(BA) + dld(BW) + dp / kT, BA + BW + BP / kT
        exposed = D if plan.islots == 1 else dld(BW) if plan.wslots == 1 else 0.0
        first = dld(BA) + dld(BW) + dp
        seq = pre + [BA, BW]
    elif plan.order == "A":
        D, beats = dld(BW) + dp / kT, BW + BP / kT
        exposed = D if plan.wslots == 1 else 0.0
        first = dld(BA) + dld(BW) + dp
        hoist = (dld(BA), BA, mT * kT, plan.islots, G * nT)
        seq = pre + [BW]
    else:
        D, beats = dld(BA), BA
        exposed = D if plan.islots == 1 else 0.0
        first = dld(BW) + dp + dld(BA)
        hoist = (dld(BW) + dp, BW + BP, nT * kT, plan.wslots, G * mT)
        seq = [BA]
    if hoist is not None and hoist[2] == 1:
        # "hoisted" over a single COMPUTE: it streams like the other operand
        D += hoist[0]
        beats += hoist[1]
        if hoist[3] == 1:
            exposed = D
        seq = [hoist[1]] + seq
        hoist = None
    if hoist is not None and hoist[4] > 1:
        beats += hoist[1] / hoist[2]   # the hoisted operand's next tile also uses the port
    nch_s = nch + OU_LATENCY           # last element issued .. its tile's store may start
    S = BY + 1
    # Where the store of a tile meets the loads: when the loads run back to back (the load
    # engine sets the period), it starts Tc + R + C + 6 cycles into the next tile's first loads;
    # otherwise the load it meets is the one waiting for the slot its tile's last COMPUTE frees
    # at the drain (R + C + 1 cycles after that COMPUTE's last issue; a single-slot ring at
    # R + C + 2), so they start nearly together, and the last store meets none.  Round robin
    # delays both by the beats they interleave.
    stream = [b for b in seq if b != BP]

    def periods(store: bool, d: float, port: bool = True) -> tuple[float, float, float]:
        """(per COMPUTE, first .. last COMPUTE end of a tile, per output tile) with store
        contention d; `store`: a store of every tile must fit the period (steady state), else
        only its interleaving with the loads counts (the first period: tile 0's store may end
        after it); `port`: include the DRAM port's beats."""
        Dd, ex = D + d / kT, (exposed + d / kT) if exposed else 0.0
        # per COMPUTE: compute-bound, load-bound, or refilling a slot only after the
        # COMPUTE that read it has drained out of the array (double buffering)
        pc = max(Tc, Dd, (Dd + Tc + nch + 1) / 2) if not ex else max(Dd, Tc + ex + nch + 2)
        sp = Tc + (kT - 1) * pc
        beats_t = (kT * beats + (BY if store else d)) if port else 0.0
        if plan.oslots == 1:           # the next tile needs the slot back: wait for the store
            return pc, sp, max(kT * pc, beats_t, sp + nch_s + 3 + S + d)
        if not store:
            return pc, sp, max(kT * pc, beats_t)
        return pc, sp, max(kT * pc, S, beats_t, (nch_s + 3 + S + d + sp) / 2)

    delay = 0.0
    if n_out > 1 and exposed:
        delay = _interleave(seq, BY, nch_s + STORE_START - nch - 2, lat)
    elif n_out > 1:
        delay = _interleave(seq + stream * (kT - 1), BY, Tc + nch_s + STORE_START, lat)
        if kT * D + delay < periods(True, delay, port=False)[2] - 1e-6:     # the loads wait for slots
            delay = _interleave(seq if kT == 1 else stream, BY, nch_s + STORE_START - nch - 1, lat)
            if kT == 1:
                delay *= (n_out - 2) / (n_out - 1)   # the last store has no COMPUTE two ahead to meet

    p, span, T = periods(True, delay)
    _, span1, T1 = periods(False, delay)   # tile 0 -> 1: no earlier store to finish
    gap = T - span                     # idle cycles of the array between two output tiles
    bubbles = 0.0
    if hoist is not None:
        if hoist[3] == 1:
            # a single-slot hoisted operand reloads only after its last reader drained,
            # sharing the port with the store that starts at the same moment
            bub_h = max(0.0, nch + 2 + hoist[0] + _interleave([hoist[1]], BY, nch_s + STORE_START - nch - 2, lat)
                        + D - gap)
        else:
            # double-buffered: its load sits in the load queue between two streamed loads
            bub_h = max(0.0, hoist[0] - max(0.0, p - D))
        bubbles += (hoist[4] - 1) * bub_h
    prologue = _prefix(plan) + 2 + first
    epilogue = nch_s + 2 + S + 2
    if n_out == 1:
        steady = span1
    else:
        # after a short first period the stores may lag behind the tiles until the end
        lag = max(0.0, S + delay - T1 - (n_out - 2) * max(0.0, T - S - delay))
        steady = span1 + T1 + (n_out - 2) * T + lag
    total = prologue + steady + bubbles + epilogue
    bound = "compute" if T <= kT * Tc * 1.02 else "memory"
    return Prediction(cycles=int(round(total)), compute_cycles=n_iter * Tc, period=T / kT, bound=bound,
                      dram_bytes=dram_bytes(plan),
                      breakdown={"prologue": prologue, "steady": steady, "bubbles": bubbles, "contention": delay,
                                 "epilogue": epilogue, "per_tile": T, "per_compute": p, "issue_per_compute": Tc,
                                 "n_compute": n_iter, "n_tiles_out": n_out})
