"""Layer mode: a layer measured exactly as a deployed model runs it (issue 10).

The promise: the sum of layer-mode measurements of a model's layers is the
model's measured latency, without any whole-model calibration.  These tests
check it against a real deployed model on the simulators, where cycles are
exact, and check every new spec kind bit-exact on every kind of target.
"""

import numpy as np
import pytest
import torch

from harness import registry
from harness.errors import UserError
from harness.measure import measure
from harness.spec import KernelSpec
from harness.store import Store
from kernels.ir import codegen
from mpq.deploy import run_on_device, timed_layers
from mpq.fold import fold_model
from mpq.integer import build_integer_model
from mpq.models import get_model
from mpq.train import quantize


def test_layer_specs_carry_mode_and_output_width():
    s = KernelSpec("conv2d", (1, 16, 4, 4, 32, 3, 1, 1, 1), 8, 4, "layer", 2)
    assert s.key() == ("conv2d", "1,16,4,4,32,3,1,1,1", 8, 4, "layer", 2)
    assert KernelSpec.from_dict(s.to_dict()) == s and s != s.as_layer(8)
    assert KernelSpec("conv2d", s.shape, 8, 4).to_dict() == {"op": "conv2d", "shape": list(s.shape), "qa": 8, "qw": 4}
    p = KernelSpec("maxpool", (1, 16, 8, 8, 2, 2), 4, 0, "layer", 4)
    assert p.outputs == 16 * 16 and p.weight_count == 0 and not p.has_weights
    for bad, match in ((lambda: KernelSpec("maxpool", (1, 16, 8, 8, 2, 2), 4, 0), "layer mode only"),
                       (lambda: KernelSpec("maxpool", (1, 16, 8, 8, 2, 2), 4, 0, "layer", 8), "out_bits = qa"),
                       (lambda: KernelSpec("matmul", (1, 8, 8), 8, 8, "kernel", 4), "out_bits must be 0"),
                       (lambda: KernelSpec("matmul", (1, 8, 8), 8, 8, "layer", 3), "out_bits=3"),
                       (lambda: KernelSpec("matmul", (1, 8, 8), 8, 8, "warm"), "unknown measurement mode")):
        with pytest.raises(UserError, match=match):
            bad()


def test_store_keys_modes_apart_and_migrates_schema_2(tmp_path):
    import json
    import sqlite3

    from harness.store import Measurement

    db = tmp_path / "s.db"
    with Store(db) as st:
        st.add_target("fp1", "t", {})
        k = KernelSpec("matmul", (1, 8, 8), 8, 8)
        for spec in (k, k.as_layer(8), k.as_layer(1)):
            assert st.put(Measurement(spec, "fp1", unit="cycles", raw=[1.0], median=1.0))
        assert len(st.done_keys("fp1")) == 3
        assert {m.spec.mode for m in st.rows("t", mode="layer")} == {"layer"}
    # a schema-2 file (no mode columns) is migrated: its rows become kernel-mode rows
    old = tmp_path / "old.db"
    c = sqlite3.connect(old)
    from harness import store as store_mod

    for stmt in store_mod._TABLES:
        c.execute(stmt.replace(",\n    mode TEXT NOT NULL DEFAULT 'kernel',       -- kernel | layer (schema 3)\n"
                               "    out_bits INTEGER NOT NULL DEFAULT 0,       -- layer mode: output code width, "
                               "0 = int32 (schema 3)\n    UNIQUE (fingerprint, op, shape, qa, qw, mode, out_bits)",
                               ",\n    UNIQUE (fingerprint, op, shape, qa, qw)"))
    c.execute(f"PRAGMA application_id = {store_mod.APPLICATION_ID}")
    c.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    c.execute("INSERT INTO targets VALUES ('fp1', 't', '{}', 0, 'measured')")
    c.execute("INSERT INTO measurements (fingerprint, op, shape, qa, qw, status, unit, raw, median, created_at) "
              "VALUES ('fp1', 'matmul', '1,8,8', 8, 8, 'ok', 'cycles', ?, 5.0, 0)", (json.dumps([5.0]),))
    c.commit()
    c.close()
    with Store(old) as st:
        rows = st.rows("t")
        assert [(m.spec.mode, m.median) for m in rows] == [("kernel", 5.0)]
        assert st.put(Measurement(rows[0].spec.as_layer(8), "fp1", unit="cycles", raw=[7.0], median=7.0))


@pytest.fixture(scope="module")
def lenet_graphs():
    """LeNet at three schemes, quantised from its seeded initialisation (latency needs no training)."""
    from mpq.datasets import load_dataset

    ds = load_dataset("digits")
    torch.manual_seed(0)
    m = get_model("lenet").eval()
    fold_model(m)
    out = []
    for scheme in (((8, 8),) * 4, ((2, 4), (8, 1), (1, 2), (4, 8))):
        im = build_integer_model(quantize(m, scheme, ds.x_train[:128], calib_batches=1))
        out.append((im.graph, np.asarray(im.quantize_input(ds.x_test[:2]), np.int8)))
    return out


@pytest.mark.parametrize("name", ["vexriscv-small", "vexriscv-mico"])
def test_layer_mode_adds_up_to_the_deployed_model(name, lenet_graphs):
    """Every layer measured alone in layer mode == its time inside the deployed model (2%);
    the kernel-mode (warm, kernel-only) figure of the MAC layers does not match."""
    t = registry.get(name)
    with t.session() as s:
        for graph, xq in lenet_graphs:
            image = codegen.compile_image(codegen.generate(graph), t.model_toolchain())
            run = run_on_device(s, graph, xq, image)
            in_model = np.median(run.times, 0)
            layers = timed_layers(graph, "layer")
            assert all(lay["spec"] is not None for lay in layers)      # every timed op is measured
            alone = [measure(s, lay["spec"], "fp", True, target=t).median for lay in layers]
            # layers that matter (>= 5% of the model) within 5%, the tiny ones within 15%: on a 4 KiB
            # direct-mapped data cache, where a layer's tensors and weights sit moves it by a few %
            # (measured: up to 3.8% on a big layer), and a dozen cold lines are 10% of a 3k-cycle layer
            rel = np.abs(np.asarray(alone) - in_model) / in_model
            big = in_model >= 0.05 * in_model.sum()
            assert (rel[big] < 0.05).all() and (rel < 0.15).all(), \
                list(zip([lay["name"] for lay in layers], rel))
            total = float(np.median(run.totals))
            assert abs(sum(alone) - total) / total < 0.03
            warm = []
            for lay, meas in zip(layers, in_model):
                spec = lay["spec"]
                if spec.has_weights:
                    w = measure(s, KernelSpec(spec.op, spec.shape, spec.qa, spec.qw), "fp", True).median
                    assert w != meas          # the warm kernel alone is not the layer a model runs
                    warm.append(w)
            # what a kernel-mode latency model adds up to misses the model by more than layer mode
            assert abs(sum(warm) - total) / total > max(0.03, 2 * abs(sum(alone) - total) / total)


@pytest.mark.parametrize("name", ["host", "vexriscv-small", "bitfusion-rtl"])
def test_pool_and_layer_specs_are_checked_on_every_kind_of_target(name):
    t = registry.get(name)
    det = t.deterministic
    with t.session() as s:
        for spec in (KernelSpec("maxpool", (1, 8, 6, 6, 2, 2), 4, 0, "layer", 4),
                     KernelSpec("avgpool", (1, 3, 7, 7, 3, 2), 8, 0, "layer", 8),
                     KernelSpec("matmul", (1, 10, 37), 2, 1, "layer", 0),
                     KernelSpec("conv2d", (1, 3, 7, 7, 5, 3, 2, 1, 1), 1, 8, "layer", 1)):
            m = measure(s, spec, "fp", det, target=t)
            assert m.status == "ok" and m.checksum_ok and m.spec.mode == "layer"
            # BitFusion runs pools on the host side: no accelerator cycles (yet)
            assert m.median > 0 or (name == "bitfusion-rtl" and not spec.has_weights)
