"""The `mico` command line.

Commands that belong to higher layers (fit, search, deploy, demo, report) live
in their own packages and are found through the ``mico.commands`` entry-point
group, so this module never imports mpq/ (DESIGN.md s1).

Exit codes: 0 done, 1 a measurement failed, 2 bad input (one sentence on
stderr, never a traceback), 128 + N after signal N.  SIGTERM and SIGHUP are
turned into an exception (`Terminated`), like SIGINT into KeyboardInterrupt,
so every `with target.session()` block and `finally` kills the firmware and
simulator children on the way out instead of leaving them behind.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from importlib.metadata import entry_points

import click

from .errors import MeasureError, ParamError, Terminated, UserError
from .params import parse_assignments

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def _exit_now(code: int) -> None:
    """After a stop signal: every `finally` has run (devices killed, store closed), so exit
    without the interpreter's teardown, which can take seconds (torch, thread pools) and
    would let a demo's in-process steps carry on."""
    logging.shutdown()
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def install_signal_handlers() -> None:
    """SIGTERM / SIGHUP -> `Terminated` in the main thread (SIGINT already raises KeyboardInterrupt)."""
    for sig in STOP_SIGNALS:
        try:
            if signal.getsignal(sig) is not signal.SIG_IGN:     # nohup'ed runs keep ignoring SIGHUP
                signal.signal(sig, _raise_terminated)
        except ValueError:      # not the main thread (an embedding application): leave its handlers alone
            pass


class MicoGroup(click.Group):
    """A click group that turns UserError into one sentence and exit code 2."""

    def list_commands(self, ctx):
        names = set(super().list_commands(ctx))
        names |= {ep.name for ep in entry_points(group="mico.commands")}
        return sorted(names)

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        for ep in entry_points(group="mico.commands"):
            if ep.name == name:
                try:
                    return ep.load()
                except ImportError as e:  # a missing optional part must not break the CLI
                    logging.getLogger(__name__).warning("command %s is unavailable: %s", name, e)
                    return None
        return None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except MeasureError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)
        except Terminated as e:
            click.echo(f"terminated ({signal.Signals(e.signum).name})", err=True)
            _exit_now(128 + e.signum)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            _exit_now(128 + signal.SIGINT)
        except click.UsageError as e:
            # a bad option of a subcommand: one sentence too (`mico sweep -h` has the rest)
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
                raise
            click.echo(f"error: {' '.join(e.format_message().split())}", err=True)
            ctx.exit(e.exit_code)


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (which every range check lets through)."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


class BaseZeroInt(click.ParamType):
    """An integer written in decimal or with a 0x / 0o / 0b prefix, within [min, max]."""

    name = "integer"

    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = int(str(value).strip(), 0)
            except ValueError:
                self.fail(f"{value!r} is not an integer (decimal or 0x...).", param, ctx)
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            self.fail(f"{value} is not in the range {self.min} .. {self.max}.", param, ctx)
        return v


def _param_callback(ctx, param, value) -> dict:
    try:
        return parse_assignments(value)
    except ParamError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def param_option(help: str = "Target parameter KEY=VALUE (repeatable); `mico targets --json` lists them."):
    """The one ``--param KEY=VALUE`` option; the command receives a dict of texts in ``params``."""
    return click.option("--param", "params", multiple=True, callback=_param_callback, help=help)


def emit(obj, as_json: bool, text: str | None = None) -> None:
    """Print a result either as JSON (for scripts) or as human text."""
    if as_json:
        click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))
    elif text is not None:
        click.echo(text)


@click.group(cls=MicoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="mico-hil")
def main(verbose: int) -> None:
    """mico-hil: measure mixed-precision kernels on hardware, fit latency
    proxies, search bit-widths, generate C, deploy and validate."""
    install_signal_handlers()
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


from . import commands  # noqa: E402,F401  (registers the measurement commands on `main`)

if __name__ == "__main__":  # pragma: no cover
    # `python -m harness.cli`: run the registered group of the imported module,
    # not this __main__ copy (the commands were registered on harness.cli.main)
    from harness.cli import main as _registered_main

    sys.exit(_registered_main())
