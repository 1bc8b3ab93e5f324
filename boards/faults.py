"""Fault injection on a real byte stream: a TCP proxy between host and board.

``FaultProxy`` listens on 127.0.0.1 and forwards each connection to the board
(the emulator's 127.0.0.1 port), damaging bytes in both directions with
seeded probabilities: drop, corrupt (XOR with a random non-zero byte),
duplicate, delay, and cutting the link (both sockets closed) every
``cut_every_s`` seconds of a connection's life.  Tests point a board target
at the proxy (``--param url=socket://127.0.0.1:<proxy>`` with
``sim_port=<emulator>``) and check that no damaged value reaches the store.
Only loopback addresses are accepted.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import asdict, dataclass, field

LOOPBACK = "127.0.0.1"


@dataclass
class FaultConfig:
    drop: float = 0.0            # probability per byte
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay_s: float = 0.0         # added to every forwarded chunk
    cut_every_s: float = 0.0     # a connection is cut after this long (0 = never)
    seed: int = 1
    directions: str = "both"     # both | to_board | to_host
    #: leave the BIOS serial boot alone: faults are off from the start and whenever the SFL
    #: magic passes (the BIOS's request or the host's answer), back on when the BIOS says
    #: "Liftoff" (the firmware runs).  LiteX's SFL acknowledges a
    #: frame with one unsequenced byte, so at ~1 % damage a corrupted 'C' read as 'K' skips a
    #: frame in about one boot of five of a 94 KB image (the image CRC in HELLO catches it and
    #: the board reboots, 280 s per try): no host can make that upload robust, a board on such
    #: a line boots from flash.  The firmware's own protocol is what the faults are for.
    spare_boot: bool = False

    def __str__(self) -> str:
        return (f"drop {self.drop:g}, corrupt {self.corrupt:g}, duplicate {self.duplicate:g}, "
                f"delay {self.delay_s * 1000:g} ms, cut every {self.cut_every_s:g} s")


@dataclass
class FaultStats:
    bytes_to_board: int = 0
    bytes_to_host: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    cuts: int = 0
    connections: int = 0
    armed_bytes: int = 0         # bytes that passed while faults were on (the damage rate's base)
    log: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("log")
        return d


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], config: FaultConfig | None = None,
                 listen: tuple[str, int] = (LOOPBACK, 0)):
        for host, _ in (upstream, listen):
            if host not in (LOOPBACK, "localhost"):
                raise ValueError("the fault proxy only works on 127.0.0.1")
        self.upstream = (LOOPBACK, upstream[1])
        self.config = config or FaultConfig()
        self.stats = FaultStats()
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind((LOOPBACK, listen[1]))
        self._srv.listen(4)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._armed = threading.Event()
        if not self.config.spare_boot:
            self._armed.set()
        self._tail_to_board = self._tail_to_host = b""
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)

    # ---- control ------------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def arm(self, on: bool = True) -> None:
        """Faults on (default) or off (bytes pass untouched)."""
        if on:
            self._armed.set()
        else:
            self._armed.clear()

    def cut(self) -> None:
        """Cut every open connection now."""
        with self._lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        if conns:
            self.stats.cuts += 1

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        try:
            self._srv.close()
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- data path ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        self._srv.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.cut()    # one connection at a time, like a serial cable
            with self._lock:
                self._conns.append((client, up))
            self.stats.connections += 1
            threading.Thread(target=self._pump, args=(client, up), daemon=True).start()

    def _watch_boot(self, data: bytes, to_board: bool) -> None:
        """spare_boot: faults off while the BIOS loads the firmware, on once it runs."""
        tail = self._tail_to_board if to_board else self._tail_to_host
        seen = tail + data
        if to_board:
            self._tail_to_board = seen[-16:]
            if b"z6IHG7cYDID6o" in seen:
                self._armed.clear()
        else:
            self._tail_to_host = seen[-16:]
            if b"sL5DdSMmkekro" in seen:
                self._armed.clear()
            elif b"Liftoff" in seen:
                self._armed.set()

    def _damage(self, data: bytes, direction: str) -> bytes:
        cfg = self.config
        if not self._armed.is_set() or cfg.directions not in ("both", direction):
            return data
        self.stats.armed_bytes += len(data)
        out = bytearray()
        with self._lock:
            rnd = self._rng.random
            for b in data:
                r = rnd()
                if r < cfg.drop:
                    self.stats.dropped += 1
                    continue
                if rnd() < cfg.corrupt:
                    b ^= self._rng.randrange(1, 256)
                    self.stats.corrupted += 1
                out.append(b)
                if rnd() < cfg.duplicate:
                    out.append(b)
                    self.stats.duplicated += 1
        return bytes(out)

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        born = time.monotonic()
        socks = [client, up]
        try:
            while not self._stop.is_set():
                cfg = self.config
                if cfg.cut_every_s and self._armed.is_set() and time.monotonic() - born > cfg.cut_every_s:
                    self.cut()
                    return
                try:
                    ready, _, _ = select.select(socks, [], [], 0.05)
                except (OSError, ValueError):
                    return
                for s in ready:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        return
                    if not data:
                        self._close_pair(client, up)
                        return
                    to_board = s is client
                    if to_board:
                        self.stats.bytes_to_board += len(data)
                    else:
                        self.stats.bytes_to_host += len(data)
                    if cfg.spare_boot:
                        self._watch_boot(data, to_board)
                    data = self._damage(data, "to_board" if to_board else "to_host")
                    if cfg.delay_s:
                        time.sleep(cfg.delay_s)
                    try:
                        (up if to_board else client).sendall(data)
                    except OSError:
                        self._close_pair(client, up)
                        return
        finally:
            pass

    def _close_pair(self, client: socket.socket, up: socket.socket) -> None:
        with self._lock:
            self._conns = [c for c in self._conns if c != (client, up)]
        for s in (client, up):
            try:
                s.close()
            except OSError:
                pass
