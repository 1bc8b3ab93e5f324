"""Whole models on the BitFusion testbench, from the layer IR (docs/bitfusion.md section 5).

Every IR node that is a GEMM kernel (its spec is a matmul or conv2d) runs on
the array as a *layer* (``layer.compile_layer``): bias, the op's requantisation
(its ``Requant``: multiplier, shift, ReLU, clamp to the next code's width) and
packing on the output unit, and a max / avg pool that follows the layer fused
into it when the pool is the layer's only reader and the unit can do it (no
padding, a window of at most 255 values, no average of 1-bit codes).  The
output stays in DRAM in the packed row layout.

Where the layout allows, a layer reads its input where the previous layer left
it: a linear layer reading a linear layer's output, or a conv's output through
a flatten (its weights placed with ``flatten_positions``), and a 1x1 conv
(stride 1, no padding, one group) reading a conv's output rows (weights placed
with ``channel_positions``).  Nothing crosses the link then.  Any other conv
reading another layer's output needs the im2col gather, which the array has no
load for: the host reads the producer's region back and writes the gathered
rows (``placement`` says "host im2col").

What the array cannot do runs the op's IR semantics on the host side and
reports 0 accelerator cycles: the residual add / rescale, concatenation,
padded or 1-D pools, adaptive pools, channel shuffle, ...  A MAC op whose
requantisation clamps below the code's top (ReLU6, ``clip_hi``) has no output
unit mode: its GEMM runs on the array with int32 outputs (``compile_kernel``)
and ``Op.finish`` requantises on the host.  Nothing here dispatches on op
classes: it asks the IR (spec kinds, ``view``, the MAC op's ``Requant``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import DoesNotFitError, MeasureError, MismatchError, UserError
from harness.protocol import ModelRun
from kernels import ir

from .compiler import CompileError, Compiled, _align, compile_kernel, gemm_operand_a, pack_a
from .layer import LayerProgram, PoolSpec, compile_layer
from .model import predict
from .outunit import container_bits

GEMM_OPS = ("matmul", "conv2d")
POOL_OPS = ("maxpool", "avgpool")

# where a node runs (IRModel.placement)
ARRAY = "array"                 # conv/linear + requantisation (+ fused pool) on the array
ARRAY_INT32 = "array-int32"     # the GEMM on the array, the requantisation on the host
FUSED = "fused"                 # a pool computed by the output unit of the layer before it
HOST = "host"                   # the op's IR semantics on the host side
VIEW = "view"                   # no data moves (flatten)


@dataclass
class _Step:
    node: ir.Node
    where: str = HOST
    spec: object = None
    layer: LayerProgram | None = None     # ARRAY
    kernel: Compiled | None = None        # ARRAY_INT32
    pool_of: int | None = None            # FUSED: the node whose output unit pools
    pool: int | None = None               # ARRAY: the fused pool node
    src: int | None = None                # ARRAY: the node whose packed output is the input (chained)
    read_back: bool = False               # ARRAY: the host needs the output
    predicted: int = 0                    # analytical model's cycles (array steps)
    input_from: str = ""                  # how the input gets into DRAM


def _out_bits(op) -> int:
    """The output unit's width for an op: unsigned b-bit codes after ReLU are the signed (b+1)-bit
    codes the ReLU leaves (clamp to [0, 2^b - 1] either way)."""
    rq = op.rq
    return op.out_bits + 1 if rq is not None and rq.unsigned and op.out_bits > 1 else op.out_bits


class IRModel:
    """A complete IR graph loaded into one BitFusion session (see module doc)."""

    def __init__(self, session, graph: ir.Graph):
        if not graph.complete:
            raise UserError("the model graph lacks weights or requantisation parameters.")
        self.session = session
        self.cfg = cfg = session.cfg
        self.graph = graph
        nodes = graph.nodes
        steps = [_Step(n, spec=graph.spec(n)) for n in nodes]
        self.steps = steps
        readers: list[list[int]] = [[] for _ in nodes]
        for n in nodes:
            for i in n.inputs:
                if i != ir.INPUT:
                    readers[i].append(n.index)
        # ---- where each node runs
        for st in steps:
            n = st.node
            if n.op.view:
                st.where = VIEW
            elif st.spec is not None and st.spec.op in GEMM_OPS:
                rq = n.op.rq
                st.where = ARRAY if (rq.clip_hi is None or n.op.out_bits <= 1) else ARRAY_INT32
        for st in steps:
            n = st.node
            if st.where != ARRAY or st.spec.op != "conv2d" or len(readers[n.index]) != 1:
                continue
            p = steps[readers[n.index][0]]
            ps = graph.spec(p.node, 1, "layer")
            if ps is not None and ps.op in POOL_OPS and p.where == HOST:
                kind, ks = ps.op[:3], int(ps.shape[4])
                if ks * ks <= 255 and not (kind == "avg" and n.op.out_bits == 1):
                    st.pool, p.where, p.pool_of = p.node.index, FUSED, n.index
        # ---- which outputs the host needs, and which layers read their input in DRAM
        owner = {}                      # value node -> the ARRAY step that writes it
        for st in steps:
            if st.where == ARRAY:
                owner[st.pool if st.pool is not None else st.node.index] = st
        for st in steps:
            if st.where == ARRAY and st.spec.op == "matmul" and st.spec.shape[0] == 1:
                src = st.node.inputs[0]
                while src != ir.INPUT and steps[src].where == VIEW:
                    src = steps[src].node.inputs[0]
                if src in owner and graph.type_of(src).bits >= 1:
                    st.src = src
        dense = {st.src for st in steps if st.src is not None and owner[st.src].spec.op == "conv2d"}
        for st in steps:
            # a 1x1 conv (stride 1, no padding, one group, no pool) reads the output rows of a conv
            # as they lie: row n of its input is pixel n's channels, the producer's output row n
            # (its weights placed where each channel lies: group blocks may hold padding)
            src = st.node.inputs[0]
            if st.where == ARRAY and st.spec.op == "conv2d" and st.pool is None and src in owner and \
                    tuple(st.spec.shape[5:]) == (1, 1, 0, 1) and src not in dense:
                st.src = src
        need = [False] * len(nodes)
        need[-1] = True
        for st in reversed(steps):
            i = st.node.index
            if st.where == FUSED:
                continue
            if st.where == ARRAY and st.src is not None:
                continue
            if st.where == VIEW and not need[i]:
                continue
            for j in st.node.inputs:
                if j != ir.INPUT:
                    k = steps[j].pool_of if steps[j].where == FUSED else j
                    need[j] = True
                    need[k] = True
        for st in steps:
            if st.where == ARRAY:
                st.read_back = need[st.pool if st.pool is not None else st.node.index]
        # ---- compile and load, DRAM bump-allocated in node order
        al = max(cfg.wpb, 16)
        top = 0
        for st in steps:
            n = st.node
            try:
                if st.where == ARRAY:
                    st.layer = self._compile_layer(st, steps, owner, dense, top)
                    lp = st.layer
                    self.session.client.write(lp.layout.w_base, lp.w_img.astype("<u4").tobytes())
                    self.session.client.write(lp.layout.p_base, lp.p_img.astype("<u4").tobytes())
                    lp.w_img = lp.p_img = None
                    top = _align(lp.layout.end, al)
                    st.predicted = int(predict(lp.plan).cycles)
                elif st.where == ARRAY_INT32:
                    c = compile_kernel(cfg, st.spec.op, st.spec.shape, self._qa(n), st.spec.qw, None,
                                       np.asarray(n.op.weight), base=top)
                    self.session.client.write(c.layout.w_base, c.w_img.astype("<u4").tobytes())
                    c.w_img = None
                    top = _align(c.layout.end, al)
                    st.kernel, st.predicted = c, int(predict(c.plan).cycles)
                    st.input_from = "host write (packed kernel operand)"
            except CompileError as e:
                raise DoesNotFitError(f"{n.name}: {e}") from None
        self.dram_words = top

    def _qa(self, n) -> int:
        """The array's activation width for a node: unsigned b-bit codes (0 .. 2^b - 1) are the
        non-negative signed (b+1)-bit operands, exactly (odd widths run on container bricks)."""
        t = self.graph.type_of(n.inputs[0])
        return t.bits + 1 if not t.signed and t.bits > 1 else t.bits

    def _compile_layer(self, st: _Step, steps, owner, dense: set, top: int) -> LayerProgram:
        n, spec = st.node, st.spec
        op, rq = n.op, n.op.rq
        me = st.pool if st.pool is not None else n.index
        pool = None
        if st.pool is not None:
            ps = self.graph.spec(steps[st.pool].node, 1, "layer")
            pool = PoolSpec(ps.op[:3], int(ps.shape[4]), int(ps.shape[5]))
        kw = {}
        if me in dense:
            # dense rows: the flatten + linear reading this output reads it as one short row
            groups, per_group = spec.shape[8], spec.shape[4] // spec.shape[8]
            kw["y_pitch"] = groups * -(-per_group * container_bits(_out_bits(op)) // 8)
        args = (self.cfg, spec.op, spec.shape, self._qa(n), spec.qw, np.asarray(op.weight), rq.bias, rq.mult,
                rq.shift, bool(rq.relu), _out_bits(op))
        if st.src is not None:
            # y_base of every layer is a whole beat (bump-allocated, or after its input): a valid a_base
            prod = owner[st.src]
            st.input_from = f"in DRAM ({prod.node.name}'s packed output)"
            if spec.op == "conv2d":     # its rows: the producer's pitch (the default one, a legal input pitch)
                kw["a_pitch"] = prod.layer.out_pitch // 4
                kw["in_positions"] = prod.layer.channel_positions()
            else:
                kw["in_positions"] = prod.layer.flatten_positions()
            return compile_layer(*args, True, pool, prod.layer.layout.y_base, top, **kw)
        src = n.inputs[0]
        st.input_from = ("host write (the model input)" if src == ir.INPUT else
                         "host im2col of " + self.graph.nodes[src].name if spec.op == "conv2d" else
                         "host write of " + self.graph.nodes[src].name)
        return compile_layer(*args, True, pool, top, **kw)

    # ---- reports ------------------------------------------------------------------------------
    @property
    def placement(self) -> list[dict]:
        """Per node: where it runs, how its input reaches DRAM, the analytical model's cycles."""
        out = []
        for st in self.steps:
            n = st.node
            d = {"name": n.name, "kind": n.op.kind, "where": st.where}
            if st.where == ARRAY:
                d["requant"] = "array"
                if st.pool is not None:
                    d["pool"] = self.steps[st.pool].node.name
                d["input"] = st.input_from
                d["output"] = "read back by the host" if st.read_back else "stays in DRAM"
            elif st.where == ARRAY_INT32:
                d["requant"] = "host (the output unit has no upper clamp: ReLU6)"
                d["input"] = st.input_from
            elif st.where == FUSED:
                d["into"] = self.steps[st.pool_of].node.name
            if st.where in (ARRAY, ARRAY_INT32):
                d["predicted_cycles"] = st.predicted
            out.append(d)
        return out

    @property
    def predicted_layers(self) -> list[int]:
        """The analytical model's cycles per timed node (the timer slots' order; 0 off the array)."""
        return [st.predicted for st in self.steps if st.node.op.timed]

    @property
    def info(self) -> dict:
        return {"in_count": self.graph.input.numel, "out_count": self.graph.output.numel,
                "n_layers": len(self.graph.timed_nodes), "scratch_bytes": 4 * self.dram_words,
                "placement": self.placement, "predicted_layers": self.predicted_layers,
                "predicted_total": int(sum(self.predicted_layers))}

    # ---- inference ----------------------------------------------------------------------------
    def _run_program(self, program, y_base: int, y_words: int, guess: int, timeout):
        s = self.session
        res = s.client.run(program, y_base, y_words, self.cfg.dram_latency, 1, max_cycles=8 * guess + 200_000,
                           timeout=timeout or s.timeout)
        return res

    def run(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        g = self.graph
        if len(inputs) != g.input.numel:
            raise MeasureError(f"input has {len(inputs)} values, the model takes {g.input.numel}")
        x = np.frombuffer(bytes(inputs), dtype=np.int8).astype(np.int64).reshape(1, *g.input.shape)
        vals: list[np.ndarray | None] = [None] * len(self.steps)
        cycles = [0] * len(self.steps)
        client = self.session.client
        for st in self.steps:
            n = st.node
            i = n.index
            xs = [x if j == ir.INPUT else vals[j] for j in n.inputs]
            if st.where == ARRAY:
                lp = st.layer
                if st.src is None:
                    a = xs[0] if st.spec.op == "conv2d" else xs[0].reshape(1, -1)
                    try:
                        img = lp.input_image(a)
                    except CompileError as e:
                        raise MeasureError(f"{n.name}: {e}") from None
                    client.write(lp.layout.a_base, img.astype("<u4").tobytes())
                lay = lp.layout
                res = self._run_program(lp.program, lay.y_base, lay.y_words if st.read_back else 0, st.predicted,
                                        timeout)
                cycles[i] = int(res.cycles[0])
                if st.read_back:
                    y = lp.outputs(np.frombuffer(res.out, dtype="<u4")).astype(np.int64)
                    vals[st.pool if st.pool is not None else i] = y
            elif st.where == ARRAY_INT32:
                c, spec = st.kernel, st.spec
                lo, hi = g.type_of(n.inputs[0]).value_range
                a = xs[0] if spec.op == "conv2d" else xs[0].reshape(1, -1)
                if a.size and (a.min() < lo or a.max() > hi):
                    raise MeasureError(f"{n.name}: activations outside the {spec.qa}-bit range")
                c.a_img = pack_a(c.plan, gemm_operand_a(spec.op, spec.shape, a.astype(np.int8)))
                cyc, acc = self.session.execute(c, 1, timeout)
                c.a_img = None
                cycles[i] = int(cyc[0])
                vals[i] = n.op.finish(acc.astype(np.int64))
            elif st.where == FUSED:
                pass
            elif st.where == VIEW and any(v is None for v in xs):
                pass                     # read only by layers that find their input in DRAM
            else:
                vals[i] = n.op.run(xs)
        y = vals[-1]
        if y is None:
            raise MismatchError("the model's output never reached the host")
        y = y.reshape(-1)
        if y.size and (int(y.max()) > 2**31 - 1 or int(y.min()) < -(2**31)):
            raise MeasureError("integer logits overflow int32")
        layers = [cycles[st.node.index] for st in self.steps if st.node.op.timed]
        return ModelRun([int(v) for v in y], int(sum(layers)), layers)

