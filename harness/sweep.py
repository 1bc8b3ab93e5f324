"""The sweep engine: a coordinator that owns the store and an executor of workers.

Each worker boots its target once (lazily, on its first spec) and keeps the
session for every later spec it gets; a crash or timeout closes that session,
the spec is recorded with its error class, and the next spec re-boots the
target.  Only the coordinator writes to the store, one committed row per
result, so killing the sweep at any moment loses only in-flight kernels and a
re-run resumes where it stopped.  The specs run on a local process pool by
default (`PoolRunner`), or on a Dask cluster (`harness.cluster.ClusterRunner`,
``cluster="local:N"`` or ``"tcp://host:port"``, docs/cluster.md), whose
workers keep their targets the same way.

The plan is streamed: specs are taken from the plan's iterator in batches,
each batch is checked against the store (only its own keys) and submitted,
and at most a few batches are in flight -- a plan of a hundred million specs
starts measuring at once, in bounded memory.

Stopping: Ctrl-C or SIGTERM of the coordinator terminates the workers, and a
worker that gets SIGTERM kills its device before it exits; workers (and the
devices they start) also die with their parent if it is SIGKILLed.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field

from . import registry
from .errors import MeasureError, UserError
from .measure import StatsPolicy, error_measurement, measure
from .plans import batched, parse_plan
from .spec import ALL_OPS, KernelSpec
from .store import Measurement, Store
from .target import BuildResult, Session, Target
from .transports import die_with_parent

log = logging.getLogger(__name__)

# ---- worker side -------------------------------------------------------------
_worker: dict = {}


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
            s.abort()
        except Exception:  # noqa: BLE001 -- the device is already broken
            pass


def measure_spec(open_session, drop_session, fingerprint: str, spec: dict, policy: StatsPolicy,
                 deterministic: bool, timeout: float | None) -> Measurement:
    """Measure one spec on a worker's kept session, never raise for a device problem.

    `open_session()` returns the worker's (session, target), booting it if
    needed; `drop_session()` kills it after a crash or timeout so that the next
    spec boots a fresh device.  Shared by the process pool and the Dask workers.
    """
    spec_ = KernelSpec.from_dict(spec)
    t0 = time.monotonic()
    try:
        session, target = open_session()
    except MeasureError as e:
        drop_session()
        return error_measurement(spec_, fingerprint, e, time.monotonic() - t0)
    try:
        return measure(session, spec_, fingerprint, deterministic, policy, timeout, target=target)
    except MeasureError as e:
        m = error_measurement(spec_, fingerprint, e, time.monotonic() - t0)
        if e.kind in ("crash", "timeout"):
            drop_session()     # the next spec boots a fresh device
        return m


def measure_one(target_name: str, params: dict, build: dict, spec: dict, policy: StatsPolicy,
                deterministic: bool, timeout: float | None) -> Measurement:
    """Executed in a pool worker: measure one spec, never raise for a device problem."""
    return measure_spec(lambda: _session(target_name, params, build), _drop_session, build["fingerprint"],
                        spec, policy, deterministic, timeout)


def _worker_terminated(signum, frame) -> None:
    """SIGTERM from the coordinator: kill this worker's device, then go."""
    _drop_session()
    os._exit(128 + signum)


def _init_worker() -> None:
    die_with_parent()                                   # a SIGKILLed coordinator takes its workers along
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # a terminal's Ctrl-C: the coordinator decides
    signal.signal(signal.SIGTERM, _worker_terminated)


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
    adaptive: dict | None = None        # the adaptive plan's report (harness.adaptive)

    @property
    def per_second(self) -> float:
        return self.measured / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["measurements_per_s"] = self.per_second
        if d["adaptive"] is None:
            del d["adaptive"]
        return d


def make_executor(jobs: int):
    ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker)


def probe(target_name: str, params: dict | None = None) -> tuple[Target, BuildResult, object]:
    """Build the target and boot it once for its HELLO (supported ops and pairs)."""
    target = registry.get(target_name, **(params or {}))
    with target.session() as session:
        return target, session.build_result, session.hello


def _stop_workers(ex) -> None:
    """Terminate the pool's workers now (each kills its device on SIGTERM) instead of
    waiting for their kernels to finish."""
    if isinstance(ex, cf.ProcessPoolExecutor):
        for p in multiprocessing.active_children():
            p.terminate()


class PoolRunner:
    """The default executor: a local process pool, one booted target per worker.

    A runner probes the target, takes specs (`submit`) and hands back finished
    measurements (`results`, at least one, blocking); the coordinator in
    `run_sweep` alone writes them to the store.  `harness.cluster.ClusterRunner`
    is the same on a Dask cluster.
    """

    def __init__(self, jobs: int, target_name: str, params: dict):
        self.jobs, self.target_name, self.params = jobs, target_name, params
        self.ex = None
        self.pending: set = set()
        self.args: tuple = ()

    @property
    def parallelism(self) -> int:
        return self.jobs

    def probe(self) -> tuple[Target, BuildResult, object]:
        return probe(self.target_name, self.params)

    def prepare(self, build: BuildResult, policy: StatsPolicy, deterministic: bool, timeout: float | None) -> None:
        self.args = (self.target_name, self.params, build.to_dict())
        self.rest = (policy, deterministic, timeout)

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def submit(self, spec: KernelSpec) -> None:
        if self.ex is None:         # no pool at all for a sweep whose every spec is stored
            self.ex = make_executor(self.jobs)
        self.pending.add(self.ex.submit(measure_one, *self.args, spec.to_dict(), *self.rest))

    def results(self) -> list[Measurement]:
        finished, self.pending = cf.wait(self.pending, return_when=cf.FIRST_COMPLETED)
        try:
            return [f.result() for f in finished]
        except cf.process.BrokenProcessPool as e:
            raise UserError(f"a sweep worker died unexpectedly ({e}); re-run the same command to resume.") from None

    def close(self, stopped: bool) -> None:
        if self.ex is None:
            return
        if stopped:
            for f in self.pending:
                f.cancel()
            _stop_workers(self.ex)
        self.ex.shutdown(wait=not stopped, cancel_futures=True)


def run_sweep(target_name: str, plan: str, store_path: str, jobs: int = 1, params: dict | None = None,
              cluster: str | None = None, policy: StatsPolicy | None = None,
              progress: bool = True, ops: list[str] | None = None, mode: str = "kernel",
              resources: dict[str, float] | None = None, on_row=None,
              target_mape: float | None = None) -> SweepSummary:
    """Measure every spec of `plan` not yet in the store.

    `cluster` (``local[:N]`` or ``tcp://host:port``) runs the specs on a Dask
    cluster instead of `jobs` local processes; `resources` are Dask worker
    resources every spec needs on top of the target's own (a board's).
    `on_row(measurement)` is called after each row is committed.  An
    ``adaptive:N`` plan chooses its shapes as it measures (harness.adaptive) and
    stops early once its shape-grouped CV MAPE is at most `target_mape` (%).
    """
    params = params or {}
    if jobs < 1:
        raise UserError(f"a sweep needs at least 1 worker, not {jobs}.")
    plan_ = parse_plan(plan)   # validate the plan before building anything
    if target_mape is not None and not plan_.is_adaptive:
        raise UserError(f"--target-mape stops an adaptive plan early; plan {plan!r} is not one (use adaptive:N).")
    if target_mape is not None and not (target_mape > 0):
        raise UserError(f"--target-mape must be a positive percentage, not {target_mape}.")
    if plan_.is_adaptive and mode != "kernel":
        raise UserError("the adaptive plan measures kernels; run it with --mode kernel.")
    if cluster is not None:
        from .cluster import ClusterRunner, parse_cluster

        runner = ClusterRunner(parse_cluster(cluster), target_name, params, resources or {})
    elif resources:
        raise UserError("worker resources only apply to a sweep on a cluster.")
    else:
        runner = PoolRunner(jobs, target_name, params)
    stopped = False
    bar = None
    try:
        with Store(store_path) as store:
            target, build, hello = runner.probe()
            info = dict(build.info)
            info["hello"] = hello.to_dict()
            info["params"] = dict(target.params)
            store.add_target(build.fingerprint, target_name, info)
            if mode not in target.capabilities().modes:
                raise UserError(f"target {target_name} does not measure in {mode} mode; it offers "
                                f"{', '.join(m for m in target.capabilities().modes if m != 'model')}.")
            op_list = [o for o in hello.ops if ops is None or o in ops]
            if mode == "layer":
                op_list = [o for o in ALL_OPS if ops is None or o in ops]
            total = plan_.size(hello.pairs, op_list, mode)
            summary = SweepSummary(target_name, build.fingerprint, plan, total, 0, build_cached=build.cached)
            runner.prepare(build, policy or StatsPolicy(), target.deterministic, target.kernel_timeout)
            batch_size = max(64, 8 * runner.parallelism)
            t0 = time.monotonic()
            if plan_.is_adaptive:
                from .adaptive import run_adaptive

                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=total, desc=f"{target_name} {plan}", unit="kernel", leave=False)

                def drain(store_):
                    while runner.in_flight:
                        _store_results(runner.results(), store_, summary, bar, on_row)

                summary.adaptive = run_adaptive(plan_, store, runner, build.fingerprint, target_name, hello.pairs,
                                                op_list, target_mape, summary, drain,
                                                bar.update if bar is not None else None)
            for batch in ([] if plan_.is_adaptive else batched(plan_.specs(hello.pairs, op_list, mode), batch_size)):
                todo = _new_specs(store, build.fingerprint, batch)
                summary.skipped_existing += len(batch) - len(todo)
                if bar is None and progress and todo:
                    from tqdm import tqdm

                    bar = tqdm(total=total, desc=f"{target_name} {plan}", unit="kernel", leave=False,
                               initial=summary.skipped_existing)
                elif bar is not None:
                    bar.update(len(batch) - len(todo))
                for s in todo:
                    runner.submit(s)
                while runner.in_flight > 2 * batch_size:          # at most a few batches in flight
                    _store_results(runner.results(), store, summary, bar, on_row)
            while runner.in_flight:
                _store_results(runner.results(), store, summary, bar, on_row)
    except KeyboardInterrupt:       # Ctrl-C, SIGTERM (harness.errors.Terminated)
        stopped = True
        raise
    finally:
        if bar is not None:
            bar.close()
        runner.close(stopped)
    summary.wall_s = time.monotonic() - t0 if summary.measured else 0.0
    return summary


def _new_specs(store: Store, fingerprint: str, batch: list[KernelSpec]) -> list[KernelSpec]:
    """The specs of a batch that are neither stored nor repeated within the batch."""
    done = store.done_among(fingerprint, [s.key() for s in batch])
    out: dict[tuple, KernelSpec] = {}
    for s in batch:
        k = s.key()
        if k not in done and k not in out:
            out[k] = s
    return list(out.values())


def _store_results(ms: list[Measurement], store: Store, summary: SweepSummary, bar, on_row) -> None:
    """Commit each finished measurement on its own (the one writer), then count it."""
    for m in ms:
        store.put(m)
        summary.measured += 1
        summary.by_status[m.status] = summary.by_status.get(m.status, 0) + 1
        if bar is not None:
            bar.update(1)
        if on_row is not None:
            on_row(m)


def measure_single(target_name: str, spec: KernelSpec, params: dict | None = None,
                   policy: StatsPolicy | None = None) -> tuple[Measurement, BuildResult]:
    """`mico measure`: one spec, in this process, errors as MeasureError."""
    target = registry.get(target_name, **(params or {}))
    with target.session() as session:
        if spec.mode == "kernel" and not session.supports(spec):
            raise UserError(f"target {target_name} does not support {spec.op} with qa={spec.qa}, qw={spec.qw};"
                            f" it supports {', '.join(f'{a}x{w}' for a, w in session.hello.pairs)}.")
        m = measure(session, spec, session.build_result.fingerprint, target.deterministic, policy,
                    target.kernel_timeout, target=target)
    return m, session.build_result
