"""The layer graph: ops in topological order, shapes inferred once as they are added.

A model lowers to a :class:`Graph` once; the integer reference (``run``), the
code generator, the accelerator deploy, the latency model (``specs``) and the
reports all walk its nodes through the :class:`~kernels.ir.ops.Op` interface.
Inputs of a node are indices of earlier nodes (``-1`` is the graph input), so
residual branches and concatenations are ordinary nodes with two inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from .ops import Op
from .types import IRError, TensorType

if TYPE_CHECKING:  # pragma: no cover
    from harness.spec import KernelSpec

INPUT = -1


@dataclass
class Node:
    op: Op
    inputs: tuple[int, ...]
    type: TensorType          # of the output
    index: int

    @property
    def name(self) -> str:
        return self.op.name


class Graph:
    """An integer model: input type + nodes.  The last node's output is the model's."""

    def __init__(self, input: TensorType):
        self.input = input
        self.nodes: list[Node] = []

    # ---- construction -------------------------------------------------------------------------
    def add(self, op: Op, *inputs: int) -> int:
        """Append ``op`` reading ``inputs`` (default: the previous node); returns its index."""
        ins = tuple(int(i) for i in inputs) if inputs else (len(self.nodes) - 1 if self.nodes else INPUT,)
        for i in ins:
            if not INPUT <= i < len(self.nodes):
                raise IRError(f"{op.name or op.kind}: input {i} is not an earlier node.")
        if len(ins) != op.n_inputs:
            raise IRError(f"{op.name or op.kind}: takes {op.n_inputs} inputs, got {len(ins)}.")
        if not op.name:
            op.name = f"{op.kind}{len(self.nodes)}"
        # the same op object may run at several nodes (its constants are shared); two
        # different ops may not share a name
        if any(n.op.name == op.name and n.op is not op for n in self.nodes):
            raise IRError(f"two ops are named {op.name!r}; names must be unique in a graph.")
        t = op.infer([self.type_of(i) for i in ins])
        self.nodes.append(Node(op, ins, t, len(self.nodes)))
        return len(self.nodes) - 1

    def type_of(self, i: int) -> TensorType:
        return self.input if i == INPUT else self.nodes[i].type

    def in_types(self, node: Node) -> list[TensorType]:
        return [self.type_of(i) for i in node.inputs]

    # ---- structure ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def output(self) -> TensorType:
        if not self.nodes:
            raise IRError("the graph has no ops.")
        return self.nodes[-1].type

    @property
    def mac_nodes(self) -> list[Node]:
        """Nodes with (qa, qw): the layers a scheme assigns bit-widths to."""
        return [n for n in self.nodes if n.op.bits is not None]

    @property
    def timed_nodes(self) -> list[Node]:
        """Nodes that run code on a device, in order: one timer slot each."""
        return [n for n in self.nodes if n.op.timed]

    @property
    def scheme(self) -> tuple[tuple[int, int], ...]:
        return tuple(n.op.bits for n in self.mac_nodes)

    @property
    def complete(self) -> bool:
        return all(n.op.complete for n in self.nodes)

    def spec(self, node: Node, batch: int = 1, mode: str = "kernel") -> "KernelSpec | None":
        return node.op.spec(self.in_types(node), batch, mode)

    def specs(self, batch: int = 1, mode: str = "kernel") -> list["KernelSpec"]:
        """Specs of every node measured in ``mode`` (in node order): in kernel mode the
        MAC kernels, in layer mode every timed op as the deployed model runs it."""
        return [s for s in (self.spec(n, batch, mode) for n in self.nodes) if s is not None]

    def cost_terms(self, node: Node) -> dict[str, int]:
        return node.op.cost_terms(self.in_types(node), node.type)

    @property
    def weight_bits(self) -> int:
        return int(sum(n.op.weight_bits() for n in self.mac_nodes))

    @property
    def param_bits(self) -> int:
        return int(sum(n.op.param_bits() for n in self.nodes))

    # ---- integer reference -------------------------------------------------------------------------
    def run(self, x: np.ndarray, trace: bool = False):
        """Run the integer semantics on a batch (N, *input.shape) of codes.

        Returns the last node's output (int64), and with ``trace`` the list of
        every node's output too."""
        x = np.asarray(x).astype(np.int64)
        if x.shape[1:] != self.input.shape:
            if x.shape == self.input.shape:
                x = x[None]
            elif x.ndim >= 2 and int(np.prod(x.shape[1:])) == self.input.numel and x.ndim != len(self.input.shape) + 1:
                # another view of the same C-order codes (e.g. 8x8 images fed to a 1-D model as 64 samples)
                x = x.reshape(x.shape[0], *self.input.shape)
            else:
                raise IRError(f"the input has shape {x.shape[1:]}, the graph takes {self.input.shape}.")
        lo, hi = self.input.value_range
        if x.size and (x.min() < lo or x.max() > hi):
            raise IRError(f"the input holds values outside the {self.input.bits}-bit range [{lo}, {hi}].")
        vals: list[np.ndarray] = []
        for n in self.nodes:
            xs = [x if i == INPUT else vals[i] for i in n.inputs]
            vals.append(n.op.run(xs))
        y = vals[-1]
        if self.output.bits == 0 and y.size and (y.max() > 2**31 - 1 or y.min() < -(2**31)):
            raise IRError("the integer logits overflow int32.")
        return (y, vals) if trace else y

    def last_use(self) -> list[int]:
        """For every value (node index; the input is index -1 -> slot len) the last node reading it."""
        last = [-1] * (len(self.nodes) + 1)
        for n in self.nodes:
            for i in n.inputs:
                last[i] = n.index
        return last

    def describe(self) -> list[dict]:
        """One row per node (name, kind, input shapes, output shape, bits) for reports."""
        out = []
        for n in self.nodes:
            out.append({"name": n.name, "kind": n.op.kind, "inputs": [self.type_of(i).shape for i in n.inputs],
                        "output": n.type.shape, "out_bits": n.type.bits,
                        "bits": list(n.op.bits) if n.op.bits else None})
        return out


def chain(input: TensorType, ops: Sequence[Op]) -> Graph:
    """A graph of ops applied one after the other."""
    g = Graph(input)
    for op in ops:
        g.add(op)
    return g
