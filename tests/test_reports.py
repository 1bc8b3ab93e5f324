"""`mico report`: HTML + PNG report of a store, a proxy file, a scheme and a deploy result.

The store is a real SQLite store written with harness.store; its latencies are
synthetic (a known formula plus noise) because the report only reads them.  The
proxy file is written by the real proxy API (LatencyProxy.fit + save_proxies).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.spec import BITS, KernelSpec
from harness.store import Measurement, Store
from proxy.cli import frame_training_set
from proxy.cv import metrics, out_of_fold
from proxy.model import LatencyProxy, save_proxies

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FP_HOST = "f00dcafe" * 8
FP_VEX = "beadfeed" * 8

MM_SHAPES = [(1, 64, 64), (4, 128, 256), (8, 32, 512), (16, 256, 128), (1, 512, 512), (32, 64, 96),
             (2, 96, 384), (8, 384, 64)]
CONV_SHAPES = [(1, 3, 16, 16, 16, 3, 1, 1, 1), (1, 16, 8, 8, 32, 3, 1, 1, 1), (1, 32, 8, 8, 32, 1, 1, 0, 1),
               (1, 8, 24, 24, 16, 5, 2, 2, 1), (1, 64, 4, 4, 64, 3, 1, 1, 1), (1, 16, 16, 16, 16, 3, 2, 1, 1)]


def _latency(spec: KernelSpec, rng, base: float) -> float:
    # cheaper at low bits, as bit-packed kernels are: ~ MACs x max(qa, qw) plus a fixed cost
    return float((0.05 * spec.cbops + 0.01 * spec.macs + base) * np.exp(0.03 * rng.standard_normal()))


def make_store(path: Path) -> Path:
    rng = np.random.default_rng(7)
    with Store(path) as st:
        st.add_target(FP_HOST, "host", {"isa": "x86_64", "timer_unit": "ns"})
        st.add_target(FP_VEX, "vexriscv-small", {"isa": "rv32im", "timer_unit": "cycles"})
        rows = []
        for op, shapes in (("matmul", MM_SHAPES), ("conv2d", CONV_SHAPES)):
            for shape in shapes:
                for qa in BITS:
                    for qw in BITS:
                        s = KernelSpec(op, shape, qa, qw)
                        v = _latency(s, rng, 2000.0)
                        rows.append(Measurement(spec=s, fingerprint=FP_HOST, unit="ns", raw=[v, v], median=v,
                                                iqr=0.01 * v, min=v, checksum_ok=True))
        for shape in MM_SHAPES[:3]:
            for qa, qw in ((8, 8), (4, 4), (2, 2), (1, 1), (8, 2)):
                s = KernelSpec("matmul", shape, qa, qw)
                v = 40 * _latency(s, rng, 500.0)
                rows.append(Measurement(spec=s, fingerprint=FP_VEX, unit="cycles", raw=[v], median=v, iqr=0.0,
                                        min=v, checksum_ok=True))
        # failures the summary must count
        rows.append(Measurement(spec=KernelSpec("conv2d", (1, 64, 32, 32, 64, 3, 1, 1, 1), 8, 8), fingerprint=FP_VEX,
                                status="does_not_fit", error="needs 70 KiB, has 64 KiB"))
        rows.append(Measurement(spec=KernelSpec("matmul", (64, 512, 512), 8, 8), fingerprint=FP_VEX,
                                status="timeout", error="no reply within 30 s"))
        st.put_many(rows)
    return path


def make_proxy(store_path: Path, path: Path) -> dict:
    with Store(store_path, readonly=True) as st:
        mm = st.frame("host", "matmul")
        cv = st.frame("host", "conv2d")
    proxies = {"matmul": frame_training_set(mm).fit("cbops", "linear"),
               "conv2d": frame_training_set(cv).fit("cbops+", "linear")}
    save_proxies(proxies, path)
    return proxies


LAYERS = [
    {"name": "conv1", "kind": "conv", "qa": 8, "qw": 8, "spec": {"op": "conv2d", "shape": [1, 1, 8, 8, 8, 3, 1, 1, 1], "qa": 8, "qw": 8}},
    {"name": "conv2", "kind": "conv", "qa": 4, "qw": 2, "spec": {"op": "conv2d", "shape": [1, 8, 8, 8, 16, 3, 1, 1, 1], "qa": 4, "qw": 2}},
    {"name": "<fc>", "kind": "linear", "qa": 8, "qw": 4, "spec": {"op": "matmul", "shape": [1, 10, 256], "qa": 8, "qw": 4}},
]
CHOSEN_BITS = [[8, 8], [4, 2], [8, 4]]


def scheme_doc() -> dict:
    rng = np.random.default_rng(3)
    cands = []
    for i in range(40):
        bits = [[int(rng.choice(BITS)), int(rng.choice(BITS))] for _ in LAYERS]
        lat = float(sum(1000 + 300 * max(a, w) for a, w in bits))
        acc = float(min(0.97, 0.5 + 0.06 * np.log2(lat / 3000 + 1) + 0.02 * rng.standard_normal()))
        cands.append({"bits": bits, "accuracy": acc, "latency": lat, "feasible": lat <= 9000})
    cands.append({"bits": CHOSEN_BITS, "accuracy": 0.955, "latency": 8700.0, "feasible": True})
    front, best = [], -1.0
    for c in sorted(cands, key=lambda c: (c["latency"], -c["accuracy"])):
        if c["accuracy"] > best:
            front.append({k: c[k] for k in ("bits", "accuracy", "latency")})
            best = c["accuracy"]
    return {
        "format": "mico-scheme", "version": 1, "model": "lenet-tiny", "dataset": "digits", "layers": LAYERS,
        "accuracy": {"float": 0.972, "fakequant": 0.955, "integer": 0.953},
        "predicted_latency": {"unit": "ns", "total": 8700.0, "per_layer": [3400.0, 2300.0, 3000.0]},
        "budget": {"text": "90% of int8", "value": 9000.0, "unit": "ns"},
        "bops": 1234567, "size_bits": 65536, "searcher": "nsga2", "evaluations": 41,
        "pareto": front, "candidates": cands,
    }


def deploy_doc() -> dict:
    layers = [
        {"name": "conv1", "kind": "conv", "qa": 8, "qw": 8, "spec": LAYERS[0]["spec"], "measured_median": 3500.0,
         "measured_iqr": 40.0, "predicted": 3400.0, "error_pct": -2.857},
        {"name": "pool1", "kind": "pool", "qa": None, "qw": None, "spec": None, "measured_median": 310.0,
         "measured_iqr": 5.0, "predicted": None, "error_pct": None},
        {"name": "conv2", "kind": "conv", "qa": 4, "qw": 2, "spec": LAYERS[1]["spec"], "measured_median": 2000.0,
         "measured_iqr": 30.0, "predicted": 2300.0, "error_pct": 15.0},
        {"name": "<fc>", "kind": "linear", "qa": 8, "qw": 4, "spec": LAYERS[2]["spec"], "measured_median": 2950.0,
         "measured_iqr": 20.0, "predicted": 3000.0, "error_pct": 1.695},
    ]
    return {
        "format": "mico-deploy", "version": 1, "target": "host", "fingerprint": FP_HOST, "scheme": "scheme.json",
        "model": "lenet-tiny", "dataset": "digits", "n_images": 50, "bit_exact": False, "mismatches": 3,
        "max_abs_diff": 2, "first_mismatch": 17,
        "accuracy": {"target": 0.94, "integer_reference": 0.96, "fakequant": 0.955},
        "latency": {"unit": "ns", "measured_total_median": 8760.0, "measured_total_iqr": 61.0,
                    "predicted_total": 8700.0, "error_pct": -0.685, "layers": layers},
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report-in")
    store = make_store(d / "results.sqlite")
    proxies = make_proxy(store, d / "proxy.json")
    (d / "scheme.json").write_text(json.dumps(scheme_doc()))
    (d / "deploy.json").write_text(json.dumps(deploy_doc()))
    return {"dir": d, "store": store, "proxy": d / "proxy.json", "proxies": proxies,
            "scheme": d / "scheme.json", "deploy": d / "deploy.json"}


def run(*args):
    return CliRunner().invoke(main, ["report", *map(str, args)])


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    err = res.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def full(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out") / "rep"
    res = run("--store", inputs["store"], "--proxy", inputs["proxy"], "--scheme", inputs["scheme"],
              "--deploy", inputs["deploy"], "-o", out)
    assert res.exit_code == 0, (res.output, res.exception)
    return out, res


def test_full_report_writes_html_and_pngs(full):
    out, res = full
    index = out / "index.html"
    assert res.stdout.strip() == str(index)
    assert index.stat().st_size > 2000
    pngs = sorted(p.name for p in out.glob("*.png"))
    # heatmaps: host matmul, host conv2d, vexriscv-small matmul; 2 parity plots; pareto; deploy bars
    assert len([p for p in pngs if p.startswith("heatmap_")]) == 3
    assert {"parity_matmul.png", "parity_conv2d.png", "pareto.png", "deploy_layers.png"} <= set(pngs)
    for p in pngs:
        assert_png(out / p)
    html = index.read_text()
    for p in pngs:   # every figure is referenced, and nothing else is needed
        assert f'src="{p}"' in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_store_summary(full):
    html = (full[0] / "index.html").read_text()
    assert "host" in html and "vexriscv-small" in html and FP_HOST[:12] in html
    assert "does_not_fit" in html and "timeout" in html
    n = len(MM_SHAPES) * 16 + len(CONV_SHAPES) * 16 + 3 * 5 + 2
    assert f"{n:,} measurements" in html


def test_heatmap_ratios(inputs):
    from reports import heatmaps

    with Store(inputs["store"], readonly=True) as st:
        df = st.frame(status=None)
    maps = {(h.target, h.op): h for h in heatmaps.compute(df)}
    assert set(maps) == {("host", "matmul"), ("host", "conv2d"), ("vexriscv-small", "matmul")}
    hm = maps[("host", "matmul")]
    assert hm.ref == (8, 8) and hm.qas == [1, 2, 4, 8] and hm.qws == [1, 2, 4, 8] and hm.n_shapes == len(MM_SHAPES)
    r = np.array(hm.ratio, dtype=float)
    assert r[3, 3] == pytest.approx(1.0)
    assert r[0, 0] < r[1, 1] < r[2, 2] < 1.0          # fewer bits, faster
    # the median over shapes, computed independently
    host = df[(df["target"] == "host") & (df["op"] == "matmul")].set_index(["shape", "qa", "qw"])["value"]
    ratios = [host[(",".join(map(str, s)), 1, 1)] / host[(",".join(map(str, s)), 8, 8)] for s in MM_SHAPES]
    assert r[0, 0] == pytest.approx(np.median(ratios))
    assert 1 <= len(hm.rep_rows) <= 3 and len(hm.rep_rows[0]["values"]) == 16
    vex = maps[("vexriscv-small", "matmul")]
    assert vex.n_shapes == 3 and vex.ratio[vex.qas.index(8)][vex.qws.index(1)] is None   # 8x1 never measured


def test_parity_metrics_in_html(inputs, full):
    html = (full[0] / "index.html").read_text()
    for op, p in inputs["proxies"].items():
        y, pred, _ = out_of_fold(LatencyProxy(op, features=p.features, model=p.model), p.train_specs_,
                                 p.train_values_)
        m = metrics(y, pred)
        assert m["mape"] == pytest.approx(p.cv_["mape"])   # same folds as `fit`
        assert f"{m['mape']:.2f}%" in html
        assert f"{m['within10']:.1f}%" in html
        assert f"{m['spearman']:.3f}" in html


def test_scheme_and_deploy_in_html(full):
    html = (full[0] / "index.html").read_text()
    # search
    assert "nsga2" in html and "90% of int8" in html and "95.50%" in html and "97.20%" in html
    assert "&lt;fc&gt;" in html and "<fc>" not in html                 # autoescaped layer name
    assert "matmul[1,10,256] 8x4" in html
    # deploy
    assert "bit_exact" in html and "NOT bit-exact: 3 of 50 images differ" in html
    assert "<th>mismatches</th><td>3</td>" in html and "<th>bit_exact</th><td>NO</td>" in html
    assert "+15.0%" in html and "-2.9%" in html and "not modelled" in html
    assert "8,760 ns" in html and "94.00%" in html


def test_json_output_and_store_only(inputs, tmp_path):
    res = run("--store", inputs["store"], "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    doc = json.loads(res.stdout)
    assert doc["index"] == str(tmp_path / "r" / "index.html")
    assert doc["proxies"] == {} and doc["scheme"] is None and doc["deploy"] is None
    assert len(doc["heatmaps"]) == 3 and all(Path(f).is_file() for f in doc["figures"])
    assert doc["store"]["counts"] and doc["store"]["total"] == doc["store"]["ok"] + 2
    html = (tmp_path / "r" / "index.html").read_text()
    assert 'id="proxy"' not in html and 'id="search"' not in html and 'id="deploy"' not in html


def test_json_numbers_with_proxy_and_deploy(inputs, tmp_path):
    res = run("--store", inputs["store"], "--proxy", inputs["proxy"], "--deploy", inputs["deploy"],
              "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    doc = json.loads(res.stdout)
    assert set(doc["proxies"]) == {"matmul", "conv2d"}
    assert doc["proxies"]["matmul"]["cv"]["mape"] == pytest.approx(inputs["proxies"]["matmul"].cv_["mape"])
    assert doc["deploy"]["bit_exact"] is False and doc["deploy"]["mismatches"] == 3


def test_missing_store_is_one_line(tmp_path):
    err = one_line_error(run("--store", tmp_path / "nope.sqlite", "-o", tmp_path / "r"))
    assert "nope.sqlite" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"format": "mico-deploy"}),
    json.dumps({"format": "mico-scheme"}),
    json.dumps({"format": "mico-scheme", "version": 2, "layers": []}),
    json.dumps({"format": "mico-scheme", "version": 1, "layers": "conv1"}),
    json.dumps({"format": "mico-scheme", "version": 1, "layers": [{"name": "a", "qa": 3.5, "qw": 8}]}),
    json.dumps({"format": "mico-scheme", "version": 1, "layers": [{"name": "a", "qa": 8, "qw": 8}],
                "pareto": [{"bits": [8, 8], "accuracy": "high", "latency": 3}]}),
])
def test_malformed_scheme_is_one_line(inputs, tmp_path, content):
    bad = tmp_path / "scheme.json"
    bad.write_text(content)
    err = one_line_error(run("--store", inputs["store"], "--scheme", bad, "-o", tmp_path / "r"))
    assert "scheme.json" in err and "`mico" not in err
    assert not (tmp_path / "r").exists()          # inputs are checked before anything is written


def test_other_bad_inputs_are_one_line(inputs, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"format": "mico-deploy", "version": 1, "latency": {"layers": 3}}))
    one_line_error(run("--store", inputs["store"], "--deploy", tmp_path / "d.json", "-o", tmp_path / "r"))
    one_line_error(run("--store", inputs["store"], "--proxy", tmp_path / "missing.json", "-o", tmp_path / "r"))
    (tmp_path / "p.json").write_text(json.dumps({"format": "mico-scheme", "layers": []}))
    one_line_error(run("--store", inputs["store"], "--proxy", tmp_path / "p.json", "-o", tmp_path / "r"))
    (tmp_path / "notastore").write_text("hello")
    one_line_error(run("--store", tmp_path / "notastore", "-o", tmp_path / "r"))
    (tmp_path / "file").write_text("")
    one_line_error(run("--store", inputs["store"], "-o", tmp_path / "file"))


def test_minimal_scheme_and_empty_store(tmp_path):
    """Optional keys missing everywhere still give a report."""
    store = tmp_path / "empty.sqlite"
    Store(store).close()
    (tmp_path / "s.json").write_text(json.dumps({"format": "mico-scheme", "version": 1, "layers": [{"name": "fc", "qa": 8, "qw": 8}]}))
    (tmp_path / "d.json").write_text(json.dumps({"format": "mico-deploy", "version": 1, "bit_exact": True}))
    res = run("--store", store, "--scheme", tmp_path / "s.json", "--deploy", tmp_path / "d.json", "-o", tmp_path / "r")
    assert res.exit_code == 0, (res.output, res.exception)
    html = (tmp_path / "r" / "index.html").read_text()
    assert "holds no measurements" in html and "bit-exact: the target" in html and "fc" in html


def test_tolerant_variants(inputs, tmp_path):
    """A proxy that cannot be cross-validated, a scheme with candidates only, mismatches as a list."""
    specs = [KernelSpec("matmul", (4, 64, 64), a, w) for a in BITS for w in BITS]
    y = [1000.0 + 10 * s.cbops / 1000 for s in specs]
    save_proxies({"matmul": LatencyProxy("matmul").fit(specs, y, cv=False)}, tmp_path / "p1.json")
    doc = scheme_doc()
    del doc["pareto"]
    doc["accuracy"] = 0.95
    doc["budget"] = {"text": "2 ms", "value": 2.0, "unit": "ms"}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    dep = deploy_doc()
    dep["mismatches"] = [4, 17, 23]
    (tmp_path / "d.json").write_text(json.dumps(dep))
    res = run("--store", inputs["store"], "--proxy", tmp_path / "p1.json", "--scheme", tmp_path / "s.json",
              "--deploy", tmp_path / "d.json", "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    out = json.loads(res.stdout)
    assert out["proxies"]["matmul"]["cv"] is None and "2 different shapes" in out["proxies"]["matmul"]["note"]
    assert out["scheme"]["pareto_points"] >= 1 and out["scheme"]["chosen"]["latency"] == 8700.0
    assert out["deploy"]["mismatches"] == 3
    html = (tmp_path / "r" / "index.html").read_text()
    assert "no cross-validation" in html and "computed from the candidates" in html
    assert "the budget line is not drawn" in html and "4, 17, 23" in html
    assert_png(tmp_path / "r" / "pareto.png")


def test_deploy_report_dataclass_round_trip(tmp_path):
    from mpq.deploy_report import DeployReport

    doc = deploy_doc()
    rep = DeployReport.from_dict(doc)
    assert rep.bit_exact is False and rep.mismatches == 3 and rep.accuracy.target == 0.94
    assert [l.name for l in rep.latency.layers] == ["conv1", "pool1", "conv2", "<fc>"]
    assert rep.latency.layers[0].spec == KernelSpec.from_dict(LAYERS[0]["spec"])
    path = rep.write(tmp_path / "d.json")
    again = DeployReport.read(path)
    assert again == rep
    for k, v in doc.items():
        if k != "latency":
            assert again.to_dict()[k] == v, k
    assert again.to_dict()["latency"]["layers"] == doc["latency"]["layers"]
    listed = DeployReport.from_dict({**doc, "mismatches": [4, 17, 23]})
    assert listed.mismatches == 3 and listed.mismatch_ids == [4, 17, 23]


@pytest.mark.parametrize("over,match", [
    ({"bit_exact": "yes"}, "'bit_exact' is not true or false"),
    ({"mismatches": "three"}, "neither a count nor a list"),
    ({"latency": {"layers": [{"name": "a", "measured_median": "fast"}]}}, "layer 0 has a non-numeric 'measured_median'"),
    ({"latency": {"layers": [{"name": "a", "spec": {"op": "matmul", "shape": [1, 2], "qa": 8, "qw": 8}}]}},
     "layer 0 has a malformed kernel spec"),
    ({"accuracy": [0.9]}, "'accuracy' is not an object"),
])
def test_deploy_report_malformed_fields_are_one_sentence(over, match):
    from harness.errors import UserError
    from mpq.deploy_report import DeployReport

    with pytest.raises(UserError, match=match) as e:
        DeployReport.from_dict({**deploy_doc(), **over}, "deploy file d.json")
    assert str(e.value).startswith("deploy file d.json is malformed: ") and "\n" not in str(e.value)


def test_compare_puts_several_fronts_on_one_plot(tmp_path):
    """--compare: the fronts of several searches (one per searcher) share one plot, with
    the evaluations each needed."""
    store = tmp_path / "empty.sqlite"
    Store(store).close()
    paths = []
    for name, ev, shift in (("random", 40, 0.0), ("ilp", 10, 0.02)):
        doc = scheme_doc()
        doc["searcher"], doc["evaluations"] = name, ev
        doc["pareto"] = [dict(p, accuracy=min(1.0, p["accuracy"] + shift)) for p in doc["pareto"]]
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(doc))
    res = run("--store", store, "--scheme", paths[0], "--compare", paths[1], "-o", tmp_path / "r", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    out = json.loads(res.stdout)
    assert [c["searcher"] for c in out["compare"]] == ["ilp"] and out["fronts_png"] == "fronts.png"
    assert_png(tmp_path / "r" / "fronts.png")
    html = (tmp_path / "r" / "index.html").read_text()
    assert "Searchers compared" in html and "ilp" in html and ">40<" in html and ">10<" in html
    one_line_error(run("--store", store, "--compare", tmp_path / "nope.json", "-o", tmp_path / "r2"))
