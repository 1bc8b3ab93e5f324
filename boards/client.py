"""The bench-protocol client for boards: harness.protocol.Client, plus one rule
for noisy links.

The firmware keeps one encoded reply for duplicate requests (link.c), and the
``BAD_FRAME`` error it sends for a damaged request goes through the same
cache.  So when a good reply is damaged on its way to the host *and* some
damaged bytes reach the firmware before the host's resend, the resend (same
seq) is answered from the cache with ``BAD_FRAME`` again, forever.  On a pipe
that never happens; on a UART with line noise it does within seconds.

Rule here: a damaged reply is asked for again with the same seq (the
firmware answers from its cache, the kernel does not run twice); a
``BAD_FRAME`` answer to a request that the firmware may already have executed
is followed by the same request under a fresh seq, for requests that are safe
to execute again (HELLO, RUN_KERNEL, RUN_MODEL, MODEL_COMMIT, RESET, BYE).
Every value handed on still comes from a frame whose CRC checked and whose
seq matches the request.
"""

from __future__ import annotations

import time

from harness.errors import CrashError, ProtocolError, TimeoutMeasureError
from harness.protocol import (ERR_BAD_FRAME, REP_ERROR, REP_OFFSET, REQ_MODEL_DATA, Client, decode_frame,
                              encode_frame)

REPEATABLE_EXCEPT = {REQ_MODEL_DATA}   # MODEL_DATA appends at an offset: never executed twice


class LinkLost(CrashError):
    """The byte stream itself went away (a cut cable, a closed socket)."""


class BoardClient(Client):
    """``max_timeouts``: how many replies may be missing in one request before it
    fails (bad frames come back fast and may be retried many times; a silent
    board is given up on sooner).  None = ``retries``."""

    max_timeouts: int | None = None

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
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
                    raise LinkLost("the device closed the link", self.transport.describe_failure()) from None
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
                    raise TimeoutMeasureError(f"no reply within {timeout:.0f} s after {attempts} attempts",
                                              self.transport.describe_failure())
                raise ProtocolError(f"no intact reply after {attempts} attempts", self.transport.describe_failure())
            self.stats.retries += 1
            if got == "bad_frame" and ftype not in REPEATABLE_EXCEPT:
                seq = self._next_seq()     # the reply cache may hold BAD_FRAME now: ask afresh
                frame = encode_frame(ftype, seq, payload)
            self._buf.clear()
            self._send(frame)

    def _send(self, frame: bytes) -> None:
        try:
            self.transport.write(frame)
        except (BrokenPipeError, EOFError, OSError) as e:
            raise LinkLost(f"cannot write to the device ({e})", self.transport.describe_failure()) from None
