"""What the bench firmware must answer, predicted on the host side.

A test oracle for the fuzzer, written from the protocol's rules rather than
from bench.c: the shape rules come from the host validator (harness.spec, the
one shared with the firmware), the arena accounting and the model loader's
state machine are restated here so that a disagreement with the firmware --
an impossible shape answered OK, a fitting one refused, an image accepted that
should not be -- is a finding.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from dataclasses import dataclass, field

from harness import protocol as P
from harness.errors import UserError
from harness.spec import BITS, KernelSpec

OK = 0
ARENA_GAP = 16          # bench.c: bytes between two tensors of the arena
HEADER_BYTES = 32       # sizeof(mico_model_header)
#: the model-image ABI the firmware accepts, from its one definition (kernels/firmware/model_api.h)
MODEL_ABI = int(re.search(r"#define MICO_MODEL_ABI (\d+)",
                          (Path(__file__).resolve().parents[2] / "kernels" / "firmware" / "model_api.h").read_text()).group(1))
ENTRY_ALIGN = 16        # MICO_MODEL_ENTRY_ALIGN
OPS = {0: ("matmul", 3), 1: ("conv2d", 9)}


def words(L: int, b: int) -> int:
    per = 32 // b
    return (L + per - 1) // per


def arena_fits(sizes: list[int], arena: int) -> bool:
    """bench.c's take(): 8-byte aligned, ARENA_GAP bytes before each tensor."""
    used = 0
    for n in sizes:
        at = (used + ARENA_GAP + 7) & ~7
        if at + n > arena:
            return False
        used = at + n
    return True


@dataclass(frozen=True)
class KernelRequest:
    """A decoded RUN_KERNEL payload (fields as the firmware reads them)."""

    payload: bytes

    @property
    def fields(self) -> tuple[int, ...] | None:
        if len(self.payload) < 13:
            return None
        return struct.unpack_from("<BBBBIHHB", self.payload)

    @property
    def dims(self) -> tuple[int, ...]:
        nd = self.payload[12]
        return struct.unpack_from(f"<{nd}I", self.payload, 13)


def kernel_tensor_bytes(spec: KernelSpec, warmup: int, repeats: int) -> list[int]:
    """Bytes of A, W, Y, kernel scratch and timings, in the order bench.c takes them."""
    d = spec.dims
    if spec.op == "matmul":
        a, w = 4 * d["N"] * words(d["K"], spec.qa), 4 * d["M"] * words(d["K"], spec.qw)
        scratch = (d["K"] + 31) & ~31
    else:
        L = spec.reduction
        a, w = 4 * d["N"] * d["C"] * words(d["H"] * d["W"], spec.qa), 4 * d["K"] * words(L, spec.qw)
        scratch = ((L + 31) & ~31) + 4 * max(words(L, 2), 2 * words(L, 1))
    return [a, w, 4 * spec.outputs, scratch, 8 * (warmup + repeats)]


def kernel_verdict(payload: bytes, hello: P.Hello) -> tuple[int, KernelSpec | None]:
    """(expected error code or OK, the spec when it is a valid kernel)."""
    req = KernelRequest(payload)
    if req.fields is None:
        return P.ERR_BAD_REQUEST, None
    op, qa, qw, _flags, _seed, warmup, repeats, nd = req.fields
    if len(payload) < 13 + 4 * nd:
        return P.ERR_BAD_REQUEST, None
    if qa not in BITS or qw not in BITS:
        return P.ERR_UNSUPPORTED, None
    if repeats == 0 or 8 * repeats + 32 > hello.max_payload:
        return P.ERR_BAD_REQUEST, None
    if op not in OPS:
        return P.ERR_UNSUPPORTED, None
    name, want = OPS[op]
    if nd != want:
        return P.ERR_BAD_REQUEST, None
    try:
        spec = KernelSpec(name, req.dims, qa, qw)
    except UserError:
        return P.ERR_BAD_REQUEST, None
    if not arena_fits(kernel_tensor_bytes(spec, warmup, repeats), hello.ram_bytes):
        return P.ERR_DOES_NOT_FIT, spec
    return OK, spec


@dataclass
class ModelMirror:
    """The model loader's state (MODEL_DATA / MODEL_COMMIT / RUN_MODEL / RESET)."""

    hello: P.Hello
    image: bytearray = field(default_factory=bytearray)
    length: int = 0
    total: int = 0
    ready: bool = False
    header: dict | None = None

    def reset(self) -> None:
        self.length, self.total, self.ready = 0, 0, False

    def data(self, payload: bytes) -> int:
        if len(payload) < 8:
            return P.ERR_BAD_REQUEST
        off, total = struct.unpack_from("<II", payload)
        chunk = payload[8:]
        if total > self.hello.code_bytes:
            return P.ERR_DOES_NOT_FIT
        if off == 0:
            self.length, self.total, self.ready = 0, total, False
        if total != self.total or off != self.length or off + len(chunk) > total:
            return P.ERR_BAD_REQUEST
        if len(self.image) < off + len(chunk):
            self.image.extend(bytes(off + len(chunk) - len(self.image)))
        self.image[off:off + len(chunk)] = chunk
        self.length += len(chunk)
        return OK

    def commit(self, payload: bytes) -> int:
        if len(payload) < 4:
            return P.ERR_BAD_REQUEST
        self.ready = False
        if self.length != self.total or self.length < HEADER_BYTES:
            return P.ERR_MODEL_INVALID
        img = bytes(self.image[:self.length])
        if zlib.crc32(img) != struct.unpack_from("<I", payload)[0]:
            return P.ERR_MODEL_INVALID
        magic, abi, entry, size, inc, outc, nl, scratch = struct.unpack_from("<8I", img)
        if magic != 0x4D43494D or abi != MODEL_ABI or size != len(img):
            return P.ERR_MODEL_INVALID
        if entry < HEADER_BYTES or entry % ENTRY_ALIGN or entry > len(img) - 4:
            return P.ERR_MODEL_INVALID
        if inc > self.hello.max_payload:
            return P.ERR_DOES_NOT_FIT
        if nl > 0xFFFF or 4 * outc + 8 * nl + 32 > self.hello.max_payload:
            return P.ERR_DOES_NOT_FIT
        if not arena_fits([4 * outc, 8 * (nl + 1), inc, scratch], self.hello.ram_bytes):
            return P.ERR_DOES_NOT_FIT
        self.ready = True
        self.header = dict(zip(("magic", "abi", "entry_offset", "image_size", "in_count", "out_count",
                                "n_layers", "scratch_bytes"), (magic, abi, entry, size, inc, outc, nl, scratch)))
        return OK

    def run(self, inputs: bytes) -> int:
        if not self.ready:
            return P.ERR_NO_MODEL
        if len(inputs) != self.header["in_count"]:
            return P.ERR_BAD_REQUEST
        return OK
