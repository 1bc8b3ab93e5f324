"""`mico search` end to end on digits (small budgets), scheme.json + weights,
and load_scheme for the deploy code."""

import json

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.errors import UserError
from mpq.datasets import load_dataset
from mpq.evaluate import integer_accuracy
from mpq.scheme import load_scheme, read_scheme
from mpq.train import accuracy

torch.set_num_threads(1)
FAST = ["--model", "lenet", "--epochs", "8", "--budget-evals", "6", "--qat-epochs", "1", "--search-qat-steps", "5"]


@pytest.fixture(scope="module")
def proxy_file(tmp_path_factory):
    from proxy.model import LatencyProxy, save_proxies
    from proxy.synthetic import synthetic_dataset

    proxies = {}
    for op in ("matmul", "conv2d"):
        specs, y = synthetic_dataset(op, n_shapes=12, seed=3)
        proxies[op] = LatencyProxy(op, "cbops", "linear").fit(specs, y, cv=False, unit="cycles")
    return save_proxies(proxies, tmp_path_factory.mktemp("proxy") / "proxy.json")


def run(args):
    return CliRunner().invoke(main, ["search", *map(str, args)], catch_exceptions=False)


def test_search_writes_scheme_and_weights(tmp_path, proxy_file):
    out = tmp_path / "run" / "scheme.json"
    r = run([*FAST, "--proxy", proxy_file, "--latency-budget", "50%", "--searcher", "random", "-o", out, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc == json.loads(out.read_text())
    assert doc["format"] == "mico-scheme" and doc["version"] == 1
    assert (doc["model"], doc["dataset"], doc["seed"], doc["searcher"]) == ("lenet", "digits", 0, "random")
    assert doc["weights"] == "scheme.pt" and (out.parent / "scheme.pt").is_file()
    assert [l["name"] for l in doc["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    assert [l["kind"] for l in doc["layers"]] == ["conv2d", "conv2d", "linear", "linear"]
    assert all(l["spec"]["qa"] == l["qa"] and l["spec"]["qw"] == l["qw"] for l in doc["layers"])
    pl = doc["predicted_latency"]
    assert pl["unit"] == "cycles" and doc["budget"]["unit"] == "cycles" and doc["budget"]["text"] == "50%"
    assert pl["total"] <= doc["budget"]["value"] and len(pl["per_layer"]) == 4
    assert pl["total"] == pytest.approx(sum(pl["per_layer"]))
    assert doc["evaluations"] == 6 and doc["pareto"] and doc["proxy"] == str(proxy_file)
    assert all(p["latency"] <= doc["budget"]["value"] for p in doc["pareto"])
    assert doc["bops"] > 0 and doc["size_bits"] > 0
    acc = doc["accuracy"]
    assert acc["float"] > 0.9 and acc["fakequant"] > 0.5 and abs(acc["integer"] - acc["fakequant"]) <= 0.01
    assert doc["train"]["float_cached"] is False

    # load_scheme: the deploy side gets the same numbers back
    model, im, d2 = load_scheme(out)
    assert d2.to_dict() == doc and not model.training
    assert im.scheme == tuple((l["qa"], l["qw"]) for l in doc["layers"])
    data = load_dataset("digits")
    assert accuracy(model, data.x_test, data.y_test) == pytest.approx(acc["fakequant"])
    assert integer_accuracy(im, data.x_test, data.y_test) == pytest.approx(acc["integer"])
    assert im.specs(1)[0].to_dict() == doc["layers"][0]["spec"]
    assert im.input_bits == doc["input"]["bits"] and im.input_scale == doc["input"]["scale"]

    # the float checkpoint is reused on the second run (keyed by model, dataset, seed)
    r2 = run([*FAST, "--proxy", proxy_file, "--latency-budget", "50%", "--searcher", "evolution",
              "-o", out.parent / "second.json"])
    assert r2.exit_code == 0, r2.output
    assert "fake-quant" in r2.stdout and "pareto front" in r2.stdout
    d3 = read_scheme(out.parent / "second.json")
    assert d3.train["float_cached"] is True and d3.accuracy["float"] == acc["float"]
    assert (out.parent / "second.pt").is_file()


def test_search_user_errors_exit_2(tmp_path, proxy_file):
    cases = [
        ([*FAST, "--proxy", proxy_file, "--latency-budget", "1", "-o", tmp_path / "a.json"], "below the smallest"),
        ([*FAST, "--proxy", tmp_path / "missing.json", "-o", tmp_path / "b.json"], "does not exist"),
        ([*FAST, "--dataset", "mnist", "-o", tmp_path / "c.json"], "--data-dir"),
        ([*FAST, "--dataset", "mnist", "--data-dir", tmp_path / "nope", "-o", tmp_path / "c.json"], "does not exist"),
        ([*FAST, "--latency-budget", "soon", "-o", tmp_path / "d.json"], "neither a number"),
        ([*FAST, "--size-budget", "lots", "-o", tmp_path / "e.json"], "not a byte count"),
        ([*FAST, "--ram-budget", "0", "-o", tmp_path / "e.json"], "positive number of bytes"),
        ([*FAST, "--proxy", proxy_file, "--size-budget", "100", "-o", tmp_path / "e.json"],
         "below what the smallest scheme needs"),
    ]
    for args, pat in cases:
        r = CliRunner().invoke(main, ["search", *map(str, args)])
        assert r.exit_code == 2, (args, r.output)
        lines = [l for l in r.output.splitlines() if l.startswith("error:")]
        assert len(lines) == 1 and pat in lines[0], r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "a.json").exists()


def test_load_scheme_errors(tmp_path):
    p = tmp_path / "s.json"
    with pytest.raises(UserError, match="does not exist"):
        load_scheme(p)
    p.write_text("{}")
    with pytest.raises(UserError, match="not a mico scheme"):
        load_scheme(p)
    p.write_text(json.dumps({"format": "mico-scheme", "version": 1, "model": "mlp", "dataset": "digits",
                             "layers": [{"name": n, "qa": 8, "qw": 8} for n in ("fc1", "fc2", "fc3")],
                             "weights": "s.pt"}))
    with pytest.raises(UserError, match="weights"):
        load_scheme(p)
    (tmp_path / "s.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot load"):
        load_scheme(p)


def _scheme_dict(**over):
    d = {"format": "mico-scheme", "version": 1, "model": "lenet", "dataset": "digits", "weights": "s.pt",
         "layers": [{"name": "conv1", "kind": "conv2d", "qa": 8, "qw": 4,
                     "spec": {"op": "conv2d", "shape": [1, 1, 8, 8, 6, 5, 1, 0, 1], "qa": 8, "qw": 4}},
                    {"name": "fc1", "kind": "linear", "qa": 2, "qw": 2, "spec": None}],
         "predicted_latency": {"unit": "ns", "total": 3.0, "per_layer": [1.0, 2.0], "other_ops": 0.5},
         "written_by_a_newer_mico": {"kept": True}}
    d.update(over)
    return d


def test_scheme_doc_round_trip_and_typed_fields(tmp_path):
    from harness.documents import write_document
    from harness.spec import KernelSpec
    from mpq.scheme import SchemeDoc

    p = write_document(tmp_path / "s.json", _scheme_dict())
    doc = read_scheme(p)
    assert isinstance(doc, SchemeDoc) and doc.bits == ((8, 4), (2, 2)) and doc.layer_names == ["conv1", "fc1"]
    assert doc.layers[0].spec == KernelSpec("conv2d", (1, 1, 8, 8, 6, 5, 1, 0, 1), 8, 4)
    assert doc.scale_policy == "mico" and doc.accuracy == {} and doc.get("predicted_latency")["other_ops"] == 0.5
    again = SchemeDoc.from_dict(doc.to_dict())
    assert again == doc and doc.to_dict()["written_by_a_newer_mico"] == {"kept": True}


@pytest.mark.parametrize("over,match", [
    ({"layers": [{"name": "a", "qa": 8, "qw": 8, "spec": {"op": "matmul", "shape": [1, 2, 3], "qa": 2, "qw": 8}}]},
     "says 8x8 but its kernel spec says 2x8"),
    ({"layers": [{"name": "a", "qa": 9, "qw": 8}]}, "layer 'a' has qa=9"),
    ({"layers": []}, "'layers' is not a non-empty list"),
    ({"accuracy": 0.9}, "'accuracy' is a float, not a dict"),
    ({"model": None}, "'model' is not a string"),
    ({"version": 2}, "newer than the version 1"),
])
def test_scheme_doc_refuses_inconsistent_documents(tmp_path, over, match):
    from harness.documents import write_document

    p = write_document(tmp_path / "s.json", _scheme_dict(**over))
    with pytest.raises(UserError, match=match) as e:
        read_scheme(p)
    assert "\n" not in str(e.value) and str(e.value).endswith(".")


def test_search_seeds_ilp_and_memory_budgets(tmp_path, proxy_file):
    """--seeds reports mean and spread over seeds on the test split; the ilp searcher
    honours --size-budget and --ram-budget, which the generated C then meets."""
    out = tmp_path / "s.json"
    r = run(["--model", "lenet", "--epochs", "2", "--budget-evals", "2", "--qat-epochs", "1", "--search-qat-steps", "2",
             "--seeds", "2", "--searcher", "ilp", "--proxy", proxy_file, "--latency-budget", "70%",
             "--size-budget", "6KiB", "--ram-budget", "6000", "-o", out, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    sd = doc["accuracy"]["seeds"]
    assert sd["seeds"] == [0, 1] and len(sd["integer"]) == 2 and sd["integer_std"] >= 0
    assert sd["integer"][0] == doc["accuracy"]["integer"]
    assert sd["drop_mean"] == pytest.approx(sum(i - f for i, f in zip(sd["integer"], sd["float"])) / 2)
    mem = doc["memory"]
    assert mem["budgets"] == {"weight_bytes": 6144, "ram_bytes": 6000}
    assert mem["generated"]["weight_bytes"] <= 6144 and mem["generated"]["ram_bytes"] <= 6000
    assert mem["predicted"]["weight_bytes"] == mem["generated"]["weight_bytes"]
    assert mem["predicted"]["ram_bytes"] == mem["generated"]["ram_bytes"]
    assert doc["searcher"] == "ilp" and doc["train"]["lsq"] is True


def test_search_margin_plans_under_the_budget_it_promises(tmp_path, proxy_file):
    out = tmp_path / "m" / "scheme.json"
    r = run([*FAST, "--proxy", proxy_file, "--latency-budget", "60%", "--margin", "10", "--searcher", "random",
             "-o", out, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    b = doc["budget"]
    assert b["text"] == "60%" and b["margin_pct"] == 10 and b["planned"] == pytest.approx(0.9 * b["value"])
    assert doc["predicted_latency"]["total"] <= b["planned"]
    assert all(p["latency"] <= b["planned"] for p in doc["pareto"])
    r = run([*FAST, "--proxy", proxy_file, "--latency-budget", "60%", "--margin", "80", "-o", out])
    assert r.exit_code == 2 and "Traceback" not in r.output
