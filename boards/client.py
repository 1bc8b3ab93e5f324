"""The bench-protocol client for boards: harness.protocol.Client with its
retry rules (a damaged, missing or BAD_FRAME-answered reply is asked for again
under the same seq; the firmware answers executed seqs from its reply cache,
which BAD_FRAME answers never enter), a bound on silent replies per request
(``max_timeouts``), and ``LinkLost`` when the byte stream itself goes away,
which the board target answers with reset, reconnect and reload.  Every value
handed on comes from a frame whose CRC checked and whose seq matches the
request.
"""

from __future__ import annotations

from harness.errors import CrashError
from harness.protocol import Client


class LinkLost(CrashError):
    """The byte stream itself went away (a cut cable, a closed socket)."""


class BoardClient(Client):
    """``max_timeouts``: how many replies may be missing in one request before it
    fails (bad frames come back fast and may be retried many times; a silent
    board is given up on sooner).  None = ``retries``.  The retry rules
    themselves live in harness.protocol.Client (they hold on every link)."""

    lost_error = LinkLost
