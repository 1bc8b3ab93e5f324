"""`mico zoo`: search + deploy of several models on the host, one report; bad input is one sentence."""

import json

from mico_cli import mico


def test_zoo_searches_and_deploys_each_model_and_writes_one_report(tmp_path):
    out = tmp_path / "z"
    r = mico("zoo", "--models", "mlp", "--budget-evals", "2", "--qat-epochs", "0", "--limit", "8", "--out", out)
    doc = json.loads((out / "zoo.json").read_text())
    (row,) = doc["models"]
    assert row["model"] == "mlp" and row["error"] is None and row["bit_exact"] and row["n_images"] == 8
    assert row["measured"] > 0 and row["budget_held"] is None      # CBOPs budget, ns measured: no verdict
    assert (out / row["report"]).exists()
    html = (out / "index.html").read_text()
    assert "mlp" in html and "report" in html and "mlp" in r.stdout


def test_zoo_refuses_unknown_models_in_one_sentence(tmp_path):
    r = mico("zoo", "--models", "mlp,nope", "--out", tmp_path / "z", check=False)
    assert r.returncode == 2 and "unknown model(s) nope" in r.stderr and "Traceback" not in r.stderr
