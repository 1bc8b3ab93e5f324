"""The layer IR (DESIGN.md s5): one typed representation every walker shares.

It lives below mpq/ (in kernels/, which owns the numeric format and the
kernels the ops run on) so that rtl_sims/ and harness/ can use it without
importing mpq/.  See docs/ir.md.
"""

from .emit import EmitContext, c_ident
from .graph import INPUT, Graph, Node, chain
from .ops import MAC_OPS, Conv2d, Flatten, Linear, Op, Pool, Scratch
from .types import IRError, Requant, TensorType

__all__ = ["EmitContext", "c_ident", "INPUT", "Graph", "Node", "chain", "MAC_OPS", "Conv2d", "Flatten", "Linear",
           "Op", "Pool", "Scratch", "IRError", "Requant", "TensorType"]
