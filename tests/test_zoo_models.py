"""The model zoo: every model lowers, generates C and runs bit-exact on the host;
fake quant agrees with the integer model; buffers of branches stay alive;
memory needs are reported and checked against the target."""

import itertools
import re

import numpy as np
import pytest
import torch

from helpers.models import calibrated_integer_model, host_model_session
from kernels import ir
from kernels.ir import codegen
from mpq.datasets import load_dataset
from mpq.models import MODELS, get_model

torch.set_num_threads(1)
ZOO = [m for m in MODELS if m not in ("lenet", "mlp")]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def host():
    yield from host_model_session()


def live_ranges_disjoint(graph: ir.Graph) -> None:
    """Every two buffers alive at once (from their producer to the last reader of any
    view of them) sit in disjoint bytes of the activation scratch, under the peak."""
    expr, peak = codegen.plan_buffers(graph)
    last = graph.last_use()
    root: dict[int, int] = {ir.INPUT: ir.INPUT}
    life, where = {}, {}
    for n in graph.nodes:
        root[n.index] = root[n.inputs[0]] if n.op.view else n.index
        r = root[n.index]
        if r == ir.INPUT or expr[r] == "output":
            continue
        lo, hi = life.get(r, (r, r))
        life[r] = (lo, max(hi, last[n.index]))
        off = int(re.search(r"scratch \+ (\d+)u", expr[r]).group(1))
        where[r] = (off, off + graph.nodes[r].type.nbytes)
    for a, b in itertools.combinations(life, 2):
        if life[a][0] <= life[b][1] and life[b][0] <= life[a][1]:
            assert where[a][1] <= where[b][0] or where[b][1] <= where[a][0], (graph.nodes[a].name, graph.nodes[b].name)
    assert all(e <= peak for _, e in where.values())


@pytest.mark.parametrize("name", ZOO)
def test_model_is_bit_exact_on_host(name, digits, host):
    """lower + codegen + deploy (the device runner of mico deploy) on a random mixed scheme."""
    from mpq.deploy import run_on_device

    m, im = calibrated_integer_model(name, 3, digits.x_train)
    g = im.graph
    live_ranges_disjoint(g)
    xq = im.quantize_input(digits.x_test[:3]).numpy()
    ref = np.asarray(im.forward_int(xq), dtype=np.int64)
    with torch.no_grad():
        fq = m(digits.x_test[:3])
    assert fq.shape == ref.shape == (3, m.num_classes)
    gen = codegen.generate(g, {"model": name})
    session, tool = host
    run = run_on_device(session, g, xq, codegen.compile_image(gen, tool))
    np.testing.assert_array_equal(run.outputs, ref)
    assert run.times.shape == (3, len(g.timed_nodes)) and len(g.mac_nodes) == len(m.layer_names)
    assert [n.name for n in g.mac_nodes] == m.layer_names


def test_residual_input_stays_alive():
    """The identity shortcut of a residual block is read by the add after the body ran:
    its buffer is not reused by the body's outputs."""
    g = get_model("resnet8").lower()
    expr, _ = codegen.plan_buffers(g)
    add = next(n for n in g.nodes if n.op.kind == "add")
    body_start = add.inputs[1]                 # the block input (shortcut), produced before the body
    body = [n.index for n in g.nodes if body_start < n.index < add.index]
    assert len(body) == 2 and all(expr[i] != expr[body_start] for i in body)
    live_ranges_disjoint(g)
    for name in ("squeezenet", "shufflenet", "mobilenetv2"):
        live_ranges_disjoint(get_model(name).lower())


#: float epochs on digits that give each priority model non-trivial predictions quickly
AGREEMENT_EPOCHS = {"resnet8": 3, "dscnn": 3, "mobilenetv2": 2, "m5": 5, "har_cnn1d": 5, "shufflenet": 3}


@pytest.mark.parametrize("name", list(AGREEMENT_EPOCHS))
def test_fake_quant_agrees_with_the_integer_model(name, digits):
    """Predictions of the fake-quant model and of the integer model it lowers to agree on
    >= 99% of the test images, for uniform and mixed schemes (rescale nodes included)."""
    from mpq.integer import build_integer_model
    from mpq.train import accuracy, quantize, set_seed, train_float

    set_seed(0)
    m = get_model(name)
    train_float(m, digits.x_train, digits.y_train, epochs=AGREEMENT_EPOCHS[name], seed=0)
    n = len(m.layer_names)
    rng = np.random.default_rng(1)
    mixed = [(8, 8)] + [tuple(int(b) for b in rng.choice((2, 4, 8), 2)) for _ in range(n - 1)]
    for scheme in ([(8, 8)] * n, [(4, 4)] * n, mixed):
        q = quantize(m, scheme, digits.x_train, seed=0)
        im = build_integer_model(q)
        with torch.no_grad():
            fq = q(digits.x_test).argmax(1)
        agree = float((fq == im.predict(digits.x_test)).float().mean())
        assert agree >= 0.99, (scheme, agree)
        if scheme[1] == (8, 8):
            assert accuracy(q, digits.x_test, digits.y_test) > 0.5


def test_memory_check_names_mem_kib():
    from harness.errors import UserError
    from harness.protocol import Hello
    from mpq.memory import ModelMemory, check_fits, mem_kib_needed

    hello = Hello(1, 1, ram_bytes=100_000, max_payload=4096, timer_unit="cycles", timer_hz=1, ops=("matmul",),
                  pairs=((8, 8),), kernels_version=1, code_bytes=30_000, target_id="t", isa="rv32im", build="")
    check_fits(ModelMemory(30_000, 1000, 5000, 100_000), hello, "t", 256)             # exactly fits
    with pytest.raises(UserError, match=r"at mem_kib=256: its image needs 39.1 KiB of flash .*--param mem_kib=\d+"):
        check_fits(ModelMemory(40_000, 1000, 5000, 9000), hello, "t", 256)
    with pytest.raises(UserError, match=r"its buffers need 146.7 KiB of RAM \(activations peak at 48.8 KiB\)"):
        check_fits(ModelMemory(1000, 50_000, 150_000, 150_200), hello, "t", 256)
    with pytest.raises(UserError, match="larger target"):
        check_fits(ModelMemory(40_000, 1000, 5000, 9000), hello, "host")
    # the suggestion: 256 KiB hold 130,000 bytes for the firmware and the stack; the
    # rest splits a quarter code, three quarters arena
    want = mem_kib_needed(ModelMemory(40_000, 0, 0, 9000), 30_000, 100_000, 256)

    def fits(kib):
        free = kib * 1024 - (256 * 1024 - 130_000)
        return free // 4 >= 40_000 and free - free // 4 >= 9000

    assert want % 64 == 0 and fits(want) and not fits(want - 64)
    assert mem_kib_needed(ModelMemory(2 << 20, 0, 0, 0), 30_000, 100_000, 256) is None
