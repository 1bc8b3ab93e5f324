"""`mico report`: an HTML report (index.html + PNGs) of a store and, optionally,
a proxy file, a search result (scheme.json) and a deploy validation (deploy.json).

Registered on the `mico` group through the ``mico.commands`` entry point.
Heavy imports (matplotlib, pandas, jinja2) happen when the command runs, so
`mico --help` stays fast.  Errors are `UserError`s: one sentence, exit 2.
"""

from __future__ import annotations

import click


@click.command("report")
@click.option("--store", "store_path", required=True, type=click.Path(), help="Results store (SQLite) to summarise.")
@click.option("--proxy", "proxy_path", type=click.Path(), default=None,
              help="Proxy file (mico fit -o): adds out-of-fold parity plots per op.")
@click.option("--scheme", "scheme_path", type=click.Path(), default=None,
              help="scheme.json (mico search): adds the Pareto front and the chosen bit-widths.")
@click.option("--compare", "compare_paths", type=click.Path(), multiple=True,
              help="More scheme.json files (e.g. one per searcher): their Pareto fronts share one plot.")
@click.option("--deploy", "deploy_path", type=click.Path(), default=None,
              help="deploy.json (mico deploy): adds bit-exactness, accuracy and measured vs predicted latency.")
@click.option("--validation", "validation_paths", multiple=True, type=click.Path(),
              help="validation.json (mico validate -o), repeatable: adds whole-model parity plots "
                   "(validations kept in the store are shown too).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(), help="Folder for index.html and the PNGs.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written, and the key numbers, as JSON.")
def report(store_path: str, proxy_path: str | None, scheme_path: str | None, compare_paths: tuple,
           deploy_path: str | None, validation_paths: tuple[str, ...], out_dir: str, as_json: bool) -> None:
    """Write an HTML report: store summary, (qa x qw) latency heatmaps,
    proxy parity plots, the search's Pareto front and the deploy validation.

    Sections appear only for the inputs given.  Prints the path of index.html.
    """
    from harness.cli import emit

    from .html import build_report

    rep = build_report(store_path, out_dir, proxy_path=proxy_path, scheme_path=scheme_path, deploy_path=deploy_path,
                       compare_paths=compare_paths, validation_paths=list(validation_paths))
    emit(rep.to_dict(), as_json, str(rep.index))
