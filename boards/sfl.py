"""Host side of the LiteX BIOS serial boot (SFL), over any BoardLink.

Protocol facts (litex/soc/software/bios/sfl.h and boot.c):
- the BIOS starts a serial boot (at power-on, or on the ``serialboot``
  command) by sending ``sL5DdSMmkekro\\n`` and waits 1/4 s of its clock for
  the host's ``z6IHG7cYDID6o\\n``;
- then it reads frames ``len:u8 | crc16:u16be | cmd:u8 | payload[len]``
  where crc16 is CRC-16/XMODEM (poly 0x1021, init 0) over ``cmd | payload``;
  ``LOAD`` (0x01) payload = address u32be + bytes, ``JUMP`` (0x02) payload =
  address u32be, ``ABORT`` (0x00);
- it answers every frame with one byte: ``K`` success, ``C`` CRC error,
  ``U`` unknown command, ``E`` timeout (a frame that stopped arriving for
  1/4 s is dropped with ``E``); 256 consecutive errors abort the boot.

Pacing: one frame (at most 259 bytes) is in flight at a time, and the next
goes only after its ``K``, so the board's receive buffer (2 KiB on the
emulator) never holds more than one frame.  A frame that fails is resent
(a LOAD is idempotent); after a failure the host first waits until the line
is quiet, and frames shrink (down to 32 data bytes) while errors go on, then grow
back.  A ``K`` forged by line noise could hide a lost frame, so the firmware
reports the CRC-32 of the image it runs (HELLO) and the caller compares it.
"""

from __future__ import annotations

import binascii
import logging
import struct
import time
from dataclasses import dataclass

from harness.errors import CrashError, TimeoutMeasureError

log = logging.getLogger(__name__)

MAGIC_REQ = b"sL5DdSMmkekro\n"
MAGIC_ACK = b"z6IHG7cYDID6o\n"
CMD_ABORT, CMD_LOAD, CMD_JUMP = 0x00, 0x01, 0x02
ACK_OK, ACK_CRC, ACK_UNKNOWN, ACK_TIMEOUT = b"K", b"C", b"U", b"E"
PROMPT = b"litex"   # the BIOS colours it: "\x1b[92;1mlitex\x1b[0m> "
MAX_PAYLOAD = 255
ENTER_TIMEOUT = 20.0 # seconds to get the BIOS into serialboot before giving up (the caller resets the board)
MIN_CHUNK = 32       # frames shrink to this many data bytes while a noisy link keeps damaging them


def crc16(data: bytes) -> int:
    return binascii.crc_hqx(data, 0)


def frame(cmd: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("SFL payload longer than 255 bytes")
    body = bytes([cmd]) + payload
    return bytes([len(payload)]) + struct.pack(">H", crc16(body)) + body


@dataclass
class BootStats:
    frames: int = 0
    resent: int = 0
    bytes: int = 0
    reconnects: int = 0
    restarts: int = 0
    seconds: float = 0.0


class _Lost(Exception):
    """Many frames in a row got no K: the BIOS left (or never entered) serialboot."""


LOST_AFTER = 24
QUIET_AFTER_ACK = 0.005   # seconds of silence that make a K an ack


def enter_serialboot(link, deadline: float, ack_window: float = 1.0) -> None:
    """Bring the BIOS into serialboot and answer its magic request.

    Output from before the host connected is lost, and on a noisy line a prompt
    may never be recognised, so the host types ``serialboot`` itself (after a
    newline that ends whatever half-line the console holds) every 2 s until the
    magic request comes.  A damaged answer makes the BIOS print ``Timeout``
    1/4 s (of its clock) later; ``ack_window`` must cover that in wall time."""
    tail = b""
    last_kick = time.monotonic() - 1.5      # first kick 0.5 s after connecting, unless the BIOS speaks first
    deadline = min(deadline, time.monotonic() + ENTER_TIMEOUT)
    while True:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutMeasureError("the LiteX BIOS did not start a serial boot",
                                      f"last output: {tail[-120:]!r}")
        chunk = link.read(4096, 0.05)
        if chunk:
            tail = (tail + chunk)[-512:]
            if last_kick and tail and not tail.strip(b"ECU"):
                # only SFL error codes answer our typing: the BIOS is already in serialboot,
                # reading our text as broken frames (its K to the magic went unnoticed)
                return
            if MAGIC_REQ in tail:
                link.write(MAGIC_ACK)
                seen = b""
                end = time.monotonic() + ack_window
                while time.monotonic() < end:
                    seen += link.read(256, 0.05)
                    if b"Timeout" in seen or b"medium" in seen or PROMPT in seen:
                        break
                else:
                    return
                tail = b""
                last_kick = 0.0
                continue
            if tail.endswith(b"> ") and PROMPT in tail[-24:] and now - last_kick > 0.3:
                link.write(b"serialboot\n")
                tail = b""
                last_kick = now
                continue
        if now - last_kick > 2.0:
            link.write(b"\nserialboot\n")
            tail = b""
            last_kick = now


def _wait_quiet(link, quiet: float, limit: float = 3.0) -> None:
    link.drain(quiet=quiet, limit=limit)


def send_frame(link, f: bytes, stats: BootStats, deadline: float, ack_timeout: float = 2.0) -> bool:
    """Send one frame until the BIOS acknowledges it; False if it needed a resend.

    After ``C`` (CRC error) or ``E`` (frame timed out) that attempt certainly
    failed and the BIOS waits for a new frame, so the frame goes again at once.
    After no answer or a garbled one, the attempt may have been loaded and its
    ``K`` lost or late; once the frame is finally acknowledged, the host waits
    for a quiet line before the next frame, so that a late ``K`` of this frame
    cannot be taken for the next frame's."""
    clean = True
    uncertain = False
    failures = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutMeasureError("serial boot did not finish in time",
                                      f"{stats.frames} frames sent, {stats.resent} resent")
        link.drain(quiet=0.0, limit=0.1)     # a stale ack must not answer this frame
        link.write(f)
        stats.bytes += len(f)
        ack = link.read(1, ack_timeout)
        log.debug("sfl: %d-byte frame -> %r", len(f), ack)
        if ack == ACK_OK:
            # the BIOS sends its one byte and falls silent; a console echoing our frame (the magic
            # ack was lost) keeps talking, and an echoed data byte can be a 'K': not an ack
            if not link.read(64, QUIET_AFTER_ACK):
                stats.frames += 1
                if uncertain:
                    _wait_quiet(link, 0.5)
                return clean
            ack = b"?"
        clean = False
        stats.resent += 1
        failures += 1
        if failures >= LOST_AFTER:
            raise _Lost()
        if ack in (ACK_CRC, ACK_TIMEOUT):
            _wait_quiet(link, 0.02)
        else:
            uncertain = True
            _wait_quiet(link, 0.5)


def _reconnect(link, stats: BootStats, deadline: float, err: Exception) -> None:
    stats.reconnects += 1
    if stats.reconnects > 50 or time.monotonic() > deadline:
        raise CrashError(f"serial boot lost the link too often ({err})")
    link.reconnect(timeout=max(1.0, min(10.0, deadline - time.monotonic())))


def serialboot(link, image: bytes, base: int, timeout: float, chunk: int = 112) -> BootStats:
    """Load `image` at `base` through the BIOS and jump to it.

    A link that is cut during the upload is re-opened and the upload goes on
    from the frame that was in flight: the BIOS waits for the next frame as
    long as it takes (only a frame that stops half-way times out)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    stats = BootStats()
    while True:
        try:
            enter_serialboot(link, deadline)
            break
        except EOFError as e:
            _reconnect(link, stats, deadline, e)
    size = max(MIN_CHUNK, min(chunk, MAX_PAYLOAD - 4))
    good = 0
    off = 0
    while off < len(image):
        part = image[off:off + size]
        try:
            ok = send_frame(link, frame(CMD_LOAD, struct.pack(">I", base + off) + part), stats, deadline)
        except _Lost:
            # no K for many frames: the BIOS is not (or no longer) in serialboot; start it again
            stats.restarts += 1
            while True:
                try:
                    _wait_quiet(link, 0.3)
                    enter_serialboot(link, deadline)
                    break
                except EOFError as e:
                    _reconnect(link, stats, deadline, e)
            continue
        except EOFError as e:
            _reconnect(link, stats, deadline, e)
            size, good = max(MIN_CHUNK, size // 2), 0
            continue
        off += len(part)
        if ok:
            good += 1
            if good >= 4 and size < chunk:
                size, good = min(chunk, size * 2), 0
        else:
            size, good = max(MIN_CHUNK, size // 2), 0
    while True:
        try:
            send_frame(link, frame(CMD_JUMP, struct.pack(">I", base)), stats, deadline)
            break
        except _Lost:
            return stats    # the K of the JUMP was lost and the firmware answers instead: HELLO tells
        except EOFError as e:
            # the JUMP may have gone through before the cut: HELLO (image CRC) tells, the caller checks it
            _reconnect(link, stats, deadline, e)
            return stats
    # the BIOS prints "Executing booted program ... Liftoff!" and jumps: let that text pass
    seen = b""
    end = time.monotonic() + 3.0
    try:
        while time.monotonic() < end and b"Liftoff" not in seen:
            seen += link.read(4096, 0.1)
        _wait_quiet(link, 0.1, limit=1.0)
    except EOFError as e:
        _reconnect(link, stats, deadline, e)
    stats.seconds = time.monotonic() - t0
    log.info("serialboot: %d bytes in %d frames (%d resent) in %.1f s", len(image), stats.frames,
             stats.resent, stats.seconds)
    return stats


def abort(link) -> None:
    try:
        link.write(frame(CMD_ABORT, b""))
    except (EOFError, CrashError):
        pass
