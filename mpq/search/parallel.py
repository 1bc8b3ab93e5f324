"""Candidate accuracy evaluations on a Dask cluster (``mico search --cluster``).

`ClusterEvaluator` is an accuracy function with a ``many`` method: a searcher's
batch (`Searcher.evaluate_many`) becomes one task per scheme, run side by side
on the workers, and comes back in proposal order.  The search itself -- the
budget, the cache, every random draw -- stays on the client, so the searcher
takes the same path as a serial run.

A task's accuracy does not depend on where or after what it runs: the
evaluator re-seeds torch with the search seed for every scheme (its
calibration and QAT draw from their own seeded generators), a worker runs one
evaluation at a time (the global torch seed and thread count are per process),
and it uses `WORKER_THREADS` torch threads.  The float model and the data go
to every worker once (`Client.scatter(..., broadcast=True)`); a task carries a
scheme.  The cluster comes from `harness.cluster` (`connect`, `parse_cluster`),
which holds no search code.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import uuid
from typing import Sequence

from harness.errors import UserError

from ..models import Scheme
from .evaluator import PTQEvaluator

log = logging.getLogger(__name__)

#: torch threads of an evaluation on a worker (one per worker process: the workers share the cores)
WORKER_THREADS = 1
_ONE_AT_A_TIME = threading.Lock()


def evaluate_task(evaluator: PTQEvaluator, scheme: Scheme, threads: int) -> float:
    """On a worker: the accuracy of one scheme (no cache: the client keeps it)."""
    import torch

    with _ONE_AT_A_TIME:          # torch's seed and thread count are the process's, not the task's
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        from ..train import accuracy

        return float(accuracy(evaluator.model_for(scheme), evaluator.x_val, evaluator.y_val))


def _token(scheme: Scheme) -> str:
    return hashlib.sha1(repr(scheme).encode()).hexdigest()[:12]


class ClusterEvaluator:
    """A `PTQEvaluator` whose evaluations run on a Dask cluster; the cache stays here.

    Use as a context manager (or call `close`): entering connects (a ``local:N``
    cluster is started, a ``tcp://`` scheduler joined) and ships the evaluator
    to every worker once."""

    def __init__(self, evaluator: PTQEvaluator, cluster: str, client=None, threads: int = WORKER_THREADS):
        from harness.cluster import parse_cluster

        self.local = evaluator
        self.where = parse_cluster(cluster) if isinstance(cluster, str) else cluster
        self.client, self._own = client, client is None
        self.cluster = None
        self.threads = int(threads)
        self.cache = evaluator.cache         # one cache, the client's
        self._remote = None
        self._run = uuid.uuid4().hex[:8]

    # -- lifetime --
    def open(self) -> "ClusterEvaluator":
        from harness.cluster import connect

        if self.client is None:
            self.client, self.cluster = connect(self.where)
        shipped = copy.copy(self.local)
        shipped.cache = {}
        # once per worker, not per task; a worker that joins later fetches it from a peer
        self._remote = self.client.scatter(shipped, broadcast=True, hash=False)
        return self

    def close(self) -> None:
        if self._remote is not None and self.client is not None and self.client.status == "running":
            self._remote.release()
        self._remote = None
        if self._own:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            self.client = self.cluster = None

    def __enter__(self) -> "ClusterEvaluator":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the accuracy function --
    def sensitivity(self, bits) -> dict:
        """The float model's per-layer sensitivities (surrogate, ilp): one computation, here."""
        return self.local.sensitivity(bits)

    def __call__(self, scheme: Sequence[Sequence[int]]) -> float:
        return self.many([scheme])[0]

    def many(self, schemes: Sequence[Sequence[int]]) -> list[float]:
        """Accuracies of `schemes`, in order; the ones not cached run as one task each, side by side."""
        keys = [tuple((int(a), int(w)) for a, w in s) for s in schemes]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if todo:
            if self._remote is None:
                raise RuntimeError("ClusterEvaluator used before open()")
            futures = [self.client.submit(evaluate_task, self._remote, k, self.threads, pure=False,
                                          key=f"mico-eval-{self._run}-{_token(k)}") for k in todo]
            try:
                values = self.client.gather(futures)
            except (KeyboardInterrupt, SystemExit):
                self.client.cancel(futures)
                raise
            except Exception as e:      # a task that failed on a worker: its own words, not a traceback
                from distributed import KilledWorker

                log.debug("cluster evaluation failed", exc_info=True)
                if isinstance(e, KilledWorker):
                    raise UserError(f"an accuracy evaluation took down every worker it ran on ({e}).") from None
                raise UserError(f"an accuracy evaluation failed on the cluster {self.where}: "
                                f"{type(e).__name__}: {e}.") from None
            finally:
                for f in futures:
                    f.release()
            for k, v in zip(todo, values):
                self.cache[k] = float(v)
        return [self.cache[k] for k in keys]
