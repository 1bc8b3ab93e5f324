"""Shared helpers of the report: figures without pyplot, number formatting, kernel specs.

Figures are `matplotlib.figure.Figure` objects attached to an Agg canvas
directly, never pyplot: no global backend switch, no GUI, nothing left open.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

from harness.documents import atomic_write

DPI = 110


# ---- figures ---------------------------------------------------------------------
def new_figure(width: float, height: float):
    """A Figure (inches) drawn by the Agg canvas, with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, out_dir: Path, name: str) -> str:
    """Write `fig` as PNG `name` under `out_dir`; returns the file name (for <img src>)."""
    path = Path(out_dir) / name
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    atomic_write(path, buf.getvalue(), what="figure")
    return name


def slug(text: str) -> str:
    """A file-name-safe version of `text`."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return s or "x"


def unique_name(stem: str, used: set[str], ext: str = ".png") -> str:
    """`stem + ext`, suffixed -2, -3, ... so it is not in `used`; records it there."""
    base = slug(stem)
    name, i = base + ext, 2
    while name in used:
        name, i = f"{base}-{i}{ext}", i + 1
    used.add(name)
    return name


def text_color(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour `rgba`."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


# ---- numbers ----------------------------------------------------------------------
def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


#: the largest magnitude a figure's axes take (matplotlib overflows near 1e308)
PLOT_MAX = 1e100


def plottable(*values) -> bool:
    """Whether every value is finite and of a magnitude a figure can draw (1e300 cycles cannot)."""
    import numpy as np

    for v in values:
        a = np.asarray(v, dtype=float)
        if a.size and (not np.all(np.isfinite(a)) or np.max(np.abs(a)) > PLOT_MAX
                       or (np.any(a > 0) and np.min(a[a > 0]) < 1 / PLOT_MAX)):
            return False
    return True


def fmt_num(v: Any, digits: int = 4) -> str:
    """A latency or count for a table: thousands separators for big numbers."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if not is_number(v):
        return str(v)
    v = float(v)
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    if v == int(v):
        return f"{int(v)}"
    return f"{v:.{digits}g}"


def fmt_pct(v: Any, digits: int = 2, signed: bool = False) -> str:
    """A value already in percent (MAPE, error %)."""
    if not is_number(v):
        return "n/a"
    return f"{float(v):+.{digits}f}%" if signed else f"{float(v):.{digits}f}%"


def fmt_acc(v: Any) -> str:
    """An accuracy: fractions (<= 1) shown in percent, anything else as given."""
    if not is_number(v):
        return "n/a"
    v = float(v)
    return f"{100 * v:.2f}%" if 0 <= v <= 1 else f"{v:.4g}"


def fmt_rho(v: Any) -> str:
    return f"{float(v):.3f}" if is_number(v) else "n/a"


# ---- documents ------------------------------------------------------------------
def spec_text(spec: Any) -> str:
    """A layer's kernel spec (dict, string or None) as 'op[shape] qaxqw'."""
    if spec is None:
        return ""
    if isinstance(spec, dict):
        try:
            from harness.spec import KernelSpec

            return str(KernelSpec.from_dict(spec))
        except Exception:  # noqa: BLE001 - show whatever the file holds
            op, shape = spec.get("op", "?"), spec.get("shape", "")
            if isinstance(shape, (list, tuple)):
                shape = ",".join(map(str, shape))
            return f"{op}[{shape}]"
    return str(spec)
