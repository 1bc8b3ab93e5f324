"""One layer as a deployed model runs it: the graph a layer-mode measurement loads.

A layer of a model runs once, right after the layer before it wrote its input,
with its weights wherever the previous layers left the caches, through exactly
the code the generator emits for it (activation packing, the kernel, the
requantisation, the output writes).  To time a layer that way, the measurement
core builds a one-layer graph -- an untimed :class:`Prime` step, then the layer
with seeded random parameters -- and runs its generated image like any model:
the layer's timer slot is the measurement, the returned output is checked
bit-exact against ``Graph.run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .graph import Graph
from .ops import Op
from .types import TensorType

PRIME_C = r"""
static void mico_prime(const int8_t *src, int8_t *dst, uint32_t n, const volatile uint8_t *evict,
                       uint32_t evict_n, uint32_t line) {
    uint32_t i, sink = 0;
    /* evict the data cache: stream through a region larger than it */
    for (i = 0; i < evict_n; i += line)
        sink += evict[i];
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

    def infer(self, ins):
        return ins[0]

    def run(self, xs):
        return xs[0]

    def scratch(self, ins, out):
        from .ops import Scratch

        return Scratch(kernel_bytes=self.evict_bytes)

    def c_body(self, ctx):
        return (f"mico_prime({ctx.src[0]}, {ctx.dst}, {ctx.out.numel}u, (const volatile uint8_t *)kscratch, "
                f"{self.evict_bytes}u, {self.line_bytes}u);")


def layer_graph(op: Op, in_type: TensorType, seed: int, evict_bytes: int = 0, warm: bool = False) -> Graph:
    """Prime -> ``op`` (with seeded random parameters): what a layer-mode measurement runs.

    With ``warm`` the layer first runs once untimed on the same input, so its code
    is in the instruction cache as when the layer before it used the same kernel;
    the measured run is then the LAST timed node."""
    import dataclasses

    from .graph import INPUT

    rng = np.random.default_rng(seed)
    g = Graph(in_type)
    layer = op.randomized(rng, [in_type])
    if warm:
        g.add(Prime(name="prime0", evict_bytes=0))
        g.add(dataclasses.replace(layer, name=f"{layer.name}_warm"))
        g.add(Prime(evict_bytes=int(evict_bytes)), INPUT)
    else:
        g.add(Prime(evict_bytes=int(evict_bytes)))
    g.add(layer)
    return g


def layer_inputs(in_type: TensorType, seed: int, n: int = 1) -> np.ndarray:
    """Seeded uniform codes for the layer's input (n samples)."""
    rng = np.random.default_rng(seed ^ 0x5EED)
    lo, hi = in_type.value_range
    if in_type.bits == 1:
        return np.where(rng.integers(0, 2, size=(n, *in_type.shape)) == 1, 1, -1).astype(np.int8)
    return rng.integers(lo, hi + 1, size=(n, *in_type.shape)).astype(np.int8)
