"""`mico search --cluster` and `mico validate --cluster`: the same result as the serial run.

One LocalCluster of 2 single-thread worker processes serves the module (joined by
address, as a lab's scheduler would be); the search CLI test starts its own
``--cluster local:2``.
"""

import json

import pytest

from mico_cli import mico

distributed = pytest.importorskip("distributed")

from harness.cluster import ClusterSpec, connect  # noqa: E402
from mpq.datasets import load_dataset  # noqa: E402
from mpq.evaluate import cbops_latency  # noqa: E402
from mpq.models import get_model  # noqa: E402
from mpq.search import PTQEvaluator, run_search  # noqa: E402
from mpq.search.parallel import ClusterEvaluator  # noqa: E402
from mpq.train import set_seed, train_float  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """(scheduler address, client) of a LocalCluster of 2 worker processes."""
    client, lc = connect(ClusterSpec(None, 2))
    try:
        yield lc.scheduler_address, client
    finally:
        client.close()
        lc.close()


@pytest.fixture(scope="module")
def digits_mlp():
    """(float mlp trained briefly on digits, evaluator factory)."""
    data = load_dataset("digits", None)
    x_tr, y_tr, x_val, y_val = data.split_validation(0.2, 0, 2000)
    set_seed(0)
    model = get_model("mlp", "digits")
    train_float(model, x_tr, y_tr, epochs=2, seed=0)
    return model, lambda: PTQEvaluator(model, x_tr, y_tr, x_val, y_val, qat_steps=10, seed=0, lsq=True)


def _cands(result):
    return [(c.bits, c.accuracy, c.latency, c.index) for c in result.candidates]


@pytest.mark.parametrize("searcher, kw", [("random", {}), ("nsga2", {}), ("surrogate", {"round_size": 2}),
                                          ("evolution", {"round_size": 3}), ("ilp", {})])
def test_searchers_on_the_cluster_match_serial(cluster, digits_mlp, searcher, kw):
    """Every candidate (scheme, accuracy, order) of a searcher's batches scored on 2 workers
    equals the serial run's with the same seed; the batches really spread over both workers."""
    address, client = cluster
    model, evaluator = digits_mlp
    args = dict(searcher=searcher, n_evals=8, seed=1, **kw)
    serial, _ = run_search(model, evaluator(), cbops_latency, "60%", **args)
    with distributed.get_task_stream(client) as ts, ClusterEvaluator(evaluator(), address) as remote:
        spread, _ = run_search(model, remote, cbops_latency, "60%", **args)
    assert _cands(spread) == _cands(serial) and len(serial.candidates) == 8
    assert spread.best.bits == serial.best.bits and spread.rejected == serial.rejected
    evals = [t for t in ts.data if str(t["key"]).startswith("mico-eval")]
    assert len(evals) == 8                                   # each scheme once: the cache is the client's
    if searcher == "random":                                 # one batch of 8: both workers take part
        assert len({t["worker"] for t in evals}) == 2


def test_worker_killed_mid_search(cluster, digits_mlp):
    """SIGKILL a worker while it scores a candidate: Dask runs that evaluation again on a
    worker that lives, and the search returns the serial run's candidates, each scored once."""
    import os
    import signal
    import threading

    address, client = cluster
    model, evaluator = digits_mlp
    args = dict(searcher="random", n_evals=8, seed=3)
    serial, _ = run_search(model, evaluator(), cbops_latency, "60%", **args)
    killed: dict = {}
    stop = threading.Event()

    def killer():
        """Wait (polling the scheduler, bounded) until a worker holds an evaluation, then kill it."""
        while not stop.is_set() and not killed:
            busy = {w: ks for w, ks in client.processing().items()
                    if any(str(k).startswith("mico-eval") for k in ks)}
            if busy:
                victim = sorted(busy)[0]
                pid = client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)
                killed.update(worker=victim, keys=set(map(str, busy[victim])))
                return
            stop.wait(0.02)

    watcher = threading.Thread(target=killer, daemon=True)
    with ClusterEvaluator(evaluator(), address) as remote:
        watcher.start()
        try:
            spread, _ = run_search(model, remote, cbops_latency, "60%", **args)
        finally:
            stop.set()
            watcher.join(30)
    assert killed, "no worker was scoring a candidate while the search ran"
    assert _cands(spread) == _cands(serial) and len(serial.candidates) == 8
    assert spread.best.bits == serial.best.bits
    client.wait_for_workers(2, timeout=120)     # the nanny restarts it for the next test


def test_search_cli_local_cluster_same_scheme_as_serial(tmp_path):
    """`mico search --cluster local:2` writes the serial run's scheme, candidates and accuracies."""
    args = ("search", "--model", "mlp", "--searcher", "evolution", "--round-size", "2", "--budget-evals", "6",
            "--search-qat-steps", "10", "--epochs", "2", "--qat-epochs", "0", "--seed", "2", "--json")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = json.loads(mico(*args, "-o", tmp_path / "a" / "s.json").stdout)
    b = json.loads(mico(*args, "--cluster", "local:2", "-o", tmp_path / "b" / "s.json").stdout)
    assert b["candidates"] == a["candidates"] and len(a["candidates"]) == 6
    assert [(x["qa"], x["qw"]) for x in b["layers"]] == [(x["qa"], x["qw"]) for x in a["layers"]]
    assert b["accuracy"] == a["accuracy"] and b["cluster"] == "local:2" and "cluster" not in a


def test_validate_on_the_cluster_matches_local(cluster):
    """The deployments spread over 2 workers (each with its own host session): the same
    schemes, predictions, bit-exactness and timed layers as one local session."""
    from harness import registry
    from mpq.validate import validate, validate_on_cluster

    address, _ = cluster
    ds = load_dataset("digits", None)
    target = registry.get("host")
    with target.session() as s:
        here = validate(get_model("mlp", "digits"), "mlp", ds, s, target, cbops_latency, 3, seed=4)
    there = validate_on_cluster(get_model("mlp", "digits"), "mlp", ds, "host", {}, cbops_latency, 3, address, seed=4)

    def same(v):
        return [(r.label, r.bits, r.predicted, r.bit_exact, [(x["name"], x["kind"], x["predicted"]) for x in r.layers])
                for r in v.results]
    assert same(there) == same(here) and len(here.results) == 5
    assert all(r.bit_exact and r.measured > 0 for r in there.results) and there.unit == here.unit


def test_validate_cli_on_a_scheduler(tmp_path, cluster):
    address, _ = cluster
    r = mico("validate", "--model", "mlp", "--target", "host", "--schemes", "2", "--no-progress", "--json",
             "--cluster", address)
    doc = json.loads(r.stdout)
    assert [s["label"] for s in doc["schemes"]] == ["all-lowest", "all-8x8", "random-0", "random-1"]
    assert doc["summary"]["bit_exact"]


@pytest.mark.parametrize("args, text", [
    (("search", "--model", "mlp", "--epochs", "1", "--cluster", "tcp://127.0.0.1:9"),
     "cannot reach the Dask scheduler tcp://127.0.0.1:9"),
    (("search", "--model", "mlp", "--epochs", "1", "--cluster", "lokal:2"), "is malformed"),
    (("validate", "--model", "mlp", "--target", "host", "--cluster", "tcp://nohost"), "is malformed"),
])
def test_cluster_failures_are_one_sentence(tmp_path, args, text):
    r = mico(*args, "-o", tmp_path / "out.json", check=False, timeout=120)
    assert r.returncode != 0 and text in r.stderr
    errors = [line for line in r.stderr.splitlines() if not line.startswith("WARNING")]    # no --proxy: a warning
    assert "Traceback" not in r.stderr and len(errors) == 1 and errors[0].startswith("error: "), r.stderr
    assert not (tmp_path / "out.json").exists()
