"""A hand-written model image small enough to load thousands of times in a
fuzz run: 16 int8 inputs, one 8x8-bit matmul against 4 constant weight rows
through the firmware's api table, 4 int32 outputs, one timed layer.  An input
starting with -128 makes the entry return an error (the firmware's
MODEL_INVALID path).  Compiled by the same code path as generated models
(codegen.compile_image), so the header is patched the same way."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np

IN_COUNT, OUT_COUNT, N_LAYERS, SCRATCH = 16, 4, 1, 128
WEIGHTS = np.array([[(3 * m + 5 * k) % 17 - 8 for k in range(IN_COUNT)] for m in range(OUT_COUNT)], dtype=np.int8)
HEADER = struct.Struct("<8I")
FIELDS = ("magic", "abi", "entry_offset", "image_size", "in_count", "out_count", "n_layers", "scratch_bytes")

SOURCE = """
#include <stdint.h>
#include "model_api.h"

int32_t mico_model_run(const mico_api *api, const int8_t *input, int32_t *output,
                       uint64_t *times, uint8_t *scratch) __attribute__((section(".text.mico_model_run")));

__attribute__((section(".mico_header"), used))
const mico_model_header mico_header = {
    MICO_MODEL_MAGIC, MICO_MODEL_ABI, 0u, 0u, %(in)du, %(out)du, %(layers)du, %(scratch)du
};
static const int8_t weights[%(out)d * %(in)d] = { %(w)s };

int32_t mico_model_run(const mico_api *api, const int8_t *input, int32_t *output,
                       uint64_t *times, uint8_t *scratch) {
    uint32_t *a = (uint32_t *)(void *)scratch, *w = a + 4;
    uint64_t t = api->timer();
    if (input[0] == -128)
        return 1;
    api->pack(input, %(in)du, 8, a);
    for (uint32_t m = 0; m < %(out)du; m++)
        api->pack(weights + m * %(in)du, %(in)du, 8, w + 4u * m);
    api->matmul(a, w, output, 1u, %(out)du, %(in)du, 8, 8, scratch + 96);
    times[0] = api->timer() - t;
    return 0;
}
"""


def source() -> str:
    return SOURCE % {"in": IN_COUNT, "out": OUT_COUNT, "layers": N_LAYERS, "scratch": SCRATCH,
                     "w": ", ".join(str(int(v)) for v in WEIGHTS.reshape(-1))}


def build(target) -> bytes:
    """The flat image for `target` (a Target with a model toolchain), from the build cache."""
    from kernels.ir import codegen

    return codegen.compile_image(SimpleNamespace(source=source()), target.model_toolchain())


def expected(inputs: bytes) -> list[int]:
    x = np.frombuffer(inputs, dtype=np.int8).astype(np.int64)
    return [int(v) for v in WEIGHTS.astype(np.int64) @ x]


def header(image: bytes) -> dict[str, int]:
    return dict(zip(FIELDS, HEADER.unpack_from(image, 0)))


def with_header(image: bytes, **fields: int) -> bytes:
    h = header(image) | fields
    out = bytearray(image)
    HEADER.pack_into(out, 0, *(h[f] & 0xFFFFFFFF for f in FIELDS))
    return bytes(out)
