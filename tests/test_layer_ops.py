"""Every timed op of a deployed zoo model is measured and modelled in layer mode (issue 10).

Residual adds, rescales, concatenations, channel shuffles, the conv1d unfold,
adaptive / padded / 1-D pools: each has a layer-mode spec kind, a one-layer
measurement graph checked bit-exact on the device, a place in the model plans
and analytic features, so a deploy of a zoo model prices every layer.
"""

import numpy as np
import pytest

from harness import registry
from harness.errors import UserError
from harness.measure import StatsPolicy, measure
from harness.spec import LAYER_OPS, KernelSpec
from kernels.ir.layer import graph_for_spec, layer_inputs
from mpq.models import MODELS, get_model

ONE_OF_EACH = [KernelSpec("add", (1, 64), 8, 0, "layer", 8), KernelSpec("add", (1, 37), 2, 0, "layer", 1),
               KernelSpec("rescale", (1, 50), 4, 0, "layer", 2), KernelSpec("concat", (1, 3, 5, 7), 4, 0, "layer", 4),
               KernelSpec("shuffle", (1, 15, 9, 3), 8, 0, "layer", 8),
               KernelSpec("unfold", (1, 3, 20, 5, 2, 2), 8, 0, "layer", 8),
               KernelSpec("maxpool1d", (1, 4, 21, 4, 3, 1), 2, 0, "layer", 2),
               KernelSpec("avgpool1d", (1, 4, 21, 3, 2, 1), 1, 0, "layer", 1),
               KernelSpec("avgpool", (1, 5, 7, 7, 3, 2, 1), 8, 0, "layer", 8),
               KernelSpec("maxpool", (1, 5, 8, 8, 3, 2, 1), 4, 0, "layer", 4),
               KernelSpec("gavgpool", (1, 6, 5, 7, 2, 3), 8, 0, "layer", 8),
               # transformer steps (kernels/ir/attention.py, norm.py)
               KernelSpec("softmax", (1, 3, 7), 8, 0, "layer", 8),
               KernelSpec("layernorm", (1, 3, 10), 8, 0, "layer", 4),
               KernelSpec("gelu", (1, 21), 8, 0, "layer", 8),
               KernelSpec("transpose", (1, 3, 5), 2, 0, "layer", 2),
               KernelSpec("attn_qk", (1, 2, 3, 5, 4), 8, 0, "layer", 8),
               KernelSpec("attn_av", (1, 2, 3, 5, 4), 8, 0, "layer", 2)]


def test_layer_op_specs_count_and_refuse_impossible_shapes():
    assert {s.op for s in ONE_OF_EACH} == set(LAYER_OPS)
    add = ONE_OF_EACH[0]
    assert (add.act_count, add.outputs, add.weight_count, add.has_weights) == (128, 64, 0, False)
    cat = ONE_OF_EACH[3]
    assert (cat.act_count, cat.outputs) == (56, 56)
    assert ONE_OF_EACH[5].outputs == 3 * 5 * 10                  # unfold: C*KS channels of OL = 10
    assert ONE_OF_EACH[8].out_hw == (4, 4) and ONE_OF_EACH[10].outputs == 36
    # an unpadded pool may be written with six numbers (as before the padding field)
    assert KernelSpec("maxpool", (1, 8, 6, 6, 2, 2), 4, 0, "layer", 4).shape == (1, 8, 6, 6, 2, 2, 0)
    for s in ONE_OF_EACH:
        assert KernelSpec.from_dict(s.to_dict()) == s
    bad = [(("add", (1, 8), 8, 0, "kernel", 0), "layer mode only"),
           (("add", (1, 8), 8, 4, "layer", 8), "qw must be 0"),
           (("add", (1, 8), 8, 0, "layer", 0), "out_bits one of"),
           (("concat", (1, 3, 5, 7), 4, 0, "layer", 8), "out_bits = qa"),
           (("shuffle", (1, 16, 4, 3), 8, 0, "layer", 8), "G=3 must divide C=16"),
           (("maxpool", (1, 4, 8, 8, 2, 2, 2), 8, 0, "layer", 8), "exceeds half the window"),
           (("unfold", (1, 4, 3, 8, 1, 1), 8, 0, "layer", 8), "does not fit"),
           (("gavgpool", (1, 4, 2, 2, 3, 1), 8, 0, "layer", 8), "larger than the input"),
           (("concat", (1, 0, 5, 7), 8, 0, "layer", 8), "must be >= 1"),
           (("rescale", (1, 8, 8), 8, 0, "layer", 8), "needs 2 numbers"),
           (("add", ("x", 8), 8, 0, "layer", 8), "not a list of integers")]
    for args, match in bad:
        with pytest.raises(UserError, match=match):
            KernelSpec(*args)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_timed_op_of_a_zoo_model_has_a_spec_that_rebuilds_it(name):
    """Op.spec in layer mode is never None, and the one-layer graph of that spec runs
    the same step: its layer has the same spec (what a measured spec is looked up by)."""
    from mpq.zoo import model_layer_specs

    model = get_model(name, "digits")
    g = model.lower()
    n = len(g.mac_nodes)
    schemes = [((8, 8),) * n, tuple((1, 8) if i % 2 else (8, 2) for i in range(n))]
    planned = {s.key() for s in model_layer_specs(model)}
    for scheme in schemes:
        g = model.lower(scheme)
        for node in g.timed_nodes:
            spec = g.spec(node, 1, "layer")
            assert spec is not None, f"{name}: {node.name} ({node.op.kind}) has no layer spec"
            if spec.has_weights:
                continue
            assert spec.key() in planned, f"{name}: plan model:{name} misses {spec}"
            mg, _ = graph_for_spec(spec, 3, evict_bytes=64)
            assert mg.spec(mg.timed_nodes[-1], 1, "layer") == spec


@pytest.mark.parametrize("name", ["host", "vexriscv-small", "bitfusion-rtl"])
def test_layer_ops_are_measured_checksum_verified(name):
    t = registry.get(name)
    with t.session() as s:
        for spec in ONE_OF_EACH:
            m = measure(s, spec, "fp", t.deterministic, target=t, policy=StatsPolicy(fixed_repeats=3))
            assert m.status == "ok" and m.checksum_ok, (spec, m.error)
            # BitFusion runs the ops without weights on the host side: no accelerator cycles
            assert m.median > 0 or name == "bitfusion-rtl"


def test_multi_input_layer_graph_feeds_each_input_its_part():
    spec = KernelSpec("concat", (1, 2, 3, 4), 8, 0, "layer", 8)
    g, in_type = graph_for_spec(spec, 1)
    assert in_type.shape == (20,)
    x = layer_inputs(in_type, 1, 2)
    np.testing.assert_array_equal(g.run(x), x.reshape(2, 5, 4))       # concat of the two parts, in order


def test_resnet8_on_host_prices_every_timed_layer_with_a_layer_proxy():
    """resnet8 (residual adds, rescales at mixed schemes, global pooling) validated on the
    host with a layer-mode proxy fitted on host measurements: every timed layer of every
    scheme has a prediction, so a deploy table has no 'not modelled' row."""
    from mpq.datasets import load_dataset
    from mpq.deploy import _predict, timed_layers
    from mpq.evaluate import latency_fn_from_proxy
    from mpq.validate import random_schemes, validate
    from proxy.model import LatencyProxy, ModelLatency

    model = get_model("resnet8", "digits")
    n = len(model.lower().mac_nodes)
    schemes = [((1, 1),) * n, ((8, 8),) * n] + random_schemes(n, 1, 0)
    specs = list(dict.fromkeys(s for sc in schemes for s in model.lower(sc).specs(1, "layer")))
    kinds = {s.op for s in specs}
    assert {"add", "rescale", "gavgpool"} <= kinds
    t = registry.get("host")
    with t.session() as s:
        # the measured layers plus a second width of the first spec of each op (a fit needs two)
        extra = [next(x for x in specs if x.op == op) for op in kinds]
        extra = [x.as_layer(4 if x.out_bits != 4 else 2) if x.has_weights else
                 KernelSpec(x.op, x.shape, 4 if x.qa != 4 else 2, 0, "layer", 4 if x.qa != 4 else 2) for x in extra]
        todo = list(dict.fromkeys(specs + extra))
        vals = {x: measure(s, x, "fp", False, target=t, policy=StatsPolicy(fixed_repeats=3)).median for x in todo}
        lat = ModelLatency({op: LatencyProxy(op, "analytic", "linear").fit(
            [x for x in todo if x.op == op], [vals[x] for x in todo if x.op == op], cv=False, unit="ns")
            for op in kinds})
        v = validate(model, "resnet8", load_dataset("digits"), s, t, latency_fn_from_proxy(lat), 1,
                     n_images=1)
    assert v.summary()["bit_exact"] and len(v.results) == 3
    for r in v.results:
        assert r.predicted is not None and r.predicted > 0
        assert all(lay["predicted"] is not None for lay in r.layers), r.label
    assert {lay["kind"] for r in v.results for lay in r.layers} >= {"add", "rescale", "gap"}
    # the deploy table's prediction of the same graphs
    g = model.lower(schemes[2])
    preds, _ = _predict(lat, timed_layers(g, "layer"))
    assert None not in preds


def test_analytic_features_split_outputs_by_path():
    from proxy.features import LAYER_COLUMNS, features

    X, names = features([KernelSpec("add", (1, 64), 8, 0, "layer", 8), KernelSpec("add", (1, 64), 8, 0, "layer", 1)],
                        "analytic", log=False, op="add")
    assert names == list(LAYER_COLUMNS)
    np.testing.assert_array_equal(X, [[128, 128, 64, 0], [128, 128, 0, 64]])


def test_fit_all_in_layer_mode_prices_one_shape_ops_by_their_measurements(tmp_path):
    """A model plan measures its classifier and global pool at one shape: `fit --op all --mode
    layer` fits them without CV (lookups); asked for alone, such an op is still refused."""
    from click.testing import CliRunner

    from harness.store import Store
    from proxy.cli import fit as fit_cmd
    from proxy.model import load_proxies

    specs = [KernelSpec("matmul", (1, 10, 64), a, 8, "layer", 0) for a in (2, 8)]
    specs += [KernelSpec("gavgpool", (1, 64, 2, 2, 1, 1), b, 0, "layer", b) for b in (1, 8)]
    specs += [KernelSpec("add", (1, e), 8, 0, "layer", o) for e in (64, 256, 512) for o in (1, 8)]
    t = registry.get("host")
    db = tmp_path / "s.db"
    with t.session() as s, Store(db) as st:
        st.add_target("fp-host", "host", {})
        ms = [measure(s, x, "fp-host", False, target=t, policy=StatsPolicy(fixed_repeats=3)) for x in specs]
        st.put_many(ms)
    out = tmp_path / "p.json"
    r = CliRunner().invoke(fit_cmd, ["--store", str(db), "--target", "host", "--op", "all", "--mode", "layer",
                                     "--features", "analytic", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert r.output.count("no CV (one shape)") == 2 and "add on host" in r.output
    lat = load_proxies(out)
    np.testing.assert_allclose(lat.predict_specs(specs), [m.median for m in ms])
    r = CliRunner().invoke(fit_cmd, ["--store", str(db), "--target", "host", "--op", "gavgpool", "--mode", "layer",
                                     "-o", str(tmp_path / "q.json")])
    assert r.exit_code != 0 and isinstance(r.exception, UserError) and "only 1 shape" in str(r.exception)
