"""Host side of the BitFusion testbench link.

The wire format, framing and retry rules are the bench protocol's
(harness/protocol.py): COBS-encoded, 0x00-delimited frames of
``type | seq | payload | CRC-32``.  Frames here carry whole tensors
(megabytes), so reads are asked for in 1 MiB chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from harness.errors import MeasureError
from harness.protocol import Client

REQ_INFO, REQ_WRITE, REQ_RUN, REQ_READ = 0x20, 0x21, 0x22, 0x23


@dataclass
class RunResult:
    cycles: list[int]
    crcs: list[int]
    perf: dict
    out: bytes


class BFClient(Client):
    """``harness.protocol.Client`` (HELLO/BYE, retries, LinkStats) + the accelerator requests."""

    read_chunk = 1 << 20

    # ---- accelerator requests ---------------------------------------------------------
    def info(self) -> dict:
        b = self.request(REQ_INFO)
        r, c, ib, wb, ob, dma, imem, dram = struct.unpack_from("<7IQ", b)
        return {"rows": r, "cols": c, "ibuf_bytes": ib, "wbuf_bytes": wb, "obuf_bytes": ob, "dram_bits": dma,
                "imem_depth": imem, "dram_bytes": dram}

    def write(self, word_addr: int, data: bytes, chunk: int = 64 << 20) -> None:
        if len(data) % 4:
            raise ValueError("DRAM writes are whole words")
        for off in range(0, len(data), chunk):
            self.request(REQ_WRITE, struct.pack("<I", word_addr + off // 4) + data[off:off + chunk])

    def read(self, word_addr: int, words: int) -> bytes:
        return self.request(REQ_READ, struct.pack("<II", word_addr, words))

    def run(self, program: list[int], out_addr: int, out_words: int, latency: int, repeats: int = 1,
            max_cycles: int = 1 << 40, timeout: float | None = None) -> RunResult:
        payload = struct.pack("<IQHIII", latency, max_cycles, repeats, out_addr, out_words, len(program))
        payload += struct.pack(f"<{len(program)}Q", *program)
        b = self.request(REQ_RUN, payload, timeout=timeout)
        (n,) = struct.unpack_from("<H", b)
        cyc, crcs = [], []
        off = 2
        for _ in range(n):
            c, k = struct.unpack_from("<QI", b, off)
            cyc.append(c)
            crcs.append(k)
            off += 12
        comp, load, store, beats = struct.unpack_from("<4Q", b, off)
        off += 32
        out = b[off:]
        if len(out) != 4 * out_words:
            raise MeasureError(f"testbench returned {len(out)} output bytes, expected {4 * out_words}")
        return RunResult(cyc, crcs, {"compute": comp, "load": load, "store": store, "beats": beats}, out)
