"""Zoo models with branches on the RTL targets: bit-exact on vexriscv-mico (generated C on
the SIMD firmware) and bitfusion-rtl (GEMMs on the array), and the memory check that
refuses a model which does not fit a small vexriscv and names the mem_kib that does."""

import numpy as np
import pytest
import torch

from harness.errors import UserError
from helpers.models import calibrated_integer_model, need_target
from kernels.ir import codegen
from mpq.datasets import load_dataset
from mpq.deploy import run_on_device
from mpq.memory import check_fits, model_memory

pytestmark = pytest.mark.slow
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _deploy(t, model_name, scheme_seed, digits, n_images, uniform=None, **expect):
    m, im = calibrated_integer_model(model_name, scheme_seed, digits.x_train, uniform=uniform)
    gen = codegen.generate(im.graph, {"model": model_name})
    image = None if t.capabilities().ir_models else codegen.compile_image(gen, t.model_toolchain())
    s = t.open(t.build())
    try:
        check_fits(model_memory(gen, image), s.hello, t.name, getattr(t, "mem_kib", None))
        xq = im.quantize_input(digits.x_test[:n_images]).numpy()
        run = run_on_device(s, im.graph, xq, image)
    finally:
        s.close()
    np.testing.assert_array_equal(run.outputs, np.asarray(im.forward_int(xq), dtype=np.int64))
    return run


@pytest.mark.parametrize("model,images", [("resnet8", 5), ("shufflenet", 2), ("m5", 2)])
def test_zoo_model_on_vexriscv_mico(model, images, digits):
    run = _deploy(need_target("vexriscv-mico"), model, 5, digits, images)
    assert (run.totals > 0).all()


@pytest.mark.parametrize("model,images", [("resnet8", 5), ("dscnn", 2)])
def test_zoo_model_on_bitfusion_rtl(model, images, digits):
    run = _deploy(need_target("bitfusion-rtl"), model, 6, digits, images)
    assert (run.times.sum(axis=1) > 0).all()          # the GEMMs ran on the array


def test_a_model_that_does_not_fit_names_the_mem_kib_that_does(digits):
    t = need_target("vexriscv-mico", mem_kib=256)
    m, im = calibrated_integer_model("resnet8", 7, digits.x_train, uniform=(8, 8))
    gen = codegen.generate(im.graph, {"model": "resnet8"})
    image = codegen.compile_image(gen, t.model_toolchain())
    need = model_memory(gen, image)
    s = t.open(t.build())
    try:
        with pytest.raises(UserError, match=r"does not fit vexriscv-mico at mem_kib=256: its image needs .* flash "
                                            r".*; rerun with --param mem_kib=(\d+)") as e:
            check_fits(need, s.hello, t.name, 256)
    finally:
        s.close()
    want = int(str(e.value).split("mem_kib=")[-1].split()[0])
    big = need_target("vexriscv-mico", mem_kib=want)
    s = big.open(big.build())
    try:
        check_fits(need, s.hello, big.name, want)          # the suggestion is enough ...
        xq = im.quantize_input(digits.x_test[:1]).numpy()
        run = run_on_device(s, im.graph, xq, image)        # ... and the firmware agrees
    finally:
        s.close()
    np.testing.assert_array_equal(run.outputs, np.asarray(im.forward_int(xq), dtype=np.int64))
