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
    r = mico("validate", "--model", "mlp", "--target", "host", "--schemes", "3", "--images", "2", "--no-progress",
             "-o", out)
    doc = json.loads(out.read_text())
    assert doc["format"] == "mico-validation" and doc["summary"]["bit_exact"]
    labels = [s["label"] for s in doc["schemes"]]
    assert labels[:2] == ["all-lowest", "all-8x8"] and len(labels) == 5
    assert all(s["measured"] > 0 and s["predicted"] is None for s in doc["schemes"])
    assert all(len(s["layers"]) == 3 for s in doc["schemes"])       # fc1, fc2, fc3 timed
    assert "all bit-exact" in r.stdout


def test_validate_bad_input_is_one_sentence(tmp_path):
    r = mico("validate", "--model", "mlp", "--target", "nope", check=False)
    assert r.returncode == 2 and "unknown target" in r.stderr and "Traceback" not in r.stderr
    r = mico("validate", "--model", "mlp", "--target", "host", "--schemes", "-1", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
