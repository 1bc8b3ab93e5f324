"""Search under a hard latency budget: budgets, Pareto sets, both searchers."""

import itertools

import numpy as np
import pytest
import torch

from harness.errors import UserError
from mpq.datasets import load_dataset
from mpq.evaluate import cbops_latency
from mpq.models import get_model
from mpq.search import (Candidate, EvolutionSearcher, PTQEvaluator, RandomSearcher, SchemeLatency, best_candidate,
                        make_searcher, pareto_front, parse_budget, run_search)
from mpq.train import set_seed, train_float

torch.set_num_threads(1)
BITS = (1, 2, 4, 8)


def test_parse_budget():
    assert parse_budget("60%", 1000.0, 10.0, "cycles").value == pytest.approx(600.0)
    assert parse_budget(" 12.5 % ", 1000.0, 10.0).value == pytest.approx(125.0)
    b = parse_budget("250", 1000.0, 10.0, "cycles")
    assert (b.text, b.value, b.unit) == ("250", 250.0, "cycles")
    assert parse_budget(1e3, 1000.0, 10.0).value == 1000.0
    assert parse_budget("2e2", 1000.0, 10.0).value == 200.0
    for bad, pat in [("fast", "neither a number"), ("-5", "positive"), ("0%", "positive"), ("5", "below the smallest"),
                     ("0.5%", "below the smallest"), ("nan", "positive")]:
        with pytest.raises(UserError, match=pat) as e:
            parse_budget(bad, 1000.0, 10.0, "cycles")
        assert str(e.value).endswith(".") and "\n" not in str(e.value)


def test_pareto_and_best():
    c = [Candidate(((8, 8),), 0.9, 10.0, index=0), Candidate(((4, 4),), 0.9, 5.0, index=1),
         Candidate(((2, 2),), 0.8, 6.0, index=2), Candidate(((1, 1),), 0.5, 1.0, index=3),
         Candidate(((1, 2),), 0.95, 20.0, index=4), Candidate(((2, 1),), 0.5, 1.0, index=5)]
    front = pareto_front(c)
    assert [x.index for x in front] == [3, 1, 4]
    assert best_candidate(c).index == 4
    assert best_candidate(c[:3]).index == 1            # tie on accuracy -> lower latency
    assert best_candidate([]) is None


def _brute_pareto(cands):
    return sorted((x for x in cands if not any(
        (y.latency <= x.latency and y.accuracy >= x.accuracy and (y.latency < x.latency or y.accuracy > x.accuracy))
        for y in cands)), key=lambda x: x.latency)


def synthetic_accuracy(scheme):
    """Deterministic stand-in: more bits -> more accuracy, layer 1 matters most."""
    w = [3.0, 1.0, 2.0, 0.5]
    return float(sum(wi * (np.log2(a) + np.log2(w_)) for wi, (a, w_) in zip(w, scheme)) / 39.0)


@pytest.fixture(scope="module")
def lat():
    return SchemeLatency(get_model("lenet", "digits"), cbops_latency, batch=1)


@pytest.mark.parametrize("kind", ["random", "evolution"])
@pytest.mark.parametrize("frac", [0.25, 0.6])
def test_searchers_respect_hard_budget(kind, frac, lat):
    budget = frac * lat.uniform(8, 8)
    calls = []

    def acc(s):
        calls.append(s)
        return synthetic_accuracy(s)

    res = make_searcher(kind, 4, acc, lat, budget, n_evals=30, seed=1).search()
    assert res.evaluations == len(res.candidates) == 30 == len(calls)
    assert len({c.bits for c in res.candidates}) == 30                # cache: no re-evaluation
    assert all(c.latency <= budget and lat(c.bits)[1] == c.latency for c in res.candidates)
    assert all(lat(s)[1] <= budget for s in calls)                      # nothing infeasible was evaluated
    assert [(c.latency, c.accuracy) for c in res.pareto] == sorted(
        {(c.latency, c.accuracy) for c in _brute_pareto(res.candidates)})
    assert res.best.accuracy == max(c.accuracy for c in res.candidates)
    assert res.best in res.pareto
    # deterministic for a seed
    res2 = make_searcher(kind, 4, synthetic_accuracy, lat, budget, n_evals=30, seed=1).search()
    assert [c.bits for c in res2.candidates] == [c.bits for c in res.candidates]


def test_evolution_finds_better_schemes_than_random(lat):
    budget = 0.4 * lat.uniform(8, 8)
    # the true optimum under the budget, by enumeration of all 16^4 schemes
    pairs = list(itertools.product(BITS, BITS))
    best = max((s for s in itertools.product(pairs, repeat=4) if lat(s)[1] <= budget), key=synthetic_accuracy)
    ev = np.mean([EvolutionSearcher(4, synthetic_accuracy, lat, budget, n_evals=60, seed=s).search().best.accuracy
                  for s in range(3)])
    rnd = np.mean([RandomSearcher(4, synthetic_accuracy, lat, budget, n_evals=60, seed=s).search().best.accuracy
                   for s in range(3)])
    assert ev >= rnd
    assert ev >= 0.9 * synthetic_accuracy(best)


def test_repair_reaches_tight_budget(lat):
    budget = lat.uniform(1, 1) * 1.05       # just above all-1x1
    s = RandomSearcher(4, synthetic_accuracy, lat, budget, n_evals=5, seed=0)
    fixed = s.repair(((8, 8),) * 4)
    assert fixed is not None and lat(fixed)[1] <= budget
    res = s.search()
    assert 1 <= res.evaluations <= 5 and all(c.latency <= budget for c in res.candidates)
    assert res.rejected > 0


def test_run_search_budget_below_all_1x1_is_user_error():
    m = get_model("mlp", "digits")
    with pytest.raises(UserError, match="below the smallest"):
        run_search(m, synthetic_accuracy, cbops_latency, "1", n_evals=3)
    with pytest.raises(UserError, match="unknown searcher"):
        run_search(m, synthetic_accuracy, cbops_latency, "50%", searcher="annealing", n_evals=3)


def test_ptq_search_on_digits_uses_validation_split():
    d = load_dataset("digits")
    xtr, ytr, xva, yva = d.split_validation(0.2, seed=0)
    set_seed(0)
    m = get_model("mlp", "digits")
    train_float(m, xtr, ytr, epochs=8, seed=0)
    ev = PTQEvaluator(m, xtr, ytr, xva, yva, calib_batches=2, qat_steps=5, seed=0)
    res, budget = run_search(m, ev, cbops_latency, "50%", searcher="evolution", n_evals=8, seed=0, unit="cbops")
    assert budget.unit == "cbops" and budget.value == pytest.approx(0.5 * SchemeLatency(m, cbops_latency).uniform(8, 8))
    assert res.evaluations == 8 and len(ev.cache) == 8
    assert all(c.latency <= budget.value for c in res.candidates)
    assert res.best.accuracy > 0.5
    # cached: asking again does not re-train
    assert ev(res.best.bits) == res.best.accuracy
    # validation accuracy is measured on the held-out split (287 images)
    assert abs(res.best.accuracy * len(yva) - round(res.best.accuracy * len(yva))) < 1e-9


def test_search_stops_when_the_feasible_space_is_exhausted():
    m = get_model("mlp", "digits")
    lat = SchemeLatency(m, cbops_latency)
    budget = lat.uniform(1, 1)          # with CBOPs only all-1x1 fits
    for kind in ("random", "evolution"):
        res = make_searcher(kind, 3, synthetic_accuracy_3, lat, budget, n_evals=10, seed=0).search()
        assert [c.bits for c in res.candidates] == [((1, 1),) * 3]
        assert res.best.bits == ((1, 1),) * 3


def synthetic_accuracy_3(scheme):
    return synthetic_accuracy(tuple(scheme) + ((1, 1),))


def test_latency_adapters_and_evaluate_model():
    from mpq.evaluate import bops_latency, evaluate_model, latency_fn_from_proxy, latency_unit, size_bits, total_bops
    from mpq.integer import build_integer_model
    from mpq.train import quantize

    class FakeProxy:
        unit = "cycles"

        def predict_specs(self, specs):
            return np.array([2.0 * s.macs + 7 for s in specs])

    torch.manual_seed(0)
    fn = latency_fn_from_proxy(FakeProxy())
    assert latency_unit(fn) == "cycles" and latency_unit(cbops_latency) == "cbops"
    d = load_dataset("digits")
    m = get_model("lenet", "digits")
    q = quantize(m, [(8, 4), (4, 4), (2, 8), (8, 8)], d.x_train, calib_batches=1)
    im = build_integer_model(q)
    specs = q.layer_specs(1)
    per, total = fn(specs)
    assert list(per) == [2.0 * s.macs + 7 for s in specs] and total == pytest.approx(sum(per))
    assert bops_latency(specs)[1] == total_bops(specs) == im.bops()
    assert size_bits(specs) == im.size_bits
    rep = evaluate_model(q, d.x_test[:50], d.y_test[:50], fn, int_model=im, float_model=q)
    assert rep.latency_unit == "cycles" and rep.latency_total == pytest.approx(total)
    assert rep.accuracy_integer == rep.accuracy_fakequant      # same integer accumulators
    assert 0 <= rep.accuracy_float <= 1 and rep.bops == im.bops()


def test_non_monotone_latency_budget_and_repair():
    """On the host a 1x1 kernel with padding can be slower than 8x8: the fastest
    scheme is not all-1x1, and repair must follow the latency model, not the bits."""
    from harness.spec import KernelSpec

    def lat_fn(specs):
        # 1-bit anything is 3x slower than 8x8; otherwise cost falls with max(qa, qw)
        per = np.array([s.macs * (3.0 if min(s.qa, s.qw) == 1 else max(s.qa, s.qw) / 8.0) for s in specs])
        return per, float(per.sum())

    model = get_model("lenet", "digits")
    lat = SchemeLatency(model, lat_fn)
    best, t = lat.fastest()
    assert all(p == (2, 2) for p in best) and t < lat.uniform(1, 1)
    budget = t * 1.01
    s = RandomSearcher(lat.n_layers, lambda sch: 0.5, lat, budget, n_evals=5, seed=0)
    fixed = s.repair(((1, 1),) * lat.n_layers)
    assert fixed is not None and lat(fixed)[1] <= budget
    from mpq.search import model_budget
    with pytest.raises(UserError, match="fastest pair"):
        model_budget(model, lat_fn, t * 0.5)
    _ = KernelSpec


def _chain_latency(n_layers: int, seed: int):
    """A latency function where each layer's cost depends on its pair and on the width it writes
    (the next layer's qa), as in layer mode -- with random, non-monotone costs."""
    rng = np.random.default_rng(seed)
    table = {(i, a, w, na): float(rng.uniform(10, 100)) for i in range(n_layers) for a in BITS for w in BITS
             for na in BITS}

    def fn(scheme):
        per = np.array([table[(i, *scheme[i], scheme[i + 1][0] if i + 1 < n_layers else 1)]
                        for i in range(n_layers)])
        return per, float(per.sum())
    return fn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fastest_scheme_is_exact_when_costs_depend_on_the_next_layer(seed):
    from mpq.search.latency import fastest_scheme

    n = 3
    fn = _chain_latency(n, seed)
    pairs = [(a, w) for a in BITS for w in BITS]
    brute = min(fn(s)[1] for s in itertools.product(pairs, repeat=n))
    scheme, total = fastest_scheme(fn, n)
    assert total == pytest.approx(brute) and fn(scheme)[1] == pytest.approx(total)
    # choosing each layer's fastest pair from uniform schemes alone misses it on some seeds
    per_pair = {p: fn((p,) * n)[0] for p in pairs}
    greedy = tuple(min(pairs, key=lambda p: per_pair[p][i]) for i in range(n))
    assert fn(greedy)[1] >= brute


def test_repair_reaches_a_budget_that_only_interacting_layers_meet():
    from mpq.search.latency import fastest_scheme

    n = 3
    fn = _chain_latency(n, 5)
    _, fastest = fastest_scheme(fn, n)
    s = EvolutionSearcher(n, lambda sch: 0.5, fn, budget=fastest * 1.02, n_evals=3, seed=0)
    for start in [((8, 8),) * n, ((1, 1),) * n, ((2, 8), (8, 1), (4, 4))]:
        fixed = s.repair(start)
        assert fixed is not None and fn(fixed)[1] <= fastest * 1.02


# ---- ilp, surrogate, nsga2 ---------------------------------------------------------------------

class SyntheticWithSensitivity:
    """synthetic_accuracy plus the per-layer sensitivities it implies (what ilp and
    surrogate read from a PTQEvaluator): the loss of layer i at (qa, qw)."""

    W = [3.0, 1.0, 2.0, 0.5]

    def __init__(self):
        self.calls = []

    def sensitivity(self, bits):
        return {(a, w): np.array([wi * (6 - np.log2(a) - np.log2(w)) for wi in self.W]) for a in bits for w in bits}

    def __call__(self, scheme):
        self.calls.append(scheme)
        return synthetic_accuracy(scheme)


@pytest.mark.parametrize("kind", ["ilp", "surrogate", "nsga2"])
def test_new_searchers_respect_budget_and_cache(kind, lat):
    budget = 0.5 * lat.uniform(8, 8)
    acc = SyntheticWithSensitivity()
    res = make_searcher(kind, 4, acc, lat, budget, n_evals=10, seed=2).search()
    assert 1 <= res.evaluations <= 10 and len(acc.calls) == res.evaluations
    assert len(set(acc.calls)) == len(acc.calls)                       # nothing scored twice
    assert all(lat(s)[1] <= budget for s in acc.calls)
    res2 = make_searcher(kind, 4, SyntheticWithSensitivity(), lat, budget, n_evals=10, seed=2).search()
    assert [c.bits for c in res2.candidates] == [c.bits for c in res.candidates]


def test_ilp_finds_the_enumerated_optimum(lat):
    """With an additive latency (CBOPs) the integer program's answer is the exact optimum
    of the summed sensitivity, found here by enumerating all 16^4 schemes."""
    from mpq.search import ILPSearcher

    budget = 0.4 * lat.uniform(8, 8)
    acc = SyntheticWithSensitivity()
    s = ILPSearcher(4, acc, lat, budget, n_evals=1, seed=0)
    pairs, cost, tab, t0 = s._tables()
    best = None
    for combo in itertools.product(range(len(pairs)), repeat=4):
        idx = np.array(combo)
        if t0 + tab[np.arange(4), idx].sum() <= budget * (1 + 1e-12):
            c = cost[np.arange(4), idx].sum()
            if best is None or c < best[0] - 1e-12:
                best = (c, combo)
    got = s.solve(budget, pairs, cost, tab, t0)
    assert lat(got)[1] <= budget
    assert sum(cost[i, pairs.index(p)] for i, p in enumerate(got)) == pytest.approx(best[0])
    with pytest.raises(UserError, match="sensitivities"):
        ILPSearcher(4, synthetic_accuracy, lat, budget, n_evals=2).search()


def test_ilp_and_surrogate_fronts_beat_random_at_a_quarter_of_the_evaluations(lat):
    from mpq.search import hypervolume

    budget = 0.7 * lat.uniform(8, 8)
    fronts = {}
    for kind, n in (("random", 40), ("ilp", 10), ("surrogate", 10)):
        r = make_searcher(kind, 4, SyntheticWithSensitivity(), lat, budget, n_evals=n, seed=0).search()
        fronts[kind] = [(c.latency, c.accuracy) for c in r.candidates]
    ref = min(a for f in fronts.values() for _, a in f)
    hv = {k: hypervolume(f, ref, budget) for k, f in fronts.items()}
    assert hv["ilp"] >= hv["random"] and hv["surrogate"] >= 0.9 * hv["random"], hv


def test_hypervolume():
    from mpq.search import hypervolume

    assert hypervolume([(5.0, 0.9)], 0.5, 10.0) == pytest.approx(0.5 * 0.4)
    assert hypervolume([(5.0, 0.9), (2.0, 0.7), (8.0, 0.8), (12.0, 1.0)], 0.5, 10.0) == pytest.approx(
        0.3 * 0.2 + 0.5 * 0.4)
    assert hypervolume([], 0.5, 10.0) == 0.0
