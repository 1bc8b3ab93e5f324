"""A raw frame link to a firmware process: exact bytes in, decoded frames out.

The fuzzer and the hostile-input tests need what `harness.protocol.Client`
deliberately hides: no retries, no seq bookkeeping, frames that are not
requests, and garbage between them.  Synchronisation is by protocol, never by
sleeping: after garbage, `sync()` sends a HELLO under a fresh seq and reads
until that reply arrives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness import protocol
from harness.transports import ProcessTransport


@dataclass
class Reply:
    ftype: int
    seq: int
    body: bytes

    @property
    def is_error(self) -> bool:
        return self.ftype == protocol.REP_ERROR

    @property
    def error_code(self) -> int | None:
        return self.body[0] if self.is_error and self.body else None

    @property
    def message(self) -> str:
        if not self.is_error or len(self.body) < 2:
            return ""
        return self.body[2:2 + self.body[1]].decode(errors="replace")


class Hang(AssertionError):
    """The firmware did not answer within the deadline."""


@dataclass
class RawLink:
    transport: ProcessTransport
    timeout: float = 20.0
    frames_sent: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _seq: int = 0

    @classmethod
    def spawn(cls, argv: list[str], env: dict | None = None, timeout: float = 20.0) -> "RawLink":
        return cls(ProcessTransport(argv, env=env), timeout=timeout)

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) % 0xFFFF
        return self._seq

    def write(self, data: bytes, frames: int = 1) -> None:
        self.transport.write(data)
        self.frames_sent += frames

    def send(self, ftype: int, payload: bytes = b"", seq: int | None = None) -> int:
        seq = self.next_seq() if seq is None else seq
        self.write(protocol.encode_frame(ftype, seq, payload))
        return seq

    def read_frame(self, timeout: float | None = None) -> Reply | None:
        """The next frame (decoded); None if it was damaged.  Raises Hang at the deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            idx = self._buf.find(0)
            if idx >= 0:
                raw = bytes(self._buf[:idx])
                del self._buf[:idx + 1]
                if not raw:
                    continue
                try:
                    return Reply(*protocol.decode_frame(raw))
                except ValueError:
                    return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise Hang(f"no reply within {self.timeout:.0f} s; {self.transport.describe_failure()}")
            self._buf += self.transport.read(1 << 16, left)

    def reply_to(self, seq: int, ftype: int | None = None) -> Reply:
        """Read until the reply carrying `seq` (BAD_FRAME answers to garbage are skipped)."""
        while True:
            r = self.read_frame()
            if r is None or r.seq != seq:
                continue
            if ftype is not None and r.ftype not in (ftype | protocol.REP_OFFSET, protocol.REP_ERROR):
                continue
            return r

    def request(self, ftype: int, payload: bytes = b"", seq: int | None = None) -> Reply:
        seq = self.send(ftype, payload, seq)
        return self.reply_to(seq, ftype)

    def sync(self) -> Reply:
        """Flush whatever garbage left behind: a HELLO under a fresh seq, read until its reply."""
        self.write(b"\x00", frames=0)
        return self.request(protocol.REQ_HELLO)

    def alive(self) -> bool:
        return self.transport.proc.poll() is None

    def stderr(self) -> str:
        return self.transport.stderr_tail(1 << 16)

    def close(self) -> None:
        if self.alive():
            try:
                self.send(protocol.REQ_BYE)
            except (OSError, EOFError):
                pass
        self.transport.close()
