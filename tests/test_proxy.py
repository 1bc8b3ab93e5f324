"""Latency proxies: features, shape-grouped CV, models, JSON persistence, `mico fit`.

Latencies here are synthetic (a known formula plus noise, proxy/synthetic.py):
real measurements come from the sweep engine, which has its own tests.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from harness.errors import UserError
from harness.spec import KernelSpec
from harness.store import Measurement, Store
from proxy.cli import fit as fit_cmd
from proxy.cli import frame_training_set
from proxy.cv import cross_validate, grouped_splits, metrics, out_of_fold, shuffled_splits
from proxy.features import FEATURE_SETS, features, shape_groups
from proxy.model import LatencyProxy, ModelLatency, TrainingSet, load_proxies, save_proxies, training_digest
from proxy.synthetic import synthetic_dataset


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and ". " not in msg and "Traceback" not in msg


@pytest.fixture(scope="module")
def mm_data():
    return synthetic_dataset("matmul", n_shapes=30, seed=1, noise=0.02)


@pytest.fixture(scope="module")
def conv_data():
    return synthetic_dataset("conv2d", n_shapes=20, seed=2, noise=0.02)


# ---- features -------------------------------------------------------------------
MM = KernelSpec("matmul", (2, 3, 4), 2, 8)  # MACs = 2*3*4 = 24
CV = KernelSpec("conv2d", (1, 3, 8, 8, 4, 3, 1, 1, 1), 4, 1)  # out 8x8, red 27, outputs 256 -> MACs 6912


def test_features_hand_computed_matmul():
    X, names = features([MM], "raw", log=False)
    assert names == ["N", "M", "K", "qa", "qw"]
    assert X.tolist() == [[2, 3, 4, 2, 8]]
    X, _ = features([MM], "raw")
    np.testing.assert_allclose(X, np.log1p([[2, 3, 4, 2, 8]]))
    X, names = features([MM], "bops", log=False)
    assert names == ["bops"] and X.tolist() == [[24 * 2 * 8]]
    X, names = features([MM], "cbops", log=False)
    assert names == ["cbops"] and X.tolist() == [[24 * 8]]
    np.testing.assert_allclose(features([MM], "cbops")[0], [[math.log1p(192)]])
    X, names = features([MM], "cbops+", log=False)
    assert names == ["cbops", "weight_loads", "act_loads", "macs", "N", "M", "K"]
    assert X.tolist() == [[192, 24 * 8, 24 * 2, 24, 2, 3, 4]]


def test_features_hand_computed_conv2d():
    X, names = features([CV], "cbops+", log=False)
    assert names == ["cbops", "weight_loads", "act_loads", "macs", "N", "C", "H", "W", "K", "KS", "S", "P", "G"]
    assert X.tolist() == [[6912 * 4, 6912 * 1, 6912 * 4, 6912, 1, 3, 8, 8, 4, 3, 1, 1, 1]]
    X, names = features([CV], "raw", log=False)
    assert names[-2:] == ["qa", "qw"] and X.tolist() == [[1, 3, 8, 8, 4, 3, 1, 1, 1, 4, 1]]
    assert features([CV], "bops", log=False)[0].tolist() == [[6912 * 4]]


def test_frame_adapter_gives_the_same_specs():
    specs = [MM, KernelSpec("matmul", (5, 6, 7), 1, 1)]
    df = pd.DataFrame([{"op": s.op, "qa": s.qa, "qw": s.qw, "value": 10.0 + i, "unit": "ns", **s.dims}
                       for i, s in enumerate(specs)])
    ts = frame_training_set(df)
    assert (ts.op, ts.specs, ts.values, ts.unit) == ("matmul", specs, [10.0, 11.0], "ns")
    for name in FEATURE_SETS:
        np.testing.assert_array_equal(features(ts.specs, name)[0], features(specs, name)[0])
    with pytest.raises(UserError, match="no column"):
        frame_training_set(df.drop(columns="K"))
    # the library takes KernelSpecs only: a table is converted at the CLI edge
    with pytest.raises(UserError, match="KernelSpec"):
        features([df.iloc[0]], "cbops")


def test_features_errors_and_mixed_ops():
    assert features([MM, CV], "cbops", log=False)[0].ravel().tolist() == [192, 6912 * 4]
    with pytest.raises(UserError, match="single op"):
        features([MM, CV], "raw")
    with pytest.raises(UserError, match="unknown feature set"):
        features([MM], "flops")
    X, names = features([], "cbops+", op="conv2d")
    assert X.shape == (0, 13)


# ---- grouped cross-validation ------------------------------------------------------------
def test_grouped_folds_never_split_a_shape(mm_data):
    specs, _ = mm_data
    groups = shape_groups(specs)
    folds = grouped_splits(specs)
    assert len(folds) == 5
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested.tolist()) == list(range(len(specs)))  # every row tested exactly once
    for tr, te in folds:
        assert set(groups[tr]).isdisjoint(groups[te])
        assert {specs[i].shape_str for i in tr}.isdisjoint({specs[i].shape_str for i in te})
        # every bit-width of a held-out shape is held out
        for g in set(groups[te]):
            assert set(np.flatnonzero(groups == g)) <= set(te.tolist())


def test_grouped_folds_count_and_too_few_shapes():
    specs, _ = synthetic_dataset("matmul", n_shapes=3, seed=5)
    assert len(grouped_splits(specs)) == 3
    one, _ = synthetic_dataset("matmul", n_shapes=1, seed=5)
    with pytest.raises(UserError, match="at least 2 different shapes") as e:
        grouped_splits(one)
    assert one_sentence(str(e.value))


def test_shuffled_folds_do_split_shapes(mm_data):
    specs, _ = mm_data
    groups = shape_groups(specs)
    assert any(not set(groups[tr]).isdisjoint(groups[te]) for tr, te in shuffled_splits(len(specs)))


def test_metrics_hand_computed():
    m = metrics([100, 200, 400, 800], [104, 180, 400, 1000])
    assert m["mape"] == pytest.approx(100 * (0.04 + 0.1 + 0 + 0.25) / 4)
    assert m["within5"] == 50.0 and m["within10"] == 75.0
    assert m["spearman"] == pytest.approx(1.0) and m["n"] == 4
    assert metrics([1, 2, 3], [5, 5, 5])["spearman"] is None


def test_linear_cbops_recovers_known_formula(mm_data):
    specs, y = mm_data
    p = LatencyProxy("matmul", features="cbops", model="linear").fit(specs, y)
    assert p.cv_["mape"] < 4.0 and p.cv_["within10"] > 95 and p.cv_["spearman"] > 0.99
    assert p.cv_["n"] == len(specs) and p.cv_["n_groups"] == 30 and p.cv_["scheme"] == "grouped"
    lin = p.regressor_[-1]
    assert np.all(lin.coef_ >= 0)
    # the slope in original units: latency ~ a*CBOPs + b with a = 0.05
    a = lin.coef_[0] / p.regressor_[0].scale_[0]
    assert a == pytest.approx(0.05, rel=0.05)
    # the wrong cost model (BOPs) is clearly worse on the same data: the check can fail
    bad = cross_validate(LatencyProxy("matmul", features="bops", model="linear"), specs, y)
    assert bad["mape"] > 5 * p.cv_["mape"]


def test_shuffled_cv_overstates_accuracy_when_shape_effects_dominate():
    specs, y = synthetic_dataset("matmul", n_shapes=20, seed=3, noise=0.02, shape_effect=0.8)
    est = LatencyProxy("matmul", features="cbops+", model="rf")
    grouped = cross_validate(est, specs, y, scheme="grouped")
    shuffled = cross_validate(est, specs, y, scheme="shuffled")
    assert shuffled["mape"] * 3 < grouped["mape"]
    assert shuffled["within10"] > grouped["within10"] + 30


def test_out_of_fold_predictions_come_from_models_that_never_saw_the_shape(mm_data):
    specs, y = mm_data
    y2 = y.copy()
    # poison one shape: a model that saw it would predict it closely, a grouped one cannot
    g = shape_groups(specs)
    y2[g == 0] *= 50
    _, pred, _ = out_of_fold(LatencyProxy("matmul", "cbops+", "gbrt"), specs, y2)
    assert np.all(pred[g == 0] < y2[g == 0] / 5)


def test_predict_and_attributes_from_store_rows_and_frame(tmp_path):
    specs, y = synthetic_dataset("conv2d", n_shapes=6, seed=4)
    path = _store(tmp_path, {"conv2d": (specs, y)})
    with Store(path, readonly=True) as st:
        rows = st.rows("tgt", "conv2d")
        df = st.frame("tgt", "conv2d")
    ts = TrainingSet.from_rows(rows, "conv2d")
    assert ts.specs == list(specs) and ts.values == pytest.approx(list(y))
    p = ts.fit("cbops", "gbrt")
    assert (p.unit, p.target, p.n_train, p.fingerprint) == ("cycles", "tgt", len(specs), "fp-tgt")
    assert p.cv_["n_groups"] == 6
    q = frame_training_set(df).fit("cbops", "gbrt")
    np.testing.assert_array_equal(q.predict(specs), p.predict(specs))
    assert (q.unit, q.target, q.fingerprint) == (p.unit, p.target, p.fingerprint)
    np.testing.assert_array_equal(p.predict(specs), p.predict_specs(specs))
    assert p.predict(specs).shape == (len(specs),) and np.all(p.predict(specs) > 0)
    with pytest.raises(UserError, match="only conv2d"):
        p.predict([MM])


def test_fit_rejects_bad_input(mm_data):
    specs, y = mm_data
    with pytest.raises(UserError, match="positive"):
        LatencyProxy("matmul").fit(specs, -y, cv=False)
    with pytest.raises(UserError, match="latencies"):
        LatencyProxy("matmul").fit(specs, y[:-1], cv=False)
    with pytest.raises(UserError, match="unknown model"):
        LatencyProxy("matmul", model="svm").fit(specs, y)
    with pytest.raises(UserError, match="not fitted"):
        LatencyProxy("matmul").predict(specs)


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    p = LatencyProxy("conv2d", features="cbops+", model="rf", random_state=7)
    q = clone(p)
    assert q.get_params() == {"op": "conv2d", "features": "cbops+", "model": "rf", "random_state": 7, "lookup": True,
                              "family": None, "transfer": None}


# ---- persistence ---------------------------------------------------------------------------
@pytest.mark.parametrize("model,feat", [("linear", "cbops"), ("linear", "cbops+"), ("rf", "cbops+"), ("gbrt", "raw")])
def test_json_roundtrip_exact(tmp_path, mm_data, model, feat):
    specs, y = mm_data
    p = LatencyProxy("matmul", features=feat, model=model, random_state=3).fit(specs, y, cv=False, unit="cycles",
                                                                              target="t", fingerprint="abc")
    p.cv_ = {"mape": 1.5}
    new = [KernelSpec("matmul", (7, 100, 300), a, w) for a in (1, 2, 4, 8) for w in (1, 8)]
    before = p.predict(new)
    path = p.to_json(tmp_path / "p.json")
    q = LatencyProxy.load(path)
    np.testing.assert_array_equal(q.predict(new), before)
    np.testing.assert_array_equal(q.predict(specs), p.predict(specs))
    assert q.get_params() == p.get_params()
    assert (q.unit, q.target, q.fingerprint, q.n_train, q.cv_) == ("cycles", "t", "abc", len(specs), {"mape": 1.5})
    doc = json.loads(path.read_text())
    assert doc["format"] == "mico-proxy" and doc["version"] == 1 and list(doc["proxies"]) == ["matmul"]
    e = doc["proxies"]["matmul"]
    assert e["digest"] == training_digest(specs, y) and e["digest"].startswith("sha256:")
    assert len(e["training"]["specs"]) == len(specs)
    assert b"pickle" not in path.read_bytes()


def test_multi_op_file_and_model_latency(tmp_path, mm_data, conv_data):
    pm = LatencyProxy("matmul").fit(*mm_data, cv=False, unit="cycles")
    pc = LatencyProxy("conv2d", model="gbrt").fit(*conv_data, cv=False, unit="cycles")
    path = save_proxies({"matmul": pm, "conv2d": pc}, tmp_path / "both.json")
    ml = load_proxies(path, other=1000.0)
    assert ml.ops == ["conv2d", "matmul"] and ml.unit == "cycles"
    layers = [mm_data[0][0], conv_data[0][5], mm_data[0][40], conv_data[0][5]]
    per, total = ml.predict(layers)
    expect = [pm.predict([layers[0]])[0], pc.predict([layers[1]])[0], pm.predict([layers[2]])[0],
              pc.predict([layers[3]])[0]]
    np.testing.assert_array_equal(per, expect)
    assert total == pytest.approx(sum(expect) + 1000.0)
    assert ml.total(layers) == total and ml.predict(layers)[1] == total  # cached path agrees
    np.testing.assert_array_equal(ml.predict_specs(layers), per)
    np.testing.assert_array_equal(LatencyProxy.load(path, op="conv2d").predict(conv_data[0]), pc.predict(conv_data[0]))
    with pytest.raises(UserError, match="choose one with op="):
        LatencyProxy.load(path)
    only_mm = ModelLatency({"matmul": pm})
    assert only_mm.total([]) == 0.0
    with pytest.raises(UserError, match="no conv2d proxy") as e:
        only_mm.predict([conv_data[0][0]])
    assert one_sentence(str(e.value)) and "--op" not in str(e.value)   # library errors name no CLI flag
    ns = LatencyProxy("conv2d").fit(*conv_data, cv=False, unit="ns")
    with pytest.raises(UserError, match="different units"):
        ModelLatency({"matmul": pm, "conv2d": ns})


def _tamper(path, fn):
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_tampered_training_data_is_rejected(tmp_path, mm_data):
    path = LatencyProxy("matmul").fit(*mm_data, cv=False).to_json(tmp_path / "p.json")

    def change_value(d):
        d["proxies"]["matmul"]["training"]["values"][3] *= 1.5

    _tamper(path, change_value)
    with pytest.raises(UserError, match="digest") as e:
        LatencyProxy.load(path)
    assert one_sentence(str(e.value))

    path2 = LatencyProxy("matmul").fit(*mm_data, cv=False).to_json(tmp_path / "p2.json")
    _tamper(path2, lambda d: d["proxies"]["matmul"].update(digest="sha256:" + "0" * 64))
    with pytest.raises(UserError, match="digest"):
        load_proxies(path2)


@pytest.mark.parametrize("content,match", [
    ("not json at all", "not valid JSON"),
    ("[1, 2]", "not a mico proxy file"),
    (json.dumps({"format": "something-else", "version": 1}), "not a mico proxy file"),
    (json.dumps({"format": "mico-proxy", "version": 9, "proxies": {}}), "version 9"),
    (json.dumps({"format": "mico-proxy", "version": 1, "proxies": {}}), "holds no proxies"),
    (json.dumps({"format": "mico-proxy", "version": 1, "proxies": {"gemm": {}}}), "unknown op"),
    (json.dumps({"format": "mico-proxy", "version": 1, "proxies": {"matmul": {"config": {}}}}), "malformed"),
    (json.dumps({"format": "mico-proxy", "version": 1, "proxies": {"matmul": {
        "config": {"model": "linear", "evil": 1}, "training": {"specs": [], "values": []}, "digest": ""}}}),
     "malformed"),
])
def test_malformed_or_foreign_json(tmp_path, content, match):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(UserError, match=match) as e:
        LatencyProxy.load(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_bad_kernel_inside_proxy_file(tmp_path, mm_data):
    path = LatencyProxy("matmul").fit(*mm_data, cv=False).to_json(tmp_path / "p.json")

    def bad_bits(d):
        e = d["proxies"]["matmul"]
        e["training"]["specs"][0]["qa"] = 9
        e["digest"] = "irrelevant"

    _tamper(path, bad_bits)
    with pytest.raises(UserError, match="qa=9 is not a supported bit-width"):
        LatencyProxy.load(path)
    with pytest.raises(UserError, match="does not exist"):
        LatencyProxy.load(tmp_path / "missing.json")


# ---- `mico fit` ------------------------------------------------------------------------------
def _store(tmp_path, data: dict, target="tgt", name="s.sqlite") -> str:
    """A real SQLite store with one target and ok Measurements of `data` {op: (specs, y)}."""
    path = tmp_path / name
    fp = f"fp-{target}"
    with Store(path) as st:
        st.add_target(fp, target, {"test": True})
        rows = []
        for specs, y in data.values():
            for s, v in zip(specs, np.asarray(y).tolist()):
                rows.append(Measurement(spec=s, fingerprint=fp, status="ok", unit="cycles", raw=[v, v], median=v,
                                        iqr=0.0, min=v, checksum_ok=True))
        # a failed measurement must be ignored by fit
        s0 = next(iter(data.values()))[0][0]
        rows.append(Measurement(spec=KernelSpec(s0.op, (999, 9, 9) if s0.op == "matmul" else (1, 3, 9, 9, 8, 3, 1, 0, 1),
                                                8, 8), fingerprint=fp, status="timeout", unit="cycles"))
        st.put_many(rows)
    return str(path)


def test_cli_fit_json(tmp_path, mm_data):
    store = _store(tmp_path, {"matmul": mm_data})
    out = tmp_path / "proxy.json"
    r = CliRunner().invoke(fit_cmd, ["--store", store, "--target", "tgt", "--op", "matmul", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    for k in ("mape", "within5", "within10", "spearman", "n", "n_groups", "op", "target", "features", "model",
              "unit", "output"):
        assert k in m
    assert (m["op"], m["target"], m["features"], m["model"], m["unit"]) == ("matmul", "tgt", "cbops", "linear", "cycles")
    assert m["n"] == len(mm_data[0]) and m["n_groups"] == 30 and m["mape"] < 4 and m["output"] == str(out)
    p = LatencyProxy.load(out)
    assert p.cv_["mape"] == m["mape"] and p.target == "tgt"
    direct = LatencyProxy("matmul").fit(*mm_data, cv=False)
    np.testing.assert_allclose(p.predict(mm_data[0]), direct.predict(mm_data[0]), rtol=1e-9)


def test_cli_fit_text_and_all_ops(tmp_path, mm_data, conv_data):
    store = _store(tmp_path, {"matmul": mm_data, "conv2d": conv_data})
    out = tmp_path / "both.json"
    r = CliRunner().invoke(fit_cmd, ["--store", store, "--target", "tgt", "--op", "all", "--model", "linear",
                                     "--features", "cbops+", "-o", str(out)])
    assert r.exit_code == 0, r.output
    for word in ("MAPE", "within +-5%", "within +-10%", "Spearman rho", "matmul", "conv2d", f"wrote {out}"):
        assert word in r.output
    ml = load_proxies(out)
    assert ml.ops == ["conv2d", "matmul"]
    assert ml.proxies["conv2d"].get_params()["features"] == "cbops+"


@pytest.mark.parametrize("case,match", [
    ("missing-store", "does not exist"),
    ("unknown-target", "no measurements for target"),
    ("no-rows", "no successfully measured conv2d kernels"),
    ("one-shape", "only 1 shape"),
])
def test_cli_fit_user_errors(tmp_path, case, match):
    specs, y = synthetic_dataset("matmul", n_shapes=4, seed=9)
    store = _store(tmp_path, {"matmul": (specs, y)})
    args = ["--store", store, "--target", "tgt", "--op", "matmul", "-o", str(tmp_path / "p.json")]
    if case == "missing-store":
        args[1] = str(tmp_path / "nope.sqlite")
    elif case == "unknown-target":
        args[3] = "other"
    elif case == "no-rows":
        args[5] = "conv2d"
    elif case == "one-shape":
        store1 = _store(tmp_path, {"matmul": (specs[:16], y[:16])}, name="one.sqlite")
        args[1] = store1
    r = CliRunner().invoke(fit_cmd, args)
    assert r.exit_code != 0
    assert isinstance(r.exception, UserError), r.exception
    msg = str(r.exception)
    assert match in msg and "\n" not in msg
    assert not (tmp_path / "p.json").exists()


def test_cli_fit_through_mico_group_exits_2(tmp_path):
    cli = pytest.importorskip("harness.cli", reason="harness.cli is not importable yet")
    r = CliRunner().invoke(cli.main, ["fit", "--store", str(tmp_path / "nope.sqlite"), "--target", "t", "--op",
                                      "matmul", "-o", str(tmp_path / "p.json")])
    assert r.exit_code == 2
    assert "error:" in r.output and "does not exist" in r.output and "Traceback" not in r.output


def test_analytic_features_split_macs_by_pair():
    from harness.spec import KernelSpec
    from proxy.features import features

    X, names = features([KernelSpec("matmul", (2, 3, 5), 4, 2), KernelSpec("conv2d", (1, 2, 5, 5, 3, 3, 1, 0, 1), 1, 8)][:1],
                        "analytic", log=False)
    row = dict(zip(names, X[0]))
    assert row["macs_4x2"] == 30 and sum(v for k, v in row.items() if k.startswith("macs_")) == 30
    assert row["macs_pad_4x2"] == 0
    assert row["act_4b"] == 10 and row["wgt_2b"] == 15 and row["outputs"] == 6
    X, names = features([KernelSpec("conv2d", (1, 2, 5, 5, 3, 3, 1, 0, 1), 1, 8)], "analytic", log=False)
    row = dict(zip(names, X[0]))
    # 3x3 output pixels, reduction 2*3*3 = 18, 3 output channels
    assert row["macs_1x8"] == 9 * 18 * 3 and row["act_1b"] == 9 * 18 and row["wgt_8b"] == 3 * 18 and row["outputs"] == 27


def test_analytic_features_split_padded_windows():
    from harness.spec import KernelSpec
    from proxy.features import features

    # 4x4 input, 3x3 kernel, padding 1: 12 of the 16 windows touch the padding
    X, names = features([KernelSpec("conv2d", (1, 2, 4, 4, 3, 3, 1, 1, 1), 2, 2)], "analytic", log=False)
    row = dict(zip(names, X[0]))
    assert row["macs_2x2"] == 4 * 18 * 3 and row["macs_pad_2x2"] == 12 * 18 * 3
    # 6x6 input: the 4x4 centre of the 6x6 output is interior
    X, names = features([KernelSpec("conv2d", (1, 2, 6, 6, 3, 3, 1, 1, 1), 2, 2)], "analytic", log=False)
    row = dict(zip(names, X[0]))
    assert row["macs_2x2"] == 16 * 18 * 3 and row["macs_pad_2x2"] == 20 * 18 * 3
