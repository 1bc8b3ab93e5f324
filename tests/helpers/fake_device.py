"""A scripted device on the far end of real pipes: it answers each request
frame with the next crafted reply (valid COBS and CRC, contents as given).

Run as a process (`argv()` builds the command line), so the client under test
talks to it through the same `ProcessTransport` as to the firmware.  Each reply
is (type, payload hex); type None means "the request's type | 0x80".  When the
script runs out, the device closes the link.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def argv(replies: list[tuple[int | None, bytes]]) -> list[str]:
    script = json.dumps([[t, body.hex()] for t, body in replies])
    return [sys.executable, str(Path(__file__).resolve()), script]


def _frames(fd: int):
    buf = bytearray()
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf += chunk
        while (idx := buf.find(0)) >= 0:
            raw = bytes(buf[:idx])
            del buf[:idx + 1]
            if raw:
                yield raw


def main() -> None:
    from harness.protocol import REP_OFFSET, decode_frame, encode_frame

    script = [(t, bytes.fromhex(h)) for t, h in json.loads(sys.argv[1])]
    for raw in _frames(0):
        if not script:
            return
        ftype, seq, _ = decode_frame(raw)
        rtype, body = script.pop(0)
        os.write(1, encode_frame(ftype | REP_OFFSET if rtype is None else rtype, seq, body))


if __name__ == "__main__":
    main()
