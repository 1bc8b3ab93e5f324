"""HTML + PNG reports of a measurement store, a proxy file, a search result and a deploy result.

Public API (everything else is internal):

- ``reports.html.build_report(store_path, out, proxy_path=None, scheme_path=None,
  deploy_path=None) -> Report`` writes ``out/index.html`` and its PNGs
  (``Report.to_dict()`` is what ``mico report --json`` prints);
- ``reports.cli.report``: the ``mico report`` command;
- per figure family, ``compute(...)`` (numbers, no files) and ``plot(..., out_dir, used)``:
  ``reports.heatmaps`` (qa x qw latency relative to 8x8), ``reports.parity``
  (out-of-fold proxy predictions), ``reports.pareto`` (``load(path) -> Scheme``),
  ``reports.deploy_table`` (``load(path) -> Deploy``).

This package only reads: it never writes to a store, proxy, scheme or deploy file.
"""
