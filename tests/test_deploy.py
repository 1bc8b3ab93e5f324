"""End to end on the host: search a scheme, deploy it, check it bit-exact; the demo's report."""

import json

import pytest

from mico_cli import mico


@pytest.fixture(scope="module")
def scheme(tmp_path_factory):
    d = tmp_path_factory.mktemp("deploy")
    db = d / "s.db"
    mico("sweep", "--target", "host", "--plan", "random:30:1", "--store", db, "--jobs", "2", "--budget", "0.2",
         "--no-progress")
    mico("sweep", "--target", "host", "--plan", "random:12", "--store", db, "--jobs", "2", "--budget", "0.2",
         "--no-progress")
    mico("fit", "--store", db, "--target", "host", "--op", "all", "--features", "analytic", "-o", d / "proxy.json")
    mico("search", "--model", "lenet", "--dataset", "digits", "--proxy", d / "proxy.json", "--latency-budget", "80%",
         "--searcher", "evolution", "--budget-evals", "6", "--epochs", "8", "--qat-epochs", "1", "--search-qat-steps", "20",
         "-o", d / "scheme.json")
    return d


def test_deployed_digits_model_is_bit_exact(scheme):
    r = mico("deploy", "--scheme", scheme / "scheme.json", "--target", "host", "--json", "--no-progress")
    rep = json.loads(r.stdout)
    assert rep["bit_exact"] is True and rep["mismatches"] == 0 and rep["n_images"] == 360
    assert rep["accuracy"]["target"] == rep["accuracy"]["integer_reference"]
    assert rep["accuracy"]["target"] > 0.5
    lat = rep["latency"]
    assert lat["unit"] == "ns" and lat["measured_total_median"] > 0 and lat["predicted_total"] > 0
    kinds = [l["kind"] for l in lat["layers"]]
    assert kinds == ["conv", "pool", "conv", "pool", "linear", "linear"]
    assert all(l["predicted"] is not None for l in lat["layers"] if l["kind"] != "pool")
    assert json.loads((scheme / "deploy.json").read_text()) == {k: v for k, v in rep.items() if k != "output"}


def test_report_from_the_whole_loop(scheme):
    out = scheme / "report"
    mico("report", "--store", scheme / "s.db", "--proxy", scheme / "proxy.json", "--scheme", scheme / "scheme.json",
         "--deploy", scheme / "deploy.json", "-o", out)
    html = (out / "index.html").read_text()
    assert "bit-exact" in html.lower() or "bit_exact" in html.lower()
    assert len(list(out.glob("*.png"))) >= 4


def test_deploy_missing_scheme_is_one_sentence(tmp_path):
    r = mico("deploy", "--scheme", tmp_path / "nope.json", "--target", "host", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
