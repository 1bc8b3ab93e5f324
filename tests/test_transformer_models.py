"""vit_tiny and kws_transformer: lowering, fake-quant == integer model, generated C bit-exact
on the host on every digits test image (random mixed schemes, untrained weights)."""

import numpy as np
import pytest
from helpers.models import calibrated_integer_model, host_model_session
from kernels.ir import codegen
from mpq.datasets import load_dataset

MODELS = ("vit_tiny", "kws_transformer")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def host():
    yield from host_model_session()


@pytest.mark.parametrize("name", MODELS)
def test_transformer_is_bit_exact_on_host_on_every_test_image(name, digits, host):
    from mpq.deploy import run_on_device

    m, im = calibrated_integer_model(name, 5, digits.x_train)
    g = im.graph
    kinds = {n.op.kind for n in g.nodes}
    assert {"softmax", "attn_matmul", "layernorm", "gelu", "token_linear", "add"} <= kinds
    assert [n.name for n in g.mac_nodes] == m.layer_names and len(set(g.scheme)) > 2
    xq = im.quantize_input(digits.x_test).numpy()
    ref = np.asarray(im.forward_int(xq), dtype=np.int64)
    session, tool = host
    run = run_on_device(session, g, xq, codegen.compile_image(codegen.generate(g, {"model": name}), tool))
    np.testing.assert_array_equal(run.outputs, ref)
    assert len(np.unique(ref.argmax(1))) > 1


@pytest.mark.parametrize("name", MODELS)
def test_token_linears_are_priced_as_matmuls(name):
    """In kernel mode every token linear is the matmul with N = tokens at its scheme pair (the
    latency model sums them); the attention / norm / GELU ops have no spec yet."""
    from mpq.models import get_model

    m = get_model(name)
    n = len(m.layer_names)
    g = m.lower([(8, 8)] + [(4, 2)] * (n - 1))
    specs = g.specs()
    assert len(specs) == n and {s.op for s in specs} == {"conv2d", "matmul"}
    tokens = [s for s in specs if s.op == "matmul" and s.shape[0] > 1]
    assert len(tokens) == 12 and all((s.qa, s.qw) == (4, 2) for s in tokens)
    assert all(n.op.spec(g.in_types(n)) is None for n in g.nodes if n.op.kind in ("softmax", "gelu", "layernorm"))


@pytest.mark.slow
def test_transformers_are_bit_exact_on_vexriscv_mico(digits):
    """The generated C of both models on the RTL core (SIMD firmware), 3 test images each,
    one booted session; a random mixed scheme per model."""
    from helpers.models import need_target
    from mpq.deploy import run_on_device
    from mpq.memory import check_fits, model_memory

    t = need_target("vexriscv-mico", mem_kib=1024)
    s = t.open(t.build())
    try:
        for name in MODELS:
            m, im = calibrated_integer_model(name, 7, digits.x_train)
            gen = codegen.generate(im.graph, {"model": name})
            image = codegen.compile_image(gen, t.model_toolchain())
            check_fits(model_memory(gen, image), s.hello, t.name, 1024)
            xq = im.quantize_input(digits.x_test[:3]).numpy()
            run = run_on_device(s, im.graph, xq, image)
            np.testing.assert_array_equal(run.outputs, np.asarray(im.forward_int(xq), dtype=np.int64), err_msg=name)
            assert (run.times > 0).all()
    finally:
        s.close()
