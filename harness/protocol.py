"""Host side of the bench protocol (kernels/firmware/proto.h is the device side).

Frames are COBS-encoded and 0x00-delimited; each carries type, seq, payload and
a CRC-32.  A reply whose CRC fails, that never comes, or that reports
BAD_FRAME makes the client resend the *same* request with the *same* seq; the
firmware answers a duplicate from its reply cache instead of running twice.
Every value handed to the caller came from a frame whose CRC checked.
"""

from __future__ import annotations

import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Protocol

from kernels.numeric import BITS

from .errors import (CrashError, DoesNotFitError, MeasureError, ProtocolError, TimeoutMeasureError,
                     UnsupportedError)

REQ_HELLO, REQ_RUN_KERNEL, REQ_MODEL_DATA, REQ_MODEL_COMMIT, REQ_RUN_MODEL, REQ_RESET, REQ_BYE = range(1, 8)
REP_OFFSET = 0x80
REP_ERROR = 0xFF
ERR_BAD_FRAME, ERR_BAD_REQUEST, ERR_UNSUPPORTED, ERR_DOES_NOT_FIT, ERR_NO_MODEL, ERR_MODEL_INVALID = range(1, 7)
OP_CODES = {"matmul": 0, "conv2d": 1}


def cobs_encode(data: bytes) -> bytes:
    """COBS, block-wise over the zero-free runs (frames may carry whole tensors)."""
    out = bytearray()
    for piece in bytes(data).split(b"\x00"):
        n, i = len(piece), 0
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


def run_kernel_payload(op: int, qa: int, qw: int, seed: int, warmup: int, repeats: int,
                       dims: tuple[int, ...] | list[int], flags: int = 0) -> bytes:
    """RUN_KERNEL's payload (kernels/firmware/proto.h).  Every field must fit
    its wire width: a ValueError, never a silently wrapped size."""
    fields = {"op": (op, 0xFF), "qa": (qa, 0xFF), "qw": (qw, 0xFF), "flags": (flags, 0xFF),
              "warmup": (warmup, 0xFFFF), "repeats": (repeats, 0xFFFF), "dims count": (len(dims), 0xFF)}
    fields.update({f"dim {i}": (d, 0xFFFFFFFF) for i, d in enumerate(dims)})
    for name, (v, top) in fields.items():
        if not 0 <= int(v) <= top:
            raise ValueError(f"RUN_KERNEL {name} {v} does not fit its {top.bit_length()}-bit field.")
    return (struct.pack("<BBBBIHHB", op, qa, qw, flags, seed & 0xFFFFFFFF, warmup, repeats, len(dims))
            + struct.pack(f"<{len(dims)}I", *dims))


def encode_frame(ftype: int, seq: int, payload: bytes) -> bytes:
    body = struct.pack("<BH", ftype, seq & 0xFFFF) + payload
    body += struct.pack("<I", zlib.crc32(body))
    return cobs_encode(body) + b"\x00"


def decode_frame(raw: bytes) -> tuple[int, int, bytes]:
    """raw = one frame without its delimiter; raises ValueError on any damage."""
    body = cobs_decode(raw)
    if len(body) < 7:
        raise ValueError("frame too short")
    (crc,) = struct.unpack_from("<I", body, len(body) - 4)
    if zlib.crc32(memoryview(body)[:-4]) != crc:
        raise ValueError("CRC mismatch")
    ftype, seq = struct.unpack_from("<BH", body)
    return ftype, seq, body[3:-4]


class ReplyReader:
    """Reads one reply payload field by field.  A reply whose CRC checked but
    whose contents are short or claim more entries than it carries is a
    ProtocolError (a MeasureError a sweep records), never a struct.error."""

    def __init__(self, body: bytes, what: str):
        self.body, self.what, self.off = bytes(body), what, 0

    def _need(self, n: int, field_: str) -> None:
        if n < 0 or self.off + n > len(self.body):
            raise ProtocolError(f"malformed {self.what} reply: {len(self.body)} bytes end before its {field_} "
                                f"(needs {self.off + n}).")

    def take(self, fmt: str, field_: str = "fields") -> tuple:
        size = struct.calcsize(fmt)
        self._need(size, field_)
        vals = struct.unpack_from(fmt, self.body, self.off)
        self.off += size
        return vals

    def array(self, code: str, count: int, field_: str) -> list[int]:
        """`count` little-endian items of struct `code`, bounded by the payload before anything is unpacked."""
        self._need(count * struct.calcsize(code), f"{count} {field_}")
        return list(self.take(f"<{count}{code}", field_))

    def string(self, field_: str) -> str:
        (n,) = self.take("<B", field_)
        self._need(n, field_)
        text = self.body[self.off:self.off + n].decode(errors="replace")
        self.off += n
        return text


def parse_hello(body: bytes) -> "Hello":
    r = ReplyReader(body, "HELLO")
    fw, pv, ram, maxp, unit, hz, ops, pairs, kv, code = r.take("<HHIIBIHHII", "header")
    target_id, isa, build = (r.string(f) for f in ("target id", "ISA", "build string"))
    op_names = tuple(name for name, bit in (("matmul", 0), ("conv2d", 1)) if ops >> bit & 1)
    pair_list = tuple((BITS[i], BITS[j]) for i in range(4) for j in range(4) if pairs >> (i * 4 + j) & 1)
    return Hello(fw, pv, ram, maxp, "ns" if unit == 1 else "cycles", hz, op_names, pair_list, kv, code,
                 target_id, isa, build)


def parse_kernel_run(body: bytes, repeats: int | None = None) -> "KernelRun":
    """A RUN_KERNEL reply; `repeats`, when given, is how many timings the request asked for."""
    r = ReplyReader(body, "RUN_KERNEL")
    crc, outs, n = r.take("<IIH", "header")
    if repeats is not None and n != repeats:
        raise ProtocolError(f"malformed RUN_KERNEL reply: {n} timings for a request of {repeats} repeats.")
    return KernelRun(r.array("Q", n, "timings"), crc, outs)


def parse_model_run(body: bytes) -> "ModelRun":
    r = ReplyReader(body, "RUN_MODEL")
    (n,) = r.take("<I", "output count")
    outs = r.array("i", n, "outputs")
    (nl,) = r.take("<H", "layer count")
    total, *layers = r.array("Q", nl + 1, "timings")
    return ModelRun(outs, total, layers)


class Transport(Protocol):
    """A byte stream to a device: subprocess pipes, a serial port, a socket."""

    def write(self, data: bytes) -> None: ...

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to max_bytes; b'' on timeout; raises EOFError when the link is gone."""
        ...

    def close(self) -> None: ...

    def describe_failure(self) -> str:
        """Why the far end died (exit code, stderr tail, last bytes) for error records."""
        ...


@dataclass
class Hello:
    fw_version: int
    proto_version: int
    ram_bytes: int
    max_payload: int
    timer_unit: str
    timer_hz: int
    ops: tuple[str, ...]
    pairs: tuple[tuple[int, int], ...]
    kernels_version: int
    code_bytes: int
    target_id: str
    isa: str
    build: str

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["pairs"] = [list(p) for p in self.pairs]
        d["ops"] = list(self.ops)
        return d


@dataclass
class KernelRun:
    values: list[int]
    checksum: int
    out_count: int


@dataclass
class ModelRun:
    outputs: list[int]
    total: int
    layers: list[int]


@dataclass
class LinkStats:
    retries: int = 0
    bad_frames: int = 0
    timeouts: int = 0
    reconnects: int = 0


@dataclass
class Client:
    """Request/reply over a Transport with retries on damaged or missing frames."""

    lost_error = CrashError    # raised when the byte stream itself goes away

    transport: Transport
    timeout: float = 30.0          # seconds for one reply
    retries: int = 3
    max_timeouts: int | None = None   # missing replies tolerated in one request (None: retries)
    stats: LinkStats = field(default_factory=LinkStats)
    _seq: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    last_rx: bytearray = field(default_factory=bytearray)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % 0xFFFF   # 0xFFFF is reserved for device errors on bad frames
        return self._seq

    read_chunk: int = 1 << 16      # bytes asked of the transport per read

    def _read_frame(self, deadline: float) -> bytes | None:
        """The next delimited frame, or None at the deadline.  Scans only the
        bytes that arrived since the last look (frames can be megabytes)."""
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
            chunk = self.transport.read(self.read_chunk, left)
            if chunk:
                self._buf += chunk
                self.last_rx += chunk[-256:]
                del self.last_rx[:-256]

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """One request, one CRC-checked reply with the request's seq.

        A damaged or missing reply, or a BAD_FRAME answer (the firmware got
        damaged bytes), makes the client send the same frame again under the
        same seq: the firmware answers a seq it already executed from its reply
        cache (BAD_FRAME answers never enter that cache), so nothing runs twice.
        """
        seq = self._next_seq()
        frame = encode_frame(ftype, seq, payload)
        timeout = self.timeout if timeout is None else timeout
        attempts = 0
        silent = 0
        self._send(frame)
        while True:
            deadline = time.monotonic() + timeout
            got = None
            while got is None:
                try:
                    raw = self._read_frame(deadline)
                except EOFError:
                    raise self.lost_error("the device closed the link", self.transport.describe_failure()) from None
                if raw is None:
                    break
                try:
                    rtype, rseq, body = decode_frame(raw)
                except ValueError:
                    self.stats.bad_frames += 1
                    got = "damaged"
                    break
                if rtype == REP_ERROR and body[:1] == bytes([ERR_BAD_FRAME]):
                    self.stats.bad_frames += 1
                    got = "bad_frame"
                    break
                if rseq != seq:
                    continue    # a stale reply to an earlier request or attempt
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
                silent += 1
            attempts += 1
            if attempts > self.retries or (self.max_timeouts is not None and silent > self.max_timeouts):
                if got is None:
                    raise TimeoutMeasureError(
                        f"no reply within {timeout:.0f} s after {attempts} attempts",
                        self.transport.describe_failure())
                raise ProtocolError(f"no intact reply after {attempts} attempts", self.transport.describe_failure())
            self.stats.retries += 1
            self._buf.clear()
            self._send(frame)

    def _send(self, frame: bytes) -> None:
        try:
            self.transport.write(frame)
        except (BrokenPipeError, EOFError, OSError) as e:
            raise self.lost_error(f"cannot write to the device ({e})", self.transport.describe_failure()) from None

    @staticmethod
    def _raise_device_error(body: bytes) -> None:
        code = body[0] if body else 0
        n = body[1] if len(body) > 1 else 0
        msg = body[2:2 + n].decode(errors="replace")
        if code == ERR_UNSUPPORTED:
            raise UnsupportedError(f"device: {msg}")
        if code == ERR_DOES_NOT_FIT:
            raise DoesNotFitError(f"device: {msg}")
        raise MeasureError(f"device error {code}: {msg}")

    # ---- typed requests ------------------------------------------------------------
    def hello(self) -> Hello:
        return parse_hello(self.request(REQ_HELLO))

    def run_kernel(self, op: str, shape: tuple[int, ...], qa: int, qw: int, seed: int,
                   warmup: int, repeats: int, timeout: float | None = None) -> KernelRun:
        payload = run_kernel_payload(OP_CODES[op], qa, qw, seed, warmup, repeats, shape)
        return parse_kernel_run(self.request(REQ_RUN_KERNEL, payload, timeout=timeout), repeats)

    def load_model(self, blob: bytes, chunk: int = 4096) -> dict:
        total = len(blob)
        for off in range(0, total, chunk):
            part = blob[off:off + chunk]
            self.request(REQ_MODEL_DATA, struct.pack("<II", off, total) + part)
        b = self.request(REQ_MODEL_COMMIT, struct.pack("<I", zlib.crc32(blob)))
        inc, outc, nl, scratch = ReplyReader(b, "MODEL_COMMIT").take("<IIII")
        return {"in_count": inc, "out_count": outc, "n_layers": nl, "scratch_bytes": scratch}

    def run_model(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        return parse_model_run(self.request(REQ_RUN_MODEL, inputs, timeout=timeout))

    def reset(self) -> None:
        self.request(REQ_RESET)

    def bye(self) -> None:
        try:
            self.request(REQ_BYE, timeout=5)
        except MeasureError:
            pass


@dataclass(frozen=True)
class ModelInfo:
    """What the device reports after loading a model (MODEL_COMMIT's reply)."""

    in_count: int
    out_count: int
    n_layers: int
    scratch_bytes: int

    @classmethod
    def of(cls, v: "ModelInfo | dict") -> "ModelInfo":
        """From `Client.load_model`'s reply, whether it is already a ModelInfo or the older dict."""
        if isinstance(v, cls):
            return v
        return cls(int(v["in_count"]), int(v["out_count"]), int(v["n_layers"]), int(v["scratch_bytes"]))

    def __getitem__(self, key: str) -> int:
        """Transitional: callers that still index the older dict (``info["in_count"]``)."""
        if key not in ("in_count", "out_count", "n_layers", "scratch_bytes"):
            raise KeyError(key)
        return getattr(self, key)
