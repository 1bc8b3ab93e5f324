"""One layer as a deployed model runs it: the graph a layer-mode measurement loads.

A layer of a model runs once, right after the layer before it wrote its input,
with its weights wherever the previous layers left the caches, through exactly
the code the generator emits for it (activation packing, the kernel, the
requantisation, the output writes).  To time a layer that way, the measurement
core builds a one-layer graph -- an untimed :class:`Prime` step, then the layer
with seeded random parameters -- and runs its generated image like any model:
the layer's timer slot is the measurement, the returned output is checked
bit-exact against ``Graph.run``.  A layer of several inputs (residual add,
concatenation) reads one graph input holding them one after the other; a
Prime step per input writes its part into a buffer of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from .graph import Graph
from .ops import Op
from .types import IRError, TensorType

PRIME_C = r"""
static void mico_prime(const int8_t *src, int8_t *dst, uint32_t n, const volatile uint8_t *evict,
                       uint32_t evict_n, uint32_t line, const volatile uint8_t *packed, uint32_t packed_n,
                       const volatile uint8_t *acc, uint32_t acc_n) {
    uint32_t i, sink = 0;
    /* evict the data cache: stream through a region larger than it */
    for (i = 0; i < evict_n; i += line)
        sink += evict[i];
    /* the scratch every layer of a model reuses was just used by the layer before */
    for (i = 0; i < packed_n; i += line)
        sink += packed[i];
    for (i = 0; i < acc_n; i += line)
        sink += acc[i];
    /* write the layer's input as the previous layer would have */
    for (i = 0; i < n; i++)
        dst[i] = src[i];
    (void)sink;
}
"""


@dataclass(eq=False)
class Prime(Op):
    """Untimed: evict the data cache (stream through ``evict_bytes`` of scratch), then
    write the input into a fresh buffer, as the previous layer of a model does."""

    kind: ClassVar[str] = "prime"
    timed: ClassVar[bool] = False
    c_support: ClassVar[str] = PRIME_C
    name: str = "prime"
    evict_bytes: int = 0
    line_bytes: int = 32
    packed_bytes: int = 0       # shared scratch the next layer uses, read after the eviction
    acc_bytes: int = 0
    offset: int = 0             # first element of the input it writes (a part of a multi-input layer's input)
    shape: tuple[int, ...] | None = None    # of what it writes (None: the whole input)

    def infer(self, ins):
        t = ins[0]
        if self.shape is None:
            return t
        out = TensorType(tuple(self.shape), t.bits, t.signed)
        if self.offset < 0 or self.offset + out.numel > t.numel:
            raise IRError(f"{self.name}: elements {self.offset}..{self.offset + out.numel} are not in the input.")
        return out

    def run(self, xs):
        if self.shape is None:
            return xs[0]
        n = int(np.prod(self.shape))
        return xs[0].reshape(xs[0].shape[0], -1)[:, self.offset:self.offset + n].reshape(-1, *self.shape)

    def scratch(self, ins, out):
        from .ops import Scratch

        return Scratch(kernel_bytes=self.evict_bytes)

    def c_body(self, ctx):
        src = f"{ctx.src[0]} + {self.offset}u" if self.offset else ctx.src[0]
        return (f"mico_prime({src}, {ctx.dst}, {ctx.out.numel}u, (const volatile uint8_t *)kscratch, "
                f"{self.evict_bytes}u, {self.line_bytes}u, (const volatile uint8_t *)packed, {self.packed_bytes}u, "
                f"(const volatile uint8_t *)acc, {self.acc_bytes}u);")


def layer_graph(op: Op, in_type: TensorType | Sequence[TensorType], seed: int, evict_bytes: int = 0,
                warm: bool = False, repeats: int = 1) -> Graph:
    """Prime -> ``op`` (with seeded random parameters): what a layer-mode measurement runs.

    With ``warm`` the layer first runs once on the same input (its time is not a
    measurement), so its code is in the instruction cache as when the layer before
    it used the same kernel.  ``repeats`` (prime, layer) pairs follow, all reading
    the graph input; the measurements are the LAST ``repeats`` timer slots, and the
    last layer's output is the graph's.  A list of input types (a layer of several
    inputs) makes the graph input their concatenation, flat, with one Prime per part
    (the first one evicts the cache)."""
    from .graph import INPUT

    if repeats < 1:
        raise IRError(f"a layer measurement needs at least one timed run, not {repeats}.")
    ins = [in_type] if isinstance(in_type, TensorType) else list(in_type)
    if len({(t.bits, t.signed) for t in ins}) != 1:
        raise IRError("the inputs of a measured layer must carry one code.")
    rng = np.random.default_rng(seed)
    g = Graph(ins[0] if len(ins) == 1 else
              TensorType((sum(t.numel for t in ins),), ins[0].bits, ins[0].signed))
    layer = op.randomized(rng, ins)
    sc = layer.scratch(ins, layer.infer(ins))
    if evict_bytes:
        # at most half the evicted cache each: a previous layer left some of it, not all
        touch = dict(packed_bytes=min(4 * sc.packed_words, evict_bytes // 4),
                     acc_bytes=min(4 * sc.acc_words, evict_bytes // 4))
    else:
        touch = {}

    def prime(name: str, evict: int, **kw) -> tuple[int, ...]:
        if len(ins) == 1:
            return (g.add(Prime(name=name, evict_bytes=evict, **kw), INPUT),)
        out, off = [], 0
        for i, t in enumerate(ins):
            out.append(g.add(Prime(name=f"{name}_{i}", evict_bytes=evict if i == 0 else 0,
                                   offset=off, shape=t.shape, **(kw if i == 0 else {})), INPUT))
            off += t.numel
        return tuple(out)

    # every run is the same op object: one copy of the weights, at one address, as in a model
    if warm:
        g.add(layer, *prime("prime_warm", 0))
    for i in range(repeats):
        g.add(layer, *prime("prime" if i == repeats - 1 else f"prime_r{i}", int(evict_bytes), **touch))
    return g


def layer_inputs(in_type: TensorType, seed: int, n: int = 1) -> np.ndarray:
    """Seeded uniform codes for the layer's input (n samples)."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    lo, hi = in_type.value_range
    if in_type.bits == 1:
        return np.where(rng.integers(0, 2, size=(n, *in_type.shape)) == 1, 1, -1).astype(np.int8)
    return rng.integers(lo, hi + 1, size=(n, *in_type.shape)).astype(np.int8)


#: spec op -> the IR op class that rebuilds itself from a layer-mode spec (a new op adds itself here)
SPEC_OPS: dict[str, type] = {}


def _register_builtin() -> None:
    from .eltwise import Add, Rescale
    from .layout import ChannelShuffle, Concat, Unfold1d
    from .attention import AttnMatMul, Softmax, Transpose
    from .norm import GELU, LayerNorm
    from .ops import AdaptiveAvgPool, Conv2d, Linear, Pool

    SPEC_OPS.update({"conv2d": Conv2d, "matmul": Linear, "maxpool": Pool, "avgpool": Pool, "maxpool1d": Pool,
                     "avgpool1d": Pool, "gavgpool": AdaptiveAvgPool, "add": Add, "rescale": Rescale,
                     "concat": Concat, "shuffle": ChannelShuffle, "unfold": Unfold1d, "softmax": Softmax,
                     "layernorm": LayerNorm, "gelu": GELU, "transpose": Transpose, "attn_qk": AttnMatMul,
                     "attn_av": AttnMatMul})


_register_builtin()


def graph_for_spec(spec, seed: int, evict_bytes: int = 0, warm: bool = True,
                   repeats: int = 1) -> tuple[Graph, TensorType]:
    """The measurement graph of a layer-mode spec (one image: N must be 1) and its input type."""
    if spec.mode != "layer":
        raise IRError(f"{spec} is not a layer-mode spec.")
    cls = SPEC_OPS.get(spec.op)
    if spec.op == "matmul" and spec.shape[0] > 1:
        from .attention import TokenLinear

        cls = TokenLinear                   # one image's tokens: N rows of one matmul
    elif spec.shape[0] != 1:
        raise IRError(f"layer mode measures one image at a time (N=1), not N={spec.shape[0]}.")
    if cls is None:
        raise IRError(f"no IR op measures {spec.op!r} in layer mode.")
    op, in_type = cls.from_spec(spec)
    g = layer_graph(op, in_type, seed, evict_bytes, warm, repeats)
    return g, g.input
