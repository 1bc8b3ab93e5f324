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
def test_every_step_is_priced(name):
    """Kernel mode: every token linear is the matmul with N = tokens at its scheme pair.  Layer
    mode: every timed step has a spec (the whole-model latency model sums them)."""
    from mpq.models import get_model

    m = get_model(name)
    n = len(m.layer_names)
    g = m.lower([(8, 8)] + [(4, 2)] * (n - 1))
    specs = g.specs()
    assert len(specs) == n and {s.op for s in specs} == {"conv2d", "matmul"}
    tokens = [s for s in specs if s.op == "matmul" and s.shape[0] > 1]
    assert len(tokens) == 12 and all((s.qa, s.qw) == (4, 2) for s in tokens)
    layer = g.specs(mode="layer")
    assert len(layer) == len(g.timed_nodes)
    assert {"softmax", "attn_qk", "attn_av", "layernorm", "gelu", "transpose", "add"} <= {s.op for s in layer}


def test_layer_mode_graphs_of_the_new_specs_run_bit_exact_on_host(host):
    """The one-layer measurement image of each new spec kind (and of a token linear: a
    matmul spec with N > 1) runs on the host and equals its NumPy semantics."""
    from harness.spec import KernelSpec
    from kernels.ir.layer import graph_for_spec, layer_inputs
    from mpq.deploy import run_on_device

    session, tool = host
    for spec in (KernelSpec("softmax", (1, 6, 15), 8, 0, "layer", 8),
                 KernelSpec("layernorm", (1, 15, 32), 8, 0, "layer", 4),
                 KernelSpec("gelu", (1, 15 * 64), 8, 0, "layer", 2),
                 KernelSpec("transpose", (1, 32, 15), 4, 0, "layer", 4),
                 KernelSpec("attn_qk", (1, 2, 15, 15, 16), 8, 0, "layer", 8),
                 KernelSpec("attn_av", (1, 2, 15, 15, 16), 8, 0, "layer", 1),
                 KernelSpec("matmul", (15, 64, 32), 4, 2, "layer", 8)):
        g, in_type = graph_for_spec(spec, 3, evict_bytes=256)
        assert g.spec(g.timed_nodes[-1], 1, "layer") == spec
        x = layer_inputs(in_type, 3, 2)
        gen = codegen.generate(g, code_output=True)
        run = run_on_device(session, g, x, codegen.compile_image(gen, tool))
        np.testing.assert_array_equal(run.outputs.reshape(2, -1), g.run(x).reshape(2, -1), err_msg=str(spec))


def test_bad_transformer_specs_are_one_sentence():
    from harness.errors import UserError
    from harness.spec import KernelSpec

    with pytest.raises(UserError, match="8-bit probabilities"):
        KernelSpec("softmax", (1, 4, 4), 8, 0, "layer", 4)
    with pytest.raises(UserError, match="at most 256 wide"):
        KernelSpec("layernorm", (1, 4, 300), 8, 0, "layer", 8)
    with pytest.raises(UserError, match="needs 5 numbers"):
        KernelSpec("attn_qk", (1, 2, 4, 4), 8, 0, "layer", 8)


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


@pytest.mark.parametrize("name", MODELS)
def test_fake_quant_agrees_with_the_integer_model(name, digits):
    """Trained briefly: the fake-quant model and its integer model predict alike on >= 99% of the
    test images at 8x8 and at a mixed scheme where k and v read LN1's output at other widths
    than q (rescales of a tied code)."""
    import torch

    from mpq.integer import build_integer_model
    from mpq.models import get_model
    from mpq.train import accuracy, quantize, set_seed, train_float

    torch.set_num_threads(1)
    set_seed(0)
    m = get_model(name)
    train_float(m, digits.x_train, digits.y_train, epochs=4, seed=0)
    n = len(m.layer_names)
    mixed = [(8, 8), (8, 4), (4, 8), (2, 4)] + [(4, 4), (8, 2)] * ((n - 4) // 2)
    for scheme in ([(8, 8)] * n, mixed):
        q = quantize(m, scheme, digits.x_train, seed=0)
        im = build_integer_model(q)
        if scheme is mixed:
            assert any(nd.op.kind == "rescale" for nd in im.graph.nodes)
        with torch.no_grad():
            fq = q(digits.x_test).argmax(1)
        assert float((fq == im.predict(digits.x_test)).float().mean()) >= 0.99, scheme
    assert accuracy(q, digits.x_test, digits.y_test) > 0.4


def test_input_shapes_and_bad_inputs():
    """vit_tiny on 32x32 images (4x4 patches: 64 tokens) and kws_transformer on a 1-D view; an
    image model on sequences is refused in one sentence."""
    from harness.errors import UserError
    from mpq.models import build_model

    g = build_model("vit_tiny", (1, 32, 32)).lower()
    assert g.nodes[[n.op.kind for n in g.nodes].index("softmax")].type.shape == (2, 64, 64)
    g = build_model("kws_transformer", (1, 64)).lower()
    assert g.nodes[[n.op.kind for n in g.nodes].index("softmax")].type.shape == (2, 15, 15)
    with pytest.raises(UserError, match="takes \\(C, H, W\\) images"):
        build_model("vit_tiny", (1, 64))
