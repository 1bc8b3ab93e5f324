"""(qa x qw) latency heatmaps: how much faster is each bit pair?

One heatmap per target build (fingerprint) and op.  For every shape measured
at the reference pair (8x8, or the widest pair measured when 8x8 is absent) each
kernel's latency is divided by that shape's reference latency; a cell shows the
median of that ratio over the shapes, so large and small shapes weigh the same.
Next to it, a table of absolute latencies for a few representative shapes
(smallest, median and largest MAC count among the best-covered shapes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import fmt_num, new_figure, plottable, save_figure, text_color, unique_name


@dataclass
class Heatmap:
    target: str
    fingerprint: str
    op: str
    unit: str | None
    qas: list[int]
    qws: list[int]
    ref: tuple[int, int]
    ratio: list[list[float | None]]         # [qa][qw] median of latency / reference latency
    n: list[list[int]]                      # [qa][qw] shapes behind each cell
    n_shapes: int                           # shapes with a reference measurement
    n_kernels: int
    rep_pairs: list[tuple[int, int]] = field(default_factory=list)
    rep_rows: list[dict] = field(default_factory=list)   # {shape, macs, values: [str per pair]}
    png: str | None = None

    @property
    def title(self) -> str:
        return f"{self.target} · {self.op}"

    def to_dict(self) -> dict:
        return {"target": self.target, "fingerprint": self.fingerprint, "op": self.op, "unit": self.unit,
                "qa": self.qas, "qw": self.qws, "reference": list(self.ref), "ratio": self.ratio,
                "n": self.n, "n_shapes": self.n_shapes, "n_kernels": self.n_kernels, "png": self.png}


def _macs_by_shape(g, op: str) -> dict[str, int]:
    """MACs of every shape of `g` (rows of one op), from its shape-field columns."""
    from harness.spec import KernelSpec

    fields = list(KernelSpec.FIELDS.get(op, ()))
    if not fields or any(f not in g.columns for f in fields):
        return {}
    out = {}
    extra = [c for c in ("mode", "out_bits") if c in g.columns]
    for r in g.drop_duplicates("shape")[["shape", "qa", "qw", *extra, *fields]].to_dict("records"):
        # layer-mode rows (pools, adds: layer mode only) rebuild as the layer specs they are
        kw = {"mode": str(r["mode"]), "out_bits": int(r["out_bits"])} if extra == ["mode", "out_bits"] else {}
        out[r["shape"]] = KernelSpec(op, tuple(int(r[f]) for f in fields), int(r["qa"]), int(r["qw"]), **kw).macs
    return out


def compute(df, target_names: dict[str, str] | None = None, n_representative: int = 3) -> list[Heatmap]:
    """Heatmaps of the successful measurements in a `Store.frame()` DataFrame."""
    if df is None or len(df) == 0:
        return []
    df = df[(df["status"] == "ok") & df["value"].notna() & (df["value"] > 0)]
    out: list[Heatmap] = []
    names = target_names or {}
    multi = df.groupby("target")["fingerprint"].nunique().to_dict() if len(df) else {}
    for (fp, op, unit), g in df.groupby(["fingerprint", "op", df["unit"].fillna("")], sort=True):
        name = names.get(fp, g["target"].iloc[0])
        if multi.get(g["target"].iloc[0], 1) > 1:
            name = f"{name} ({fp[:8]})"
        table = g.pivot_table(index="shape", columns=["qa", "qw"], values="value", aggfunc="median")
        qas = sorted({int(a) for a, _ in table.columns})
        qws = sorted({int(w) for _, w in table.columns})
        pairs = [(a, w) for a, w in table.columns]
        ref = (8, 8) if (8, 8) in pairs else max(pairs, key=lambda p: (p[0] * p[1], p))
        ref_col = table[ref]
        with_ref = table[ref_col.notna()]
        ratios = with_ref.div(with_ref[ref], axis=0)
        ratio = [[None] * len(qws) for _ in qas]
        n = [[0] * len(qws) for _ in qas]
        for i, a in enumerate(qas):
            for j, w in enumerate(qws):
                if (a, w) in ratios.columns:
                    col = ratios[(a, w)].dropna()
                    n[i][j] = int(len(col))
                    if len(col):
                        ratio[i][j] = float(np.median(col.to_numpy()))
        hm = Heatmap(target=str(name), fingerprint=str(fp), op=str(op), unit=unit or None, qas=qas, qws=qws,
                     ref=(int(ref[0]), int(ref[1])), ratio=ratio, n=n, n_shapes=int(len(with_ref)),
                     n_kernels=int(len(g)))
        _representative(hm, table, n_representative, _macs_by_shape(g, str(op)))
        out.append(hm)
    order = {fp: i for i, fp in enumerate(names)}   # targets in the store's order, then ops as in harness.spec
    out.sort(key=lambda h: (order.get(h.fingerprint, len(order)), h.target, _op_rank(h.op), h.unit or ""))
    return out


def _op_rank(op: str) -> int:
    from harness.spec import OPS

    return OPS.index(op) if op in OPS else len(OPS)


def _representative(hm: Heatmap, table, k: int, macs: dict[str, int]) -> None:
    """Fill the absolute-latency table: up to `k` shapes spread over MAC counts."""
    hm.rep_pairs = sorted((int(a), int(w)) for a, w in table.columns)
    coverage = table.notna().sum(axis=1)
    best = table[coverage == coverage.max()]
    shapes = sorted(best.index, key=lambda s: (macs.get(s, 0), s))
    if len(shapes) > k:
        idx = sorted({round(i * (len(shapes) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
        shapes = [shapes[i] for i in idx]
    for s in shapes:
        row = table.loc[s]
        values = []
        for a, w in hm.rep_pairs:
            v = row.get((a, w))
            values.append(fmt_num(float(v)) if v is not None and np.isfinite(v) else "–")
        hm.rep_rows.append({"shape": s, "macs": fmt_num(macs.get(s, 0)), "values": values})


def plot(hm: Heatmap, out_dir: Path, used: set[str]) -> str:
    """Draw `hm` to a PNG under `out_dir`; returns (and records in hm.png) its file name."""
    from matplotlib.colors import LogNorm

    data = np.array([[np.nan if v is None or not plottable(v) else v for v in row] for row in hm.ratio], dtype=float)
    fig = new_figure(1.2 + 1.05 * len(hm.qws), 1.3 + 0.85 * len(hm.qas))
    ax = fig.add_subplot()
    finite = data[np.isfinite(data) & (data > 0)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.5, 2.0)
    if hi / lo < 1.5:  # keep a visible scale when all pairs cost about the same
        lo, hi = lo / 1.25, hi * 1.25
    cmap = _cmap()
    norm = LogNorm(vmin=lo, vmax=hi)
    masked = np.ma.masked_invalid(data)
    im = ax.imshow(masked, cmap=cmap, norm=norm, aspect="auto")
    for i in range(len(hm.qas)):
        for j in range(len(hm.qws)):
            v = data[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "–", ha="center", va="center", color="0.4", fontsize=11)
                continue
            label = f"{v:.2f}"
            if hm.n[i][j] < hm.n_shapes:
                label += f"\nn={hm.n[i][j]}"
            ax.text(j, i, label, ha="center", va="center", fontsize=10,
                    color=text_color(cmap(norm(v))), fontweight="bold" if (hm.qas[i], hm.qws[j]) == hm.ref else None)
    ax.set_xticks(range(len(hm.qws)), [str(w) for w in hm.qws])
    ax.set_yticks(range(len(hm.qas)), [str(a) for a in hm.qas])
    ax.set_xlabel("qw (weight bits)")
    ax.set_ylabel("qa (activation bits)")
    ref = f"{hm.ref[0]}×{hm.ref[1]}"
    ax.set_title(f"{hm.title}\nlatency / latency at {ref}, median over {hm.n_shapes} shapes", fontsize=10)
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    _plain_log_ticks(cb, lo, hi)
    cb.set_label(f"relative to {ref} (lower is faster)", fontsize=8)
    cb.ax.tick_params(labelsize=8)
    hm.png = save_figure(fig, out_dir, unique_name(f"heatmap_{hm.target}_{hm.op}", used))
    return hm.png


def _plain_log_ticks(cb, lo: float, hi: float) -> None:
    """Colorbar ticks at 1-2-5 steps, written 0.2, 0.5, 1 rather than 2x10^-1."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ticks = [m * 10.0 ** e for e in range(-4, 3) for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    if len(ticks) < 3:
        ticks = sorted(set(ticks) | {float(f"{v:.2g}") for v in np.geomspace(lo, hi, 4)})
    cb.ax.yaxis.set_major_locator(FixedLocator(ticks))
    cb.ax.yaxis.set_minor_locator(NullLocator())
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _cmap():
    import matplotlib

    return matplotlib.colormaps["viridis"].with_extremes(bad="0.92")


def render_all(df, out_dir: Path, used: set[str], target_names: dict[str, str] | None = None) -> list[Heatmap]:
    maps = compute(df, target_names)
    for hm in maps:
        plot(hm, out_dir, used)
    return maps
