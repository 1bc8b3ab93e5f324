"""Synthetic latency data for the proxy tests and benchmarks (never for reports).

Latency follows a known formula so a test can tell a right fit from a wrong one:

    latency = (a * CBOPs + b) * exp(shape_effect * z_shape) * exp(noise * z_row)

with z ~ N(0, 1): ``z_shape`` is one draw per shape (an effect no feature can
explain, e.g. cache behaviour of a particular shape), ``z_row`` one per kernel.
Values written to a store are labelled ``source='synthetic'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.spec import KernelSpec
from kernels.numeric import BITS

_MM_SIZES = (1, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def random_shapes(op: str, n_shapes: int, seed: int = 0) -> list[tuple[int, ...]]:
    """`n_shapes` distinct, valid shapes of `op` drawn reproducibly from `seed`."""
    rng = np.random.default_rng(seed)
    shapes: dict[tuple[int, ...], None] = {}
    tries = 0
    while len(shapes) < n_shapes:
        tries += 1
        if tries > 100 * n_shapes + 1000:
            raise ValueError(f"could not draw {n_shapes} distinct {op} shapes")
        if op == "matmul":
            shape = (int(rng.choice(_MM_SIZES[:8])), int(rng.choice(_MM_SIZES[2:])), int(rng.choice(_MM_SIZES[2:])))
        else:
            ks = int(rng.choice((1, 3, 5)))
            hw = int(rng.choice((4, 8, 12, 16, 24, 32)))
            if hw < ks:
                continue
            c = int(rng.choice((3, 8, 16, 32, 64)))
            k = int(rng.choice((8, 16, 32, 64)))
            s = int(rng.choice((1, 2)))
            p = int(rng.choice((0, ks // 2)))
            shape = (1, c, hw, hw, k, ks, s, p, 1)
        shapes[shape] = None
    return list(shapes)


def synthetic_dataset(op: str = "matmul", n_shapes: int = 40, seed: int = 0, noise: float = 0.02,
                      shape_effect: float = 0.0, a: float = 0.05, b: float = 2000.0,
                      bits=BITS) -> tuple[list[KernelSpec], np.ndarray]:
    """(specs, latencies): every (qa, qw) pair in `bits` for `n_shapes` random shapes."""
    rng = np.random.default_rng(seed + 1)
    specs: list[KernelSpec] = []
    values: list[float] = []
    for shape in random_shapes(op, n_shapes, seed):
        z_shape = rng.standard_normal()
        for qa in bits:
            for qw in bits:
                s = KernelSpec(op, shape, qa, qw)
                v = (a * s.cbops + b) * np.exp(shape_effect * z_shape + noise * rng.standard_normal())
                specs.append(s)
                values.append(float(v))
    return specs, np.asarray(values)


def synthetic_store(path: str | Path, target: str = "synthetic", ops=("matmul",), n_shapes: int = 40,
                    seed: int = 0, unit: str = "cycles", **kw) -> Path:
    """Create/extend a store at `path` with a synthetic target holding `ops` kernels."""
    from harness.store import Measurement, Store

    fingerprint = "synthetic-" + target
    with Store(path) as st:
        st.add_target(fingerprint, target, {"synthetic": True, "seed": seed}, source="synthetic")
        for i, op in enumerate(ops):
            specs, y = synthetic_dataset(op, n_shapes=n_shapes, seed=seed + 97 * i, **kw)
            st.put_many(
                Measurement(spec=s, fingerprint=fingerprint, status="ok", unit=unit, raw=[v], median=v,
                            iqr=0.0, min=v, checksum_ok=True, source="synthetic")
                for s, v in zip(specs, y.tolist())
            )
    return Path(path)
