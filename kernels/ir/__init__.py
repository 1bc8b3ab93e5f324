"""The layer IR (DESIGN.md s5): one typed representation every walker shares.

It lives below mpq/ (in kernels/, which owns the numeric format and the
kernels the ops run on) so that rtl_sims/ and harness/ can use it without
importing mpq/.  See docs/ir.md.
"""

import hashlib
from functools import lru_cache
from pathlib import Path

from .attention import AttnMatMul, Softmax, TokenLinear, Transpose
from .eltwise import Add, Rescale, add_multipliers
from .emit import EmitContext, c_ident
from .graph import INPUT, Graph, Node, chain
from .norm import GELU, LayerNorm
from .layout import ChannelShuffle, Concat, Reshape, Unfold1d
from .ops import MAC_OPS, AdaptiveAvgPool, Conv2d, Flatten, Linear, Op, Pool, Scratch
from .types import UNSIGNED_BITS, IRError, Requant, TensorType, quantize_multiplier  # noqa: F401

__all__ = ["Add", "Rescale", "add_multipliers", "EmitContext", "c_ident", "INPUT", "Graph", "Node", "chain",
           "ChannelShuffle", "Concat", "Reshape", "Unfold1d", "MAC_OPS", "AdaptiveAvgPool", "Conv2d", "Flatten",
           "Linear", "Op", "Pool", "Scratch", "IRError", "Requant", "TensorType", "quantize_multiplier",
           "generator_digest", "AttnMatMul", "Softmax", "TokenLinear", "Transpose", "GELU",
           "LayerNorm"]


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """Hash of the IR, the code generator and its templates: part of the fingerprint of
    every target that runs generated models, so layer-mode measurements (one-layer
    images) are re-taken when the code a model runs changes."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted([*here.glob("*.py"), *(here / "templates").glob("*")]):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
