"""The `mico` command line.

Commands that belong to higher layers (fit, search, deploy, demo, report) live
in their own packages and are found through the ``mico.commands`` entry-point
group, so this module never imports mpq/ (DESIGN.md s1).
"""

from __future__ import annotations

import json
import logging
import sys
from importlib.metadata import entry_points

import click

from .errors import MeasureError, UserError


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
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


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
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")


from . import commands  # noqa: E402,F401  (registers the measurement commands on `main`)

if __name__ == "__main__":  # pragma: no cover
    # `python -m harness.cli`: run the registered group of the imported module,
    # not this __main__ copy (the commands were registered on harness.cli.main)
    from harness.cli import main as _registered_main

    sys.exit(_registered_main())
