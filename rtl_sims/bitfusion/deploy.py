"""Whole models on the BitFusion testbench, from the layer IR.

Every IR node that is a GEMM kernel (its spec is a matmul or conv2d) runs on
the array: its weights go to DRAM once at load, its activations are packed and
written per inference, and the array's int32 result is finished by the op's
own requantisation (``Op.finish``, the one definition).  Every other node runs
its IR semantics on the host side and reports 0 accelerator cycles.  Nothing
here knows which layer types exist; it asks the IR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import DoesNotFitError, MeasureError, UserError
from harness.protocol import ModelRun
from kernels import ir

from .compiler import CompileError, Compiled, compile_kernel, gemm_operand_a, pack_a

GEMM_OPS = ("matmul", "conv2d")


@dataclass
class _Step:
    node: ir.Node
    compiled: Compiled | None = None      # set for nodes running on the array
    spec: object = None


class IRModel:
    """A complete IR graph loaded into one BitFusion session (see module doc)."""

    def __init__(self, session, graph: ir.Graph):
        if not graph.complete:
            raise UserError("the model graph lacks weights or requantisation parameters.")
        self.session = session
        self.graph = graph
        self.steps: list[_Step] = []
        base = 0
        for n in graph.nodes:
            spec = graph.spec(n)
            step = _Step(n, spec=spec)
            if spec is not None and spec.op in GEMM_OPS:
                try:
                    c = compile_kernel(session.cfg, spec.op, spec.shape, spec.qa, spec.qw, None,
                                       np.asarray(n.op.weight), base=base)
                except CompileError as e:
                    raise DoesNotFitError(f"{n.name}: {e}") from None
                session.client.write(c.layout.w_base, c.w_img.astype("<u4").tobytes())
                c.w_img = None
                base = c.layout.end
                step.compiled = c
            self.steps.append(step)
        self.dram_words = base

    @property
    def info(self) -> dict:
        return {"in_count": self.graph.input.numel, "out_count": self.graph.output.numel,
                "n_layers": len(self.graph.timed_nodes), "scratch_bytes": 4 * self.dram_words}

    def run(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        g = self.graph
        if len(inputs) != g.input.numel:
            raise MeasureError(f"input has {len(inputs)} values, the model takes {g.input.numel}")
        x = np.frombuffer(bytes(inputs), dtype=np.int8).astype(np.int64).reshape(1, *g.input.shape)
        vals: list[np.ndarray] = []
        layers: list[int] = []
        for st in self.steps:
            n = st.node
            xs = [x if i == ir.INPUT else vals[i] for i in n.inputs]
            if st.compiled is not None:
                c, spec = st.compiled, st.spec
                lo, hi = g.type_of(n.inputs[0]).value_range
                a = xs[0] if spec.op == "conv2d" else xs[0].reshape(1, -1)
                if a.size and (a.min() < lo or a.max() > hi):
                    raise MeasureError(f"{n.name}: activations outside the {spec.qa}-bit range")
                c.a_img = pack_a(c.plan, gemm_operand_a(spec.op, spec.shape, a.astype(np.int8)))
                cycles, acc = self.session.execute(c, 1, timeout)
                c.a_img = None
                layers.append(int(cycles[0]))
                vals.append(n.op.finish(acc.astype(np.int64)))
            else:
                vals.append(n.op.run(xs))
                if n.op.timed:
                    layers.append(0)       # runs on the host side, not on the accelerator
        y = vals[-1].reshape(-1)
        if y.size and (int(y.max()) > 2**31 - 1 or int(y.min()) < -(2**31)):
            raise MeasureError("integer logits overflow int32")
        return ModelRun([int(v) for v in y], int(sum(layers)), layers)
