"""The adaptive sweep plan (``mico sweep --plan adaptive:N``): stops, resumes, refuses.

The sweeps run on `bitfusion-model` (the analytic BitFusion target: the fastest
real target here, ~0.2 s a kernel) with --op restricted to one op.
"""

import json
import sqlite3

import numpy as np
import pytest

from harness import zoo_ranges
from harness.plans import parse_plan
from harness.spec import KernelSpec
from mico_cli import mico

TARGET = "bitfusion-model"


def _sweep(db, plan, *extra):
    r = mico("sweep", "--target", TARGET, "--plan", plan, "--store", db, "--no-progress", "--json", *extra)
    return json.loads(r.stdout)


def _stored(db, op):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT shape, qa, qw, status FROM measurements WHERE op=?", (op,)).fetchall()


def test_stops_at_n_shapes_and_a_rerun_measures_nothing(tmp_path):
    db = tmp_path / "s.db"
    s = _sweep(db, "adaptive:4:1", "--op", "matmul")          # 2 of the 4 shapes are matmuls
    rep = s["adaptive"]["matmul"]
    assert rep["stopped"] == "N" and rep["shapes"] == 2
    rows = _stored(db, "matmul")
    assert len({r[0] for r in rows}) == 2 and len(rows) == s["measured"] == 2 * 16
    assert all(r[3] == "ok" for r in rows)
    again = _sweep(db, "adaptive:4:1", "--op", "matmul")
    assert again["measured"] == 0 and again["skipped_existing"] == 32
    assert again["adaptive"]["matmul"]["shapes"] == 2
    # a longer plan of the same seed replays the shorter one's shapes, then measures one more
    longer = _sweep(db, "adaptive:6:1", "--op", "matmul")
    assert longer["skipped_existing"] == 32 and longer["measured"] == 16
    assert len({r[0] for r in _stored(db, "matmul")}) == 3


def test_target_mape_stops_before_n(tmp_path):
    db = tmp_path / "s.db"
    s = _sweep(db, "adaptive:20:2", "--op", "conv2d", "--target-mape", "1000")
    rep = s["adaptive"]["conv2d"]
    # the CV error is checked from 5 measured shapes on; 1000% is met at once
    assert rep["stopped"] == "target-mape" and rep["shapes"] == 5 < 10
    assert rep["cv_mape"] is not None and rep["cv_mape"] <= 1000
    assert [r["cv_mape"] is None for r in rep["rounds"]][:-1] == [True] * (len(rep["rounds"]) - 1)
    assert len({r[0] for r in _stored(db, "conv2d")}) == 5


@pytest.mark.parametrize("args, needle", [
    (["--plan", "adaptive:0"], "malformed"),
    (["--plan", "adaptive:x"], "malformed"),
    (["--plan", "adaptive:3:1:2"], "malformed"),
    (["--plan", "random:10", "--target-mape", "5"], "not one"),
    (["--plan", "adaptive:10", "--target-mape", "0"], "positive"),
    (["--plan", "adaptive:10", "--mode", "layer"], "kernels"),
])
def test_bad_arguments_are_one_sentence(tmp_path, args, needle):
    r = mico("sweep", "--target", TARGET, "--store", tmp_path / "s.db", *args, check=False)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert needle in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "s.db").exists()


def test_adaptive_plan_has_no_fixed_spec_list():
    p = parse_plan("adaptive:7:3")
    assert (p.n_random, p.seed, p.count("matmul"), p.count("conv2d")) == (7, 3, 4, 3)
    from harness.errors import UserError

    with pytest.raises(UserError, match="chooses its shapes"):
        list(p.specs())


def test_zoo_ranges_are_the_zoo_s():
    """The harness's copy of the zoo's shape ranges holds every zoo layer and is tight."""
    from mpq.zoo import zoo_shapes

    shapes = zoo_shapes()
    mm = np.array([s for o, s in shapes if o == "matmul"])
    cv = np.array([s for o, s in shapes if o == "conv2d"])
    assert set(cv[:, 0]) == {1}
    tokens = mm[mm[:, 0] > 1, 0]
    assert (tokens.min(), tokens.max()) == zoo_ranges.MATMUL["tokens"]
    assert zoo_ranges.MATMUL["rows"] == {"one": int((mm[:, 0] == 1).sum()), "tokens": len(tokens)}
    assert (mm[:, 1].min(), mm[:, 1].max()) == zoo_ranges.MATMUL["M"]
    assert (mm[:, 2].min(), mm[:, 2].max()) == zoo_ranges.MATMUL["K"]
    assert (mm[:, 1] * mm[:, 2]).max() == zoo_ranges.MATMUL["max_macs"]
    for i, f in ((1, "C"), (2, "H"), (3, "W"), (4, "K")):
        assert (cv[:, i].min(), cv[:, i].max()) == zoo_ranges.CONV2D[f], f
    assert (cv[:, 2] * cv[:, 3]).max() == zoo_ranges.CONV2D["hw"]
    assert max(zoo_ranges.conv_macs(tuple(s)) for s in cv) == zoo_ranges.CONV2D["max_macs"]
    windows = {}
    for s in cv:
        windows[tuple(int(x) for x in s[5:8])] = windows.get(tuple(int(x) for x in s[5:8]), 0) + 1
    assert windows == zoo_ranges.CONV2D["window"]


def test_candidates_are_valid_seeded_and_within_the_ranges():
    for op in ("matmul", "conv2d"):
        a = zoo_ranges.candidates(op, 200, 0)
        assert a == zoo_ranges.candidates(op, 200, 0) != zoo_ranges.candidates(op, 200, 1)
        assert len(set(a)) == len(a) == 200
        for sh in a:
            KernelSpec(op, sh, 2, 2)                         # a valid spec
            if op == "conv2d":
                assert zoo_ranges.conv_macs(sh) <= zoo_ranges.CONV2D["max_macs"]
                assert sh[2] * sh[3] <= zoo_ranges.CONV2D["hw"]


def test_committee_disagrees_most_far_from_the_measured_shapes():
    """Trained on small matmuls, the committee ranks a shape far outside them above one among them."""
    from proxy.adaptive import Sampler

    rng = np.random.default_rng(0)
    shapes = [(1, int(m), int(k)) for m, k in zip(rng.integers(8, 32, 8), rng.integers(32, 96, 8))]
    pairs = [(2, 2), (8, 8)]
    specs = [KernelSpec("matmul", sh, a, w) for sh in shapes for a, w in pairs]
    # a cost the terms cannot all explain: the committee's members disagree off the data
    y = [s.dims["M"] * s.dims["K"] * s.qa * (1 + 0.3 * rng.random()) + 500 for s in specs]
    smp = Sampler("matmul", "host", seed=0)
    smp.fit(specs, y)
    near, far = (1, 16, 64), (1, 256, 3072)
    assert smp.choose([near, far], pairs, 1) == [far]
    d = smp.disagreement([near, far], pairs)
    assert d[1] > d[0] > 0


def test_zoo_random_plan_is_the_adaptive_pool_in_order():
    p = parse_plan("zoo-random:5:4")
    assert p.size() == 5 * 16
    for op, n in (("matmul", 3), ("conv2d", 2)):
        assert list(p.shapes(op)) == zoo_ranges.candidates(op, 400, 4)[:n]
