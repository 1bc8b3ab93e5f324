"""Turning kernel runs into Measurements: statistics and verification.

Deterministic targets (simulators) run once plus one repeat that must be
identical.  Noisy targets (host, boards) get a warm-up, then batches of
repeats sized to ~50 ms until the relative IQR is under a bound or a time
budget is spent.  Every result's output checksum is compared with the NumPy
reference computed from the same seed.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CrashError, MeasureError, MicoError, MismatchError, UnsupportedError
from .spec import KernelSpec
from .store import Measurement
from .target import Session, Target


@dataclass
class StatsPolicy:
    rel_iqr: float = 0.05        # stop when IQR/median is below this ...
    min_repeats: int = 10        # ... and at least this many repeats were taken
    max_repeats: int = 1000
    budget_s: float = 2.0        # wall-time budget per spec for the adaptive loop
    batch_s: float = 0.05        # target duration of one RUN_KERNEL batch
    warmup: int = 2
    fixed_repeats: int | None = None   # exactly this many (no adaptation)


def spec_seed(spec: KernelSpec) -> int:
    """Deterministic per-spec seed: re-measuring a spec uses identical inputs
    (kernel-mode seeds are those of the stores written before layer mode existed)."""
    key = spec.key()[:4] if spec.mode == "kernel" else spec.key()
    return zlib.crc32(repr(key).encode()) or 1


def summarize(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=np.float64)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(med), float(q3 - q1), float(a.min())


def expected_checksum(spec: KernelSpec, seed: int) -> int:
    from kernels import reference

    check_reference(spec)
    return int(reference.expected_checksum(spec.op, spec.shape, spec.qa, spec.qw, seed))


def check_reference(spec: KernelSpec) -> None:
    """Refuse, before the device spends time on it, a spec whose output the
    host cannot check (the reference would need too much memory)."""
    from kernels import reference

    try:
        reference.check_budget(spec.op, spec.shape)
    except reference.ReferenceTooLarge as e:
        raise UnsupportedError(str(e)) from None


def measure(session: Session, spec: KernelSpec, fingerprint: str, deterministic: bool,
            policy: StatsPolicy | None = None, timeout: float | None = None,
            verify: bool = True, target: "Target | None" = None) -> Measurement:
    """Measure one spec; MeasureErrors propagate (the caller records them).
    Layer-mode specs need the ``target`` (its model toolchain and caches)."""
    if spec.mode == "layer":
        if target is None:
            raise UnsupportedError("a layer-mode measurement needs its target (model toolchain and caches)")
        return measure_layer(session, target, spec, fingerprint, deterministic, policy, timeout)
    policy = policy or StatsPolicy()
    if verify:
        check_reference(spec)
    seed = spec_seed(spec)
    t0 = time.monotonic()
    retries0 = session.link_stats.retries
    reconnects0 = session.link_stats.reconnects
    values: list[int] = []
    checksums: set[int] = set()
    max_batch = max(1, min(policy.max_repeats, (session.hello.max_payload - 64) // 8, 0xFFFF))
    if deterministic:
        run = session.run_kernel(spec, seed, 0, 2, timeout)
        values = run.values
        checksums.add(run.checksum)
        if values[0] != values[1]:
            raise MismatchError(f"non-deterministic timing on a simulator: {values[0]} vs {values[1]}")
    elif policy.fixed_repeats:
        left = policy.fixed_repeats
        warm = policy.warmup
        while left > 0:
            n = min(left, max_batch)
            run = session.run_kernel(spec, seed, warm, n, timeout)
            warm = 0
            values += run.values
            checksums.add(run.checksum)
            left -= n
    else:
        run = session.run_kernel(spec, seed, policy.warmup, 3, timeout)
        values += run.values
        checksums.add(run.checksum)
        while True:
            med, iqr, _ = summarize(values)
            enough = len(values) >= policy.min_repeats
            if enough and med > 0 and iqr / med <= policy.rel_iqr:
                break
            if len(values) >= policy.max_repeats or (enough and time.monotonic() - t0 > policy.budget_s):
                break
            per = max(med, 1.0) / (1e9 if session.hello.timer_unit == "ns" else session.hello.timer_hz or 1e8)
            n = int(min(max_batch, policy.max_repeats - len(values), max(3, policy.batch_s / max(per, 1e-9))))
            run = session.run_kernel(spec, seed, 0, max(n, 1), timeout)
            values += run.values
            checksums.add(run.checksum)
    if len(checksums) != 1:
        raise MismatchError(f"output checksum changed between repeats: {sorted(checksums)}")
    got = checksums.pop()
    ok = None
    if verify:
        want = expected_checksum(spec, seed)
        ok = got == want
        if not ok:
            raise MismatchError(f"output checksum 0x{got:08x} differs from the reference 0x{want:08x}")
    med, iqr, mn = summarize(values)
    return Measurement(spec=spec, fingerprint=fingerprint, status="ok", unit=session.hello.timer_unit,
                       raw=[float(v) for v in values], median=med, iqr=iqr, min=mn, checksum_ok=ok,
                       seed=seed, retries=session.link_stats.retries - retries0,
                       reconnects=session.link_stats.reconnects - reconnects0,
                       wall_s=time.monotonic() - t0)


#: relative difference allowed between the two timed runs of a layer-mode measurement on a simulator
LAYER_REPEAT_TOLERANCE = 0.005
LAYER_REPEAT_SLACK = 128        # cycles: a few cache lines refilled at other addresses


def _layer_image(target: "Target", graph, spec: KernelSpec) -> bytes:
    from kernels.ir import codegen

    try:
        gen = codegen.generate(graph, {"model": f"layer {spec}"}, code_output=True)
        return codegen.compile_image(gen, target.model_toolchain())
    except MicoError as e:
        raise CrashError(f"the measurement image of {spec} did not build: {e}") from None


def measure_layer(session: Session, target: "Target", spec: KernelSpec, fingerprint: str, deterministic: bool,
                  policy: StatsPolicy | None = None, timeout: float | None = None) -> Measurement:
    """One layer as a deployed model runs it (DESIGN.md s4, docs/cost-model.md).

    The layer becomes a one-layer model (kernels/ir/layer.py): an untimed step
    evicts the data cache and writes the input as a previous layer would, the
    layer runs once untimed (its code in the instruction cache, as after an
    earlier layer of the same kind) and once timed, through exactly the C the
    generator emits for it.  Its timer slot is the value; its outputs are
    checked against the IR's integer semantics on every run."""
    from kernels.ir import IRError
    from kernels.ir.layer import graph_for_spec, layer_inputs

    policy = policy or StatsPolicy()
    caps = target.capabilities()
    if "layer" not in caps.modes or not (caps.model_images or caps.ir_models):
        raise UnsupportedError(f"{target.name} cannot run layer-mode measurements (it runs no models)")
    if spec.qa not in caps.bits or (spec.has_weights and spec.qw not in caps.bits):
        raise UnsupportedError(f"{target.name} does not support {spec.qa}x{spec.qw}")
    seed = spec_seed(spec)
    t0 = time.monotonic()
    retries0, reconnects0 = session.link_stats.retries, session.link_stats.reconnects
    # one timed run per model run: more layer nodes in one image would move its buffers, and on a
    # 4 KiB direct-mapped data cache buffer placement alone moves a layer by up to ~10%
    per_run = 1
    try:
        graph, in_type = graph_for_spec(spec, seed, evict_bytes=2 * caps.dcache_bytes, warm=True, repeats=per_run)
    except IRError as e:
        raise UnsupportedError(str(e)) from None
    x = layer_inputs(in_type, seed, 1)
    want = graph.run(x).reshape(-1)
    if caps.model_images:
        session.load_model(_layer_image(target, graph, spec))
    else:
        session.load_ir_model(graph)
    values: list[float] = []

    def run_once() -> None:
        r = session.run_model(x.tobytes(), timeout=timeout)
        if len(r.outputs) != want.size or np.any(np.asarray(r.outputs, dtype=np.int64) != want):
            raise MismatchError(f"the layer's outputs differ from the integer reference on {spec}")
        values.extend(float(v) for v in r.layers[-per_run:])

    if deterministic:
        run_once()
        run_once()
        # the first run after loading follows other code (branch history, cache contents), which
        # may shift some cycles (seen: up to ~70 on VexRiscv); more is a simulator that is not
        # deterministic
        if abs(values[0] - values[1]) > max(LAYER_REPEAT_TOLERANCE * max(values), LAYER_REPEAT_SLACK):
            raise MismatchError(f"non-deterministic timing on a simulator: {values[0]:.0f} vs {values[1]:.0f}")
    else:
        for _ in range(policy.warmup):
            run_once()
        values.clear()
        n_fixed = policy.fixed_repeats
        while True:
            run_once()
            if n_fixed:
                if len(values) >= n_fixed:
                    break
                continue
            enough = len(values) >= policy.min_repeats
            med, iqr, _ = summarize(values)
            if enough and med > 0 and iqr / med <= policy.rel_iqr:
                break
            if len(values) >= policy.max_repeats or (enough and time.monotonic() - t0 > policy.budget_s):
                break
    med, iqr, mn = summarize(values)
    return Measurement(spec=spec, fingerprint=fingerprint, status="ok", unit=session.hello.timer_unit,
                       raw=values, median=med, iqr=iqr, min=mn, checksum_ok=True, seed=seed,
                       retries=session.link_stats.retries - retries0,
                       reconnects=session.link_stats.reconnects - reconnects0, wall_s=time.monotonic() - t0)


def error_measurement(spec: KernelSpec, fingerprint: str, err: MeasureError, wall_s: float) -> Measurement:
    text = str(err)
    if getattr(err, "detail", ""):
        text += f" [{err.detail}]"
    return Measurement(spec=spec, fingerprint=fingerprint, status=err.kind, error=text,
                       seed=spec_seed(spec), wall_s=wall_s)
