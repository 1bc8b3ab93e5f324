"""`mico validate`: schemes, metrics, MiCo's two-point baseline, and a real run on the host."""

import json

import pytest

from mico_cli import mico
from mpq.validate import SchemeResult, metrics, random_schemes, two_point


def test_random_schemes_are_distinct_seeded_and_skip_the_end_points():
    a = random_schemes(4, 20, seed=3)
    assert a == random_schemes(4, 20, seed=3) and len(set(a)) == 20
    assert ((1, 1),) * 4 not in a and ((8, 8),) * 4 not in a
    assert len(random_schemes(1, 100, seed=0)) == 14        # 16 pairs minus the two uniform ones


def test_metrics_and_two_point_calibration():
    m = metrics([110, 90, 200], [100, 100, 200])
    assert m["mape"] == pytest.approx(20 / 3) and m["max_abs_pct"] == pytest.approx(10)
    assert m["spearman"] == pytest.approx(0.866, abs=1e-3)
    rs = [SchemeResult("all-lowest", [], 10.0, 120.0, True), SchemeResult("all-8x8", [], 30.0, 160.0, True)]
    slope, icpt = two_point(rs)
    assert slope == pytest.approx(2.0) and icpt == pytest.approx(100.0)
    assert two_point(rs[:1]) is None


def test_validate_on_host_is_bit_exact_and_reports_every_scheme(tmp_path):
    out = tmp_path / "v.json"
    store = tmp_path / "s.db"
    r = mico("validate", "--model", "mlp", "--target", "host", "--schemes", "3", "--images", "2", "--no-progress",
             "-o", out, "--store", store)
    doc = json.loads(out.read_text())
    assert doc["format"] == "mico-validation" and doc["summary"]["bit_exact"]
    labels = [s["label"] for s in doc["schemes"]]
    assert labels[:2] == ["all-lowest", "all-8x8"] and len(labels) == 5
    assert all(s["measured"] > 0 and s["predicted"] is None for s in doc["schemes"])
    assert all(len(s["layers"]) == 3 for s in doc["schemes"])       # fc1, fc2, fc3 timed
    assert "all bit-exact" in r.stdout and f"kept as validation 1 in {store}" in r.stdout
    # the store keeps it, and the report shows it without being given the file
    rep = json.loads(mico("report", "--store", store, "-o", tmp_path / "rep", "--json").stdout)
    assert [(v["model"], v["target"], v["n_schemes"]) for v in rep["validations"]] == [("mlp", "host", 5)]
    html = (tmp_path / "rep" / "index.html").read_text()
    assert 'id="validation"' in html and "random-2" in html


def test_report_draws_the_whole_model_parity_plot(tmp_path):
    from harness.store import Store
    from mpq.validate import Validation

    rs = [SchemeResult("all-lowest", [[1, 1]], 100.0, 104.0, True), SchemeResult("all-8x8", [[8, 8]], 400.0, 390.0, True),
          SchemeResult("random-0", [[4, 2]], 200.0, 210.0, True), SchemeResult("random-1", [[2, 8]], 250.0, 240.0, True)]
    v = Validation("lenet", "digits", "vexriscv-mico", "cycles", "p.json", rs)
    f = tmp_path / "v.json"
    f.write_text(json.dumps(v.to_dict()))
    with Store(tmp_path / "s.db") as st:
        assert st.validations() == []
    rep = json.loads(mico("report", "--store", tmp_path / "s.db", "--validation", f, "-o", tmp_path / "r",
                          "--json").stdout)
    (val,) = rep["validations"]
    assert val["png"] and (tmp_path / "r" / val["png"]).stat().st_size > 1000
    assert val["summary"]["two_point"]["n"] == 2
    html = (tmp_path / "r" / "index.html").read_text()
    assert "MiCo two-point calibration" in html and "+4.2%" not in html.split("random-0")[0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "mico-scheme", "version": 1}))
    r = mico("report", "--store", tmp_path / "s.db", "--validation", bad, "-o", tmp_path / "r2", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_validate_bad_input_is_one_sentence(tmp_path):
    r = mico("validate", "--model", "mlp", "--target", "nope", check=False)
    assert r.returncode == 2 and "unknown target" in r.stderr and "Traceback" not in r.stderr
    r = mico("validate", "--model", "mlp", "--target", "host", "--schemes", "-1", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_report_on_a_layer_mode_store_with_pools(tmp_path):
    """Layer-mode rows (pools are layer mode only) summarise and draw like kernel rows."""
    store = tmp_path / "s.db"
    mico("sweep", "--target", "host", "--plan", "model:lenet", "--mode", "layer", "--op", "maxpool", "--store", store,
         "--budget", "0.05", "--no-progress")
    rep = json.loads(mico("report", "--store", store, "-o", tmp_path / "r", "--json").stdout)
    assert rep["store"]["ok"] == 8 and any(h["op"] == "maxpool" for h in rep["heatmaps"])
