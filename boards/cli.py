"""`mico boards ...`: list profiles, probe a board, flash it, build the emulator, run the fault proxy.

Registered through the ``mico.commands`` entry-point group
(``boards = "boards.cli:boards"``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from harness.cli import BaseZeroInt, FiniteFloat, emit, param_option
from harness.errors import UserError

from . import lock, profiles

PROBABILITY = FiniteFloat(min=0.0, max=1.0)
NON_NEGATIVE = FiniteFloat(min=0.0)


@click.group()
def boards() -> None:
    """FPGA boards over a serial port (and the emulated LiteX board)."""


@boards.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def list_(as_json: bool) -> None:
    """Every board profile, whether it can be used here, and who holds its port."""
    from .targets import BoardTarget, quarantine_record

    rows = []
    for name, p in sorted(profiles.all_profiles().items()):
        if isinstance(p, UserError):
            rows.append({"name": name, "target": f"board:{name}", "available": False, "reason": str(p)})
            continue
        t = BoardTarget(name)
        ok, why = t.available()
        held = lock.holder(p.url)
        q = quarantine_record(p.url)
        rows.append({"name": name, "target": f"board:{name}", "available": ok, "reason": why, "url": p.url,
                     "soc": f"{p.soc_kind} {p.cpu}/{p.cpu_variant} @ {p.clock_hz / 1e6:g} MHz",
                     "load": p.load, "profile": p.source, "locked_by": held, "quarantined": q,
                     "description": p.description})
    lines = []
    for r in rows:
        state = "available" if r["available"] else f"unavailable: {r['reason']}"
        extra = ""
        if r.get("locked_by"):
            extra += f"  [in use by pid {r['locked_by'].get('pid')}]"
        if r.get("quarantined"):
            extra += f"  [quarantined: {r['quarantined'].get('last_error', '')}]"
        lines.append(f"{r['target']:<20} {r.get('url', ''):<28} {state}{extra}\n    {r.get('soc', '')}  "
                     f"load: {r.get('load', '?')}  ({r.get('profile', '')})")
    emit(rows, as_json, "\n".join(lines) or "no board profiles")


@boards.command()
@click.argument("board")
@param_option("url=..., sim_port=..., timeout_s=... (repeatable; `mico targets --json` lists them).")
@click.option("--json", "as_json", is_flag=True)
def probe(board: str, params, as_json: bool) -> None:
    """Build what the board needs, boot it, say HELLO and show what it reports."""
    from .targets import BoardTarget

    t = BoardTarget(board.removeprefix("board:"), **params)
    t0 = time.monotonic()
    build = t.build() if t.available()[0] else None     # else session() says why, in one sentence
    tb = time.monotonic() - t0
    with t.session(build) as s:
        boot = time.monotonic() - t0 - tb
        h = s.hello.to_dict()
        build = s.build_result
    d = {"target": t.name, "fingerprint": build.fingerprint, "build_s": round(tb, 2), "boot_s": round(boot, 2),
         "build_cached": build.cached, "hello": h, "image": build.info.get("image")}
    emit(d, as_json, f"{t.name}: {h['target_id']} {h['isa']}, {h['ram_bytes'] // 1024} KiB arena, timer "
                     f"{h['timer_unit']} @ {h['timer_hz'] / 1e6:g} MHz, {len(h['pairs'])} bit-width pairs; "
                     f"build {tb:.1f} s{' (cached)' if build.cached else ''}, boot {boot:.1f} s")


@boards.command()
@click.argument("board")
@click.option("--dry-run", is_flag=True, help="Print the flash command instead of running it.")
def flash(board: str, dry_run: bool) -> None:
    """Write the bench firmware into the board's flash with the profile's load.flash_command."""
    from .targets import BoardTarget

    t = BoardTarget(board.removeprefix("board:"))
    build = t.build()
    image = Path(build.artifacts["image"])
    argv = t.flash_argv(image)
    if not argv:
        raise UserError(f"board {t.profile.name} has no load.flash_command in its profile "
                        f"(it loads by {t.profile.load}).")
    if dry_run:
        click.echo(" ".join(argv))
        return
    lock.acquire(t.profile.url, what=f"mico boards flash {t.profile.name}")
    out = t.flash(image)
    click.echo(out.strip() or f"flashed {image} ({image.stat().st_size} bytes) to {t.profile.name}")


@boards.command(name="build-emulator")
@click.option("--cpu-variant", default="standard", show_default=True)
@click.option("--main-ram-size", type=BaseZeroInt(min=64 * 1024, max=1 << 30), default="0x400000", show_default=True,
              help="Main RAM in bytes (decimal or 0x...), 64 KiB .. 1 GiB.")
def build_emulator(cpu_variant: str, main_ram_size: int) -> None:
    """Build (or find in the cache) the emulated board's SoC and Verilator model."""
    from . import emulator

    t0 = time.monotonic()
    art = emulator.build_soc(cpu_variant, main_ram_size)
    click.echo(f"{art.path.parent} ({'cached' if art.cached else f'built in {time.monotonic() - t0:.0f} s'})")


@boards.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="HOST:PORT the host connects to (loopback only).")
@click.option("--to", "upstream", required=True, help="HOST:PORT of the board (loopback only).")
@click.option("--drop", type=PROBABILITY, default=0.0, help="Probability a byte is dropped (0 .. 1).")
@click.option("--corrupt", type=PROBABILITY, default=0.0, help="Probability a byte is corrupted (0 .. 1).")
@click.option("--duplicate", type=PROBABILITY, default=0.0, help="Probability a byte is sent twice (0 .. 1).")
@click.option("--delay-ms", type=NON_NEGATIVE, default=0.0, help="Extra latency of every chunk.")
@click.option("--cut-every", type=NON_NEGATIVE, default=0.0, help="Cut the link every N seconds (0 = never).")
@click.option("--seed", type=int, default=1)
@click.option("--duration", type=NON_NEGATIVE, default=0.0, help="Stop after N seconds (0 = until Ctrl-C).")
@click.option("--spare-boot", is_flag=True, help="No faults while the BIOS serial boot loads the firmware.")
def proxy(listen, upstream, drop, corrupt, duplicate, delay_ms, cut_every, seed, duration, spare_boot) -> None:
    """A TCP proxy that damages the byte stream between host and board (for testing the link)."""
    from .faults import FaultConfig, FaultProxy

    def hp(s: str) -> tuple[str, int]:
        h, _, p = s.rpartition(":")
        if h not in ("127.0.0.1", "localhost") or not p.isdigit():
            raise UserError(f"{s!r} must be 127.0.0.1:PORT: the fault proxy only works on loopback.")
        return "127.0.0.1", int(p)

    cfg = FaultConfig(drop=drop, corrupt=corrupt, duplicate=duplicate, delay_s=delay_ms / 1000, cut_every_s=cut_every,
                      seed=seed, spare_boot=spare_boot)
    px = FaultProxy(hp(upstream), cfg, listen=hp(listen))
    px.start()
    click.echo(f"fault proxy 127.0.0.1:{px.port} -> {upstream} ({cfg})")
    try:
        end = time.monotonic() + duration if duration else None
        while end is None or time.monotonic() < end:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        px.stop()
        click.echo(json.dumps(px.stats.to_dict()))
