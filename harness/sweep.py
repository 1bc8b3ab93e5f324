"""The sweep engine: a coordinator that owns the store and an executor of workers.

Each worker boots its target once (lazily, on its first spec) and keeps the
session for every later spec it gets; a crash or timeout closes that session,
the spec is recorded with its error class, and the next spec re-boots the
target.  Only the coordinator writes to the store, one committed row per
result, so killing the sweep at any moment loses only in-flight kernels and a
re-run resumes where it stopped.  Any `concurrent.futures.Executor` works: a
local process pool by default, or a Dask distributed client's executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing

import time
from dataclasses import dataclass, field

from . import registry
from .errors import MeasureError, UserError
from .measure import StatsPolicy, error_measurement, measure
from .plans import expand
from .spec import KernelSpec
from .store import Measurement, Store
from .target import BuildResult, Session

log = logging.getLogger(__name__)

# ---- worker side -------------------------------------------------------------
_worker: dict = {}


def _die_with_parent() -> None:
    """Linux: a worker whose coordinator was SIGKILLed must not live on."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _session(target_name: str, params: dict, build: dict) -> tuple[Session, object]:
    key = build["fingerprint"]
    if _worker.get("key") == key and _worker.get("session") is not None:
        return _worker["session"], _worker["target"]
    target = registry.get(target_name, **params)
    session = target.open(BuildResult(**build))
    _worker.update(key=key, session=session, target=target)
    return session, target


def _drop_session() -> None:
    s = _worker.pop("session", None)
    if s is not None:
        try:
            s.transport.close(timeout=0.5)
        except Exception:  # noqa: BLE001 -- the device is already broken
            pass


def measure_one(target_name: str, params: dict, build: dict, spec: dict, policy: StatsPolicy,
                deterministic: bool, timeout: float | None) -> Measurement:
    """Executed in a worker: measure one spec, never raise for a device problem."""
    spec_ = KernelSpec.from_dict(spec)
    t0 = time.monotonic()
    try:
        session, _ = _session(target_name, params, build)
    except MeasureError as e:
        _drop_session()
        return error_measurement(spec_, build["fingerprint"], e, time.monotonic() - t0)
    try:
        return measure(session, spec_, build["fingerprint"], deterministic, policy, timeout)
    except MeasureError as e:
        m = error_measurement(spec_, build["fingerprint"], e, time.monotonic() - t0)
        if e.kind in ("crash", "timeout"):
            _drop_session()     # the next spec boots a fresh device
        return m


def _init_worker() -> None:
    _die_with_parent()


# ---- coordinator side --------------------------------------------------------
@dataclass
class SweepSummary:
    target: str
    fingerprint: str
    plan: str
    total: int
    skipped_existing: int
    measured: int = 0
    by_status: dict = field(default_factory=dict)
    wall_s: float = 0.0
    build_cached: bool = False

    @property
    def per_second(self) -> float:
        return self.measured / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["measurements_per_s"] = self.per_second
        return d


def make_executor(jobs: int, scheduler: str | None):
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise UserError("--scheduler needs Dask distributed: pip install 'dask[distributed]'.") from None
        try:
            return Client(scheduler, timeout=10).get_executor()
        except OSError as e:
            raise UserError(f"cannot reach the Dask scheduler {scheduler}: {e}.") from None
    ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker)


def probe(target_name: str, params: dict | None = None):
    """Build the target and boot it once for its HELLO (supported ops and pairs)."""
    params = params or {}
    target = registry.get(target_name, **params)
    ok, why = target.available()
    if not ok:
        raise UserError(f"target {target_name} is not available: {why}")
    build = target.build()
    try:
        session = target.open(build)
    except MeasureError as e:
        raise UserError(f"target {target_name} did not boot: {e}") from None
    hello = session.hello
    session.close()
    return target, build, hello


def run_sweep(target_name: str, plan: str, store_path: str, jobs: int = 1, params: dict | None = None,
              scheduler: str | None = None, policy: StatsPolicy | None = None,
              progress: bool = True, ops: list[str] | None = None) -> SweepSummary:
    params = params or {}
    if jobs < 1:
        raise UserError("--jobs must be at least 1.")
    specs_probe = expand(plan)   # validate the plan before building anything
    del specs_probe
    store = Store(store_path)
    target, build, hello = probe(target_name, params)
    info = dict(build.info)
    info["hello"] = hello.to_dict()
    info["params"] = params
    store.add_target(build.fingerprint, target_name, info)
    specs = expand(plan, hello.pairs, [o for o in hello.ops if ops is None or o in ops])
    done = store.done_keys(build.fingerprint)
    todo = [s for s in specs if s.key() not in done]
    summary = SweepSummary(target_name, build.fingerprint, plan, len(specs), len(specs) - len(todo),
                           build_cached=build.cached)
    policy = policy or StatsPolicy()
    t0 = time.monotonic()
    if not todo:
        store.close()
        return summary
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"{target_name} {plan}", unit="kernel", leave=False)
    ex = make_executor(jobs, scheduler)
    try:
        futs = [ex.submit(measure_one, target_name, params, build.to_dict(), s.to_dict(), policy,
                          target.deterministic, target.kernel_timeout) for s in todo]
        for fut in cf.as_completed(futs):
            m = fut.result()
            store.put(m)
            summary.measured += 1
            summary.by_status[m.status] = summary.by_status.get(m.status, 0) + 1
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        for f in futs:
            f.cancel()
        raise
    except cf.process.BrokenProcessPool as e:
        raise UserError(f"a sweep worker died unexpectedly ({e}); re-run the same command to resume.") from None
    finally:
        if bar is not None:
            bar.close()
        ex.shutdown(wait=True, cancel_futures=True)
        store.close()
    summary.wall_s = time.monotonic() - t0
    return summary


def measure_single(target_name: str, spec: KernelSpec, params: dict | None = None,
                   policy: StatsPolicy | None = None) -> tuple[Measurement, BuildResult]:
    """`mico measure`: one spec, in this process, errors as MeasureError."""
    params = params or {}
    target = registry.get(target_name, **params)
    ok, why = target.available()
    if not ok:
        raise UserError(f"target {target_name} is not available: {why}")
    build = target.build()
    session = target.open(build)
    try:
        if not session.supports(spec):
            raise UserError(f"target {target_name} does not support {spec.op} with qa={spec.qa}, qw={spec.qw};"
                            f" it supports {', '.join(f'{a}x{w}' for a, w in session.hello.pairs)}.")
        m = measure(session, spec, build.fingerprint, target.deterministic, policy, target.kernel_timeout)
    finally:
        session.close()
    return m, build


