"""Layer shapes of the built-in models, for the sweep plan `zoo`.

harness/ must not import mpq/, so the plan finds this function through the
``mico.plans`` entry-point group.
"""

from __future__ import annotations

from .models import DATASET_HW, MODELS, get_model


def zoo_shapes(batch: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """(op, shape) of every quantisable layer of every built-in model and dataset size."""
    out: set[tuple[str, tuple[int, ...]]] = set()
    seen_hw = set()
    for dataset, hw in DATASET_HW.items():
        if hw in seen_hw:
            continue
        seen_hw.add(hw)
        for name in MODELS:
            out.update((s.op, s.shape) for s in get_model(name, dataset).lower().specs(batch))
    return sorted(out)
