"""What an op sees while it writes its C: names of its buffers and a constant-array writer.

The code generator (kernels/ir/codegen.py) lays the buffers out and hands each op an
:class:`EmitContext`; the op returns declarations (its constants) and the
statements of its step.  Available in every step: ``api`` (the firmware's
kernel table), ``packed`` (uint32 scratch), ``acc`` (int32 scratch),
``kscratch`` (the kernel's scratch), ``output`` (int32 logits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .types import TensorType

_CTYPES = {"uint32_t": (np.uint32, "u"), "int32_t": (np.int32, ""), "uint8_t": (np.uint8, "u"),
           "int8_t": (np.int8, "")}


def c_ident(name: str) -> str:
    """A C identifier from an op name (letters, digits, underscores; never starting with a digit)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "n_" + s


@dataclass
class EmitContext:
    sym: str                   # C identifier prefix of this node's constants
    ins: list[TensorType]
    out: TensorType
    src: list[str]             # C expressions of the input buffers (const int8_t *)
    dst: str                   # C expression of the output buffer (int8_t * or int32_t *output)

    @staticmethod
    def array(ctype: str, name: str, values) -> str:
        """``static const <ctype> name[n] = {...};`` with 8 values a line."""
        dt, suffix = _CTYPES[ctype]
        vals = np.asarray(values).astype(np.int64).reshape(-1)
        if ctype == "uint32_t":
            items = [f"0x{int(v) & 0xFFFFFFFF:08x}u" for v in vals]
        else:
            items = [f"{int(v)}{suffix}" for v in np.asarray(vals).astype(dt)]
        if ctype == "int32_t":
            # INT32_MIN has no literal of type int32_t in C
            items = ["(-2147483647 - 1)" if v == "-2147483648" else v for v in items]
        body = ",\n".join("    " + ", ".join(items[i:i + 8]) for i in range(0, len(items), 8))
        return f"static const {ctype} {name}[{max(len(items), 1)}] = {{\n{body or '    0'}\n}};"
