"""Host side of the BitFusion testbench link.

The wire format is the bench protocol's (harness/protocol.py): COBS-encoded,
0x00-delimited frames of ``type | seq | payload | CRC-32``, with the same
retry-on-damage rules.  Frames here carry whole tensors (megabytes), so the
COBS codec works block-wise on ``bytes.split`` instead of byte by byte; its
output is identical to ``harness.protocol.cobs_encode``.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass

from harness.errors import CrashError, MeasureError, ProtocolError, TimeoutMeasureError
from harness.protocol import ERR_BAD_FRAME, REP_ERROR, REP_OFFSET, Client

REQ_INFO, REQ_WRITE, REQ_RUN, REQ_READ = 0x20, 0x21, 0x22, 0x23


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    for piece in bytes(data).split(b"\x00"):
        n = len(piece)
        i = 0
        while n - i >= 254:
            out.append(0xFF)
            out += piece[i:i + 254]
            i += 254
        out.append(n - i + 1)
        out += piece[i:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    mv = memoryview(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            raise ValueError("malformed COBS block")
        out += mv[i + 1:i + code]
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(ftype: int, seq: int, payload: bytes) -> bytes:
    body = struct.pack("<BH", ftype, seq & 0xFFFF) + payload
    body += struct.pack("<I", zlib.crc32(body))
    return cobs_encode(body) + b"\x00"


def decode_frame(raw: bytes) -> tuple[int, int, bytes]:
    body = cobs_decode(raw)
    if len(body) < 7:
        raise ValueError("frame too short")
    (crc,) = struct.unpack_from("<I", body, len(body) - 4)
    if zlib.crc32(memoryview(body)[:-4]) != crc:
        raise ValueError("CRC mismatch")
    ftype, seq = struct.unpack_from("<BH", body)
    return ftype, seq, body[3:-4]


@dataclass
class RunResult:
    cycles: list[int]
    crcs: list[int]
    perf: dict
    out: bytes


class BFClient(Client):
    """``harness.protocol.Client`` (HELLO/BYE, retries, LinkStats) + the accelerator requests."""

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        seq = self._next_seq()
        frame = encode_frame(ftype, seq, payload)
        timeout = self.timeout if timeout is None else timeout
        attempts = 0
        self._send(frame)
        while True:
            deadline = time.monotonic() + timeout
            got = None
            while got is None:
                try:
                    raw = self._read_frame(deadline)
                except EOFError:
                    raise CrashError("the testbench closed the link", self.transport.describe_failure()) from None
                if raw is None:
                    break
                try:
                    rtype, rseq, body = decode_frame(raw)
                except ValueError:
                    self.stats.bad_frames += 1
                    got = "retry"
                    break
                if rtype == REP_ERROR and body[:1] == bytes([ERR_BAD_FRAME]):
                    self.stats.bad_frames += 1
                    got = "retry"
                    break
                if rseq != seq:
                    continue
                got = (rtype, body)
            if isinstance(got, tuple):
                rtype, body = got
                if rtype == REP_ERROR:
                    self._raise_device_error(body)
                if rtype != (ftype | REP_OFFSET):
                    raise ProtocolError(f"reply type 0x{rtype:02x} to request 0x{ftype:02x}")
                return body
            if got is None:
                self.stats.timeouts += 1
            attempts += 1
            if attempts > self.retries:
                if got is None:
                    raise TimeoutMeasureError(f"no reply within {timeout:.0f} s after {attempts} attempts",
                                              self.transport.describe_failure())
                raise ProtocolError(f"no intact reply after {attempts} attempts", self.transport.describe_failure())
            self.stats.retries += 1
            self._buf.clear()
            self._send(frame)

    def _read_frame(self, deadline: float) -> bytes | None:
        # like Client._read_frame, but without re-scanning a growing buffer from the start
        scan = 0
        while True:
            idx = self._buf.find(0, scan)
            if idx >= 0:
                raw = bytes(self._buf[:idx])
                del self._buf[:idx + 1]
                if raw:
                    return raw
                scan = 0
                continue
            scan = len(self._buf)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            chunk = self.transport.read(1 << 20, left)
            if chunk:
                self._buf += chunk
                self.last_rx += chunk[-256:]
                del self.last_rx[:-256]

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
