"""tinyllama on the RTL core: the generated token loop on vexriscv-mico produces the integer
model's 8 greedy tokens, with per-token cycles from the core's counter."""

import numpy as np
import pytest
import torch

from helpers.models import need_target
from mpq.llm_deploy import run_tokens
from mpq.models import tinyllama as T

pytestmark = pytest.mark.slow
torch.set_num_threads(1)


def test_tinyllama_tokens_on_vexriscv_mico():
    model, sp, _ = T.trained_model(steps=120)
    scheme = [(8, 8)] * 7 + [(8, 4)] * 7 + [(8, 8)]
    im = T.build_integer(model, sp["train"], scheme)
    run = run_tokens(im, need_target("vexriscv-mico"), [T.encode("Tom")], 8, max_prompt=4)
    np.testing.assert_array_equal(run.device, run.reference)
    assert run.unit == "cycles" and (run.times > 0).all()
