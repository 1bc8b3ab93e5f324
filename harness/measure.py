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

from .errors import MeasureError, MismatchError, UnsupportedError
from .spec import KernelSpec
from .store import Measurement
from .target import Session


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
    """Deterministic per-spec seed: re-measuring a spec uses identical inputs."""
    return zlib.crc32(repr(spec.key()).encode()) or 1


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
            verify: bool = True) -> Measurement:
    """Measure one spec; MeasureErrors propagate (the caller records them)."""
    policy = policy or StatsPolicy()
    if verify:
        check_reference(spec)
    seed = spec_seed(spec)
    t0 = time.monotonic()
    retries0 = session.client.stats.retries
    reconnects0 = session.client.stats.reconnects
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
                       seed=seed, retries=session.client.stats.retries - retries0,
                       reconnects=session.client.stats.reconnects - reconnects0,
                       wall_s=time.monotonic() - t0)


def error_measurement(spec: KernelSpec, fingerprint: str, err: MeasureError, wall_s: float) -> Measurement:
    text = str(err)
    if getattr(err, "detail", ""):
        text += f" [{err.detail}]"
    return Measurement(spec=spec, fingerprint=fingerprint, status=err.kind, error=text,
                       seed=spec_seed(spec), wall_s=wall_s)
