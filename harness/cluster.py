"""Sweeps on a Dask `distributed` cluster: one machine's cores, or a lab of hosts and boards.

``--cluster local[:N]`` starts a `LocalCluster` of N worker processes (one
thread each) on this machine; ``--cluster tcp://host:port`` joins a running
scheduler whose workers were started with `mico worker` (or ``dask worker
--preload harness.cluster``).  Without the option a sweep uses the local
process pool, which needs no scheduler.

Workers own their targets: `TargetPlugin` is installed on every worker and
keeps, per worker thread, one booted session that serves all the specs that
thread gets.  The worker checks that the target is available there and builds
it itself through the content-addressed build cache (artefact paths are local
to a host), and refuses a build whose fingerprint differs from the one the
sweep is storing under (another toolchain, other sources).  The client needs
no toolchain: even the HELLO probe runs on a worker.

A board is tied to the worker of the host it is plugged into through a Dask
worker resource named after the target (``board:arty-a7=1``): its specs only
run on workers that offer it, never two at once.  Before anything is
submitted the scheduler's workers are asked for the resources, and a sweep
that no worker could run stops with one sentence instead of waiting forever.

One writer: results stream back (`distributed.as_completed`) and the client
commits each row as it arrives.  A worker that dies mid-spec has that spec
re-run on another worker by the scheduler; the client gets exactly one result
per spec, and the store's key would refuse a second row anyway.  A spec that
kills every worker it runs on ends as a crash record once the scheduler gives
up on it (``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass

from . import registry
from .errors import BootError, MeasureError, MicoError, TargetUnavailable, Terminated, UserError
from .measure import StatsPolicy, error_measurement
from .spec import KernelSpec
from .store import Measurement
from .target import BuildResult, Target
from .transports import die_with_parent

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:      # without Dask the module still imports; `connect` says what is missing
    WorkerPlugin = object

log = logging.getLogger(__name__)

PLUGIN = "mico-targets"
#: seconds a sweep on an existing scheduler waits for its first worker
WORKER_WAIT_S = 30.0
#: seconds without a result after which the client checks that a worker able to run the specs remains
LIVENESS_S = 30.0
_LOCAL = re.compile(r"local(?::(\d+))?")
_ADDRESS = re.compile(r"(tcp|tls)://[^\s/:]+:\d{1,5}")
DASK_MISSING = "a cluster needs Dask distributed: pip install 'dask[distributed]==2026.8.0'."


@dataclass(frozen=True)
class ClusterSpec:
    """Where specs run: a scheduler `address`, or (address None) a local cluster of `workers`."""

    address: str | None = None
    workers: int = 1

    def __str__(self) -> str:
        return self.address or f"local:{self.workers}"


def parse_cluster(text: str) -> ClusterSpec:
    """``local``, ``local:N`` or ``tcp://host:port``; one sentence for anything else."""
    t = text.strip()
    m = _LOCAL.fullmatch(t)
    if m:
        n = int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)
        if not 1 <= n <= 1024:
            raise UserError(f"cluster {text!r} asks for {n} workers; use local:N with N from 1 to 1024.")
        return ClusterSpec(None, n)
    if _ADDRESS.fullmatch(t):
        return ClusterSpec(t)
    raise UserError(f"cluster {text!r} is malformed; use local, local:N or tcp://HOST:PORT.")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(DASK_MISSING) from None
    # Dask logs every worker start and stop at INFO: shown with -v, not in a plain run
    logging.getLogger("distributed").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.INFO))
    return distributed


#: Dask settings for the workers this module starts (`LocalCluster`, `mico worker`): no
#: statistical profiler (it samples every thread's stack each 10 ms, taking the GIL the
#: measuring thread needs to talk to its device), and the environment the process pool's
#: workers have -- Dask's default pre-spawn environment sets MALLOC_TRIM_THRESHOLD_=65536 and
#: one BLAS / OpenMP thread, which made each spec ~30% slower here (benchmarks/bench_cluster.py).
WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.system-monitor.gil.enabled": False,
                 "distributed.nanny.pre-spawn-environ": {}}


def _worker_log_level() -> int:
    """Local workers' logging: what the client logs (-v, -vv), but not the heartbeat and
    connection errors of workers racing their scheduler at shutdown in a plain run; a task's
    own failure reaches the client through its future, as one sentence."""
    root = logging.getLogger().getEffectiveLevel()
    return root if root < logging.WARNING else logging.CRITICAL


def connect(spec: ClusterSpec):
    """(client, local cluster or None): a started LocalCluster, or a client of the scheduler
    that has at least one worker.  The caller closes both."""
    distributed = _distributed()
    cluster = None
    try:
        if spec.address is None:
            import dask

            with dask.config.set(WORKER_CONFIG):      # nannies hand the config to their workers
                cluster = distributed.LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                                                   dashboard_address=":0", memory_limit=0,
                                                   silence_logs=_worker_log_level())
            client = distributed.Client(cluster)
        else:
            client = distributed.Client(spec.address, timeout=10)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        where = f"the Dask scheduler {spec.address}" if spec.address else "a local Dask cluster"
        raise UserError(f"cannot reach {where}: {e}.") from None
    try:
        if spec.address is not None:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise UserError(f"the Dask scheduler {spec.address} has no workers after {WORKER_WAIT_S:.0f} s; "
                                f"start some with `mico worker {spec.address}`.") from None
        client.register_plugin(TargetPlugin(), name=PLUGIN)
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    return client, cluster


def worker_info(client) -> dict[str, dict]:
    """Each running worker's address -> {"resources": what it offers, "nthreads": its task threads}
    (a worker that is closing or paused still shows at the scheduler but runs nothing)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {addr: {"resources": dict(info.get("resources") or {}), "nthreads": int(info.get("nthreads") or 1)}
            for addr, info in workers.items() if info.get("status", "running") == "running"}


def check_resources(client, need: dict[str, float], where: str) -> list[str]:
    """The workers that offer every resource in `need`; one sentence if none does."""
    offers = {a: w["resources"] for a, w in worker_info(client).items()}
    able = [a for a, have in offers.items() if all(have.get(k, 0) >= v for k, v in need.items())]
    if not able and not need:
        raise UserError(f"the cluster {where} has no workers left.")
    if not able:
        text = ", ".join(f"{k}={v:g}" for k, v in sorted(need.items()))
        n = f"{len(offers)} worker{'s' if len(offers) != 1 else ''}"
        how = ("a local cluster's workers offer no resources: start a scheduler and, on the host that has it, "
               f"`mico worker SCHEDULER --resource {text}` (docs/cluster.md)" if where.startswith("local") else
               f"start one with `mico worker {where} --resource {text}` on the host that has it")
        raise UserError(f"no worker of the cluster {where} ({n}) offers the resource {text} that the specs "
                        f"need; {how}.")
    return able


def spec_token(spec: KernelSpec) -> str:
    """A short stable name of a spec, part of its task key (tests and logs find the spec by it)."""
    return hashlib.sha1(repr(spec.key()).encode()).hexdigest()[:12]


def task_token(key: str) -> str:
    """The `spec_token` inside a measurement task's key."""
    return str(key).rsplit("-", 1)[-1]


# ---- worker side -------------------------------------------------------------
class _Slot:
    """One worker thread's device: the target, its build and the booted session."""

    def __init__(self, key: tuple, target: Target, build: BuildResult):
        self.key, self.target, self.build = key, target, build
        self.session = None


class TargetPlugin(WorkerPlugin):
    """Installed on every worker: boots each target once per worker thread and keeps it.

    Sessions are kept per thread because a device child dies with the thread
    that started it (PR_SET_PDEATHSIG) and because a worker with several
    threads runs several devices side by side; Dask's task threads live as
    long as the worker.  `teardown` (the worker closing) kills every device.
    Builds are made once per worker and target, on the worker.
    """

    name = PLUGIN
    idempotent = True

    def setup(self, worker=None) -> None:
        self.address = getattr(worker, "address", "?")
        if getattr(worker, "nanny", None):
            # a worker process dies with its nanny's process (a SIGKILLed `mico sweep --cluster local:N`
            # takes its workers along, as the process pool's do), and its devices die with it
            die_with_parent()
        self._slots: dict[int, _Slot] = {}
        self._builds: dict[tuple, tuple[Target, BuildResult]] = {}
        self._lock = threading.Lock()

    def teardown(self, worker=None) -> None:
        for slot in list(getattr(self, "_slots", {}).values()):
            self._kill(slot)
        self._slots = {}

    @staticmethod
    def _kill(slot: _Slot) -> None:
        s, slot.session = slot.session, None
        if s is not None:
            try:
                s.abort()
            except Exception:  # noqa: BLE001 -- the device is already broken
                pass

    def built(self, target_name: str, params: dict, fingerprint: str | None) -> tuple[Target, BuildResult]:
        """The target built on this worker (once); refuses another fingerprint than the sweep's."""
        key = (target_name, repr(sorted(params.items())))
        with self._lock:                      # threads of one worker build once, not side by side
            if key not in self._builds:
                target = registry.get(target_name, **params)
                ok, why = target.available()
                if not ok:
                    raise TargetUnavailable(f"target {target_name} is not available on worker {self.address}: {why}")
                self._builds[key] = (target, target.build())
            target, build = self._builds[key]
        if fingerprint is not None and build.fingerprint != fingerprint:
            raise UserError(f"worker {self.address} builds target {target_name} as {build.fingerprint}, not "
                            f"{fingerprint} like the first worker (other tools or sources); install the same "
                            "mico-hil and toolchain on every worker.")
        return target, build

    def session(self, target_name: str, params: dict, fingerprint: str | None):
        """(session, target) of this thread, booted on first use; MeasureError if it does not boot."""
        target, build = self.built(target_name, params, fingerprint)
        tid = threading.get_ident()
        slot = self._slots.get(tid)
        key = (target_name, repr(sorted(params.items())), build.fingerprint)
        if slot is None or slot.key != key:
            if slot is not None:
                self._kill(slot)
            slot = self._slots[tid] = _Slot(key, target, build)
        if slot.session is None:
            s = target.open(build)
            s.build_result = build
            slot.session = s
        return slot.session, slot.target

    def drop(self) -> None:
        """Kill this thread's device (after a crash or timeout); the next spec boots a new one."""
        slot = self._slots.get(threading.get_ident())
        if slot is not None:
            self._kill(slot)


def _plugin() -> TargetPlugin:
    from distributed import get_worker

    w = get_worker()
    p = w.plugins.get(PLUGIN)
    if p is None:        # a bare `dask worker` that a client has not reached yet
        p = TargetPlugin()
        p.setup(w)
        w.plugins[PLUGIN] = p
    return p


def worker_plugin() -> TargetPlugin:
    """On a worker: the plugin that keeps this worker's target sessions (for tasks of other
    commands that run on a target, e.g. `mico validate --cluster`)."""
    return _plugin()


def dask_setup(worker) -> None:
    """`dask worker --preload harness.cluster`: install the plugin when the worker starts."""
    p = TargetPlugin()
    p.setup(worker)
    worker.plugins[PLUGIN] = p


def probe_task(target_name: str, params: dict):
    """On a worker: build and boot the target, keep the session, return (build, hello)."""
    p = _plugin()
    try:
        session, _ = p.session(target_name, params, None)
    except MeasureError as e:
        p.drop()
        raise BootError(f"target {target_name} did not boot on worker {p.address}: {e}") from None
    b = session.build_result
    return BuildResult(b.target, b.fingerprint, dict(b.artifacts), dict(b.info), b.cached), session.hello


def measure_task(target_name: str, params: dict, fingerprint: str, spec: dict, policy: StatsPolicy,
                 deterministic: bool, timeout: float | None) -> Measurement:
    """On a worker: measure one spec on the worker's kept session."""
    from .sweep import measure_spec

    p = _plugin()
    return measure_spec(lambda: p.session(target_name, params, fingerprint), p.drop, fingerprint, spec,
                        policy, deterministic, timeout)


# ---- client side -------------------------------------------------------------
class KilledSpecError(MeasureError):
    """A spec whose task took down every worker it was tried on."""

    kind = "crash"


class ClusterRunner:
    """`harness.sweep.PoolRunner` on a Dask cluster: same probe / submit / results / close."""

    def __init__(self, spec: ClusterSpec, target_name: str, params: dict, resources: dict[str, float]):
        self.spec, self.target_name, self.params = spec, target_name, params
        self.extra = dict(resources)
        self.client = self.cluster = self.ac = None
        self.parallelism = 1
        self.sweep = uuid.uuid4().hex[:8]
        self.specs: dict[str, KernelSpec] = {}
        self.futures: dict[str, object] = {}

    def probe(self) -> tuple[Target, BuildResult, object]:
        target = registry.get(self.target_name, **self.params)   # parameters are checked here, once
        self.need = {**target.cluster_resources(), **self.extra}
        self.client, self.cluster = connect(self.spec)
        able = check_resources(self.client, self.need, str(self.spec))
        threads = {a: w["nthreads"] for a, w in worker_info(self.client).items()}
        # a board (resource amount 1) runs one spec at a time however many threads its worker has
        self.parallelism = len(able) if self.need else sum(threads.get(a, 1) for a in able)
        from distributed import as_completed

        self.ac = as_completed()
        fut = self.client.submit(probe_task, self.target_name, self.params, resources=self.need or None,
                                 pure=False, key=f"mico-probe-{self.target_name}-{self.sweep}")
        build, hello = self._result(fut, None)
        return target, build, hello

    def prepare(self, build: BuildResult, policy: StatsPolicy, deterministic: bool, timeout: float | None) -> None:
        self.fingerprint = build.fingerprint
        self.rest = (policy, deterministic, timeout)

    @property
    def in_flight(self) -> int:
        return self.ac.count() if self.ac is not None else 0

    def submit(self, spec: KernelSpec) -> None:
        key = f"mico-measure-{self.sweep}-{spec_token(spec)}"
        self.specs[key] = spec
        fut = self.client.submit(measure_task, self.target_name, self.params, self.fingerprint, spec.to_dict(),
                                 *self.rest, resources=self.need or None, pure=False, key=key)
        self.futures[key] = fut
        self.ac.add(fut)

    def results(self) -> list[Measurement]:
        self._wait_alive()
        out = []
        for fut in self.ac.next_batch(block=True):
            out.append(self._result(fut, self.specs.pop(fut.key, None)))
            self.futures.pop(fut.key, None)
            fut.release()
        return out

    def _wait_alive(self) -> None:
        """Block until a spec finishes (on as_completed's own condition); every LIVENESS_S
        without one, check that some worker can still run the specs (the board's host may have
        left), so a sweep never waits forever."""
        ac = self.ac
        deadline = time.monotonic() + LIVENESS_S
        while not ac.has_ready() and not ac.is_empty():
            with ac.thread_condition:         # a finished future is queued, then notified, under it
                if not ac.has_ready():
                    ac.thread_condition.wait(timeout=1.0)
            if time.monotonic() < deadline:
                continue
            deadline = time.monotonic() + LIVENESS_S
            self._check_alive()

    def _check_alive(self) -> None:
        try:
            check_resources(self.client, self.need, str(self.spec))
        except UserError as e:
            raise UserError(f"{str(e).rstrip('.')}; {len(self.futures)} specs were left unmeasured, "
                            "re-running the sweep resumes them.") from None

    def _result(self, fut, spec: KernelSpec | None):
        from distributed import KilledWorker

        try:
            while True:    # a finished result held by a worker that then left is computed again
                try:
                    return fut.result(timeout=LIVENESS_S)
                except TimeoutError:
                    self._check_alive()
        except MicoError as e:             # not available / other build on a worker: the whole sweep stops
            raise UserError(str(e)) from None
        except KilledWorker as e:
            if spec is None:
                raise UserError(f"the target probe killed the workers it ran on ({e}).") from None
            err = KilledSpecError(f"{spec} took down every worker it ran on", str(e))
            return error_measurement(spec, self.fingerprint, err, 0.0)
        except Exception as e:            # a task that failed on a worker: its own words, not a traceback
            log.debug("cluster task failed", exc_info=True)
            what = f"measuring {spec}" if spec is not None else f"probing {self.target_name}"
            raise UserError(f"{what} failed on the cluster {self.spec}: {type(e).__name__}: {e}.") from None

    def close(self, stopped: bool) -> None:
        if self.client is not None:
            if stopped and self.ac is not None:
                self.client.cancel(list(self.ac.futures))
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()     # workers tear the plugin down: every device is killed


# ---- `mico worker` -----------------------------------------------------------
def prepare_targets(targets: list[str], params: dict) -> list[str]:
    """Check and build the named targets here before the worker joins, so a host that cannot run
    them says so at once (one sentence) instead of failing its first task; returns fingerprints."""
    out = []
    for name in targets:
        t = registry.get(name, **params)
        ok, why = t.available()
        if not ok:
            raise TargetUnavailable(f"target {name} is not available on this host: {why}")
        out.append(t.build().fingerprint)
    return out


def serve_worker(address: str, nthreads: int = 1, resources: dict[str, float] | None = None,
                 name: str | None = None, death_timeout: float = 60.0) -> None:
    """Run one Dask worker (under a nanny that restarts it if it dies) with the target plugin
    preloaded, until the scheduler goes away or the process is stopped."""
    import asyncio

    spec = parse_cluster(address)
    if spec.address is None:
        raise UserError(f"a worker joins a running scheduler: give its address tcp://HOST:PORT, not {address!r}.")
    distributed = _distributed()

    stopped_by: list[int] = []

    async def run() -> None:
        # SIGTERM / SIGINT / SIGHUP: close the nanny once, gracefully (its worker tears the plugin
        # down, killing every device), however many signals come while it does
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            stopped_by.append(signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        async with distributed.Nanny(spec.address, nthreads=nthreads, resources=resources or None, name=name,
                                     preload=["harness.cluster"], memory_limit=0,
                                     death_timeout=death_timeout) as nanny:
            done = asyncio.ensure_future(nanny.finished())
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait([done, halt], return_when=asyncio.FIRST_COMPLETED)
            for f in (done, halt):
                f.cancel()

    import dask

    try:
        with dask.config.set(WORKER_CONFIG):
            asyncio.run(run())
    except (OSError, TimeoutError, RuntimeError) as e:
        cause = e.__cause__ if isinstance(e, RuntimeError) else e     # "Nanny failed to start" from OSError
        if not isinstance(cause, (OSError, TimeoutError)):
            raise
        raise UserError(f"cannot reach the Dask scheduler {spec.address}: {cause or 'timed out'}.") from None
    if stopped_by:
        raise Terminated(stopped_by[0]) if stopped_by[0] != signal.SIGINT else KeyboardInterrupt()
