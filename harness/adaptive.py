"""The adaptive plan (``mico sweep --plan adaptive:N[:SEED] [--target-mape X]``).

Per op (N shapes: half matmul, half conv2d, as ``random:N``), a seeded pool of
candidate shapes is drawn within the model zoo's layer-shape ranges
(harness/zoo_ranges.py).  The first `INITIAL` shapes are the pool's first
(random) ones; after that, every round the proxy committee of the op
(proxy/adaptive.py, found through the ``mico.samplers`` entry point: harness/
does not import the proxy package) is refitted on every kernel the plan has
measured and the shapes it disagrees most about are measured next, each at
every (qa, qw) pair of the target.  An op stops at its share of N shapes, or
as soon as its shape-grouped CV MAPE is at most ``--target-mape`` (checked
from 5 measured shapes on).

Resuming: the rounds are replayed from the store.  A round's chosen specs that
are stored are skipped, and the plan refits on the stored values -- the same
ones it chose with the first time -- so a rerun chooses the same shapes and
measures only what is missing.  Only the plan's own shapes train the
committee: other rows of the store (another plan's) do not steer it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points

from .errors import UserError
from .spec import KernelSpec
from .zoo_ranges import candidates

#: candidate shapes per op the committee ranks
POOL = 400
#: shapes per op measured before the committee chooses (it needs some data to disagree)
INITIAL = 3


def load_sampler():
    """The proxy committee's class (``mico.samplers`` entry point ``adaptive``)."""
    for ep in entry_points(group="mico.samplers"):
        if ep.name == "adaptive":
            return ep.load()
    raise UserError("the adaptive plan needs the proxy package's sampler (entry point mico.samplers); "
                    "reinstall mico-hil.")


@dataclass
class _OpState:
    op: str
    budget: int                      # shapes this op may measure
    pool: list
    sampler: object
    chosen: list = field(default_factory=list)
    stopped: str | None = None       # why the op stopped: "N" or "target-mape"
    history: list = field(default_factory=list)


def run_adaptive(plan, store, runner, fingerprint: str, target_name: str, pairs: list, ops: list[str],
                 target_mape: float | None, summary, drain, progress=None) -> dict:
    """Measure `plan` round by round; `drain(store)` waits for the runner's in-flight specs and
    commits them.  Returns the plan's report: per op, the rounds (shapes so far, CV MAPE) and
    why it stopped."""
    from .sweep import _new_specs

    sampler_cls = load_sampler()
    pairs = [tuple(p) for p in pairs]
    states = []
    for op in ops:
        if op not in ("matmul", "conv2d") or plan.count(op) == 0:
            continue
        states.append(_OpState(op, plan.count(op), candidates(op, POOL, plan.seed),
                               sampler_cls(op, target_name, plan.seed)))
    if not states:
        raise UserError("the adaptive plan measures matmul and conv2d kernels; the target offers neither.")
    batch = max(1, -(-runner.parallelism // len(pairs)))       # shapes per op and round: fill the workers
    while any(st.stopped is None for st in states):
        todo_specs: list[KernelSpec] = []
        for st in states:
            if st.stopped is not None:
                continue
            k = min(batch, st.budget - len(st.chosen))
            taken = set(st.chosen)
            rest = [sh for sh in st.pool if sh not in taken]
            if not rest:
                st.stopped = "pool"
                continue
            if len(st.chosen) < INITIAL:
                pick = rest[:min(max(k, INITIAL - len(st.chosen)), st.budget - len(st.chosen))]
            else:
                pick = st.sampler.choose(rest, pairs, k)
            st.chosen.extend(pick)
            todo_specs += [KernelSpec(st.op, sh, a, w) for sh in pick for a, w in pairs]
        todo = _new_specs(store, fingerprint, todo_specs)
        summary.skipped_existing += len(todo_specs) - len(todo)
        if progress is not None:
            progress(len(todo_specs) - len(todo))
        for s in todo:
            runner.submit(s)
        drain(store)
        for st in states:
            if st.stopped is not None:
                continue
            specs = [KernelSpec(st.op, sh, a, w) for sh in st.chosen for a, w in pairs]
            got = store.get_among(fingerprint, specs)
            ok = [(s, got[s.key()].median) for s in specs
                  if s.key() in got and got[s.key()].status == "ok" and got[s.key()].median]
            st.sampler.fit([s for s, _ in ok], [v for _, v in ok])
            mape = st.sampler.cv_mape()
            st.history.append({"shapes": len(st.chosen), "kernels": len(ok), "cv_mape": mape})
            if target_mape is not None and mape is not None and mape <= target_mape:
                st.stopped = "target-mape"
            elif len(st.chosen) >= st.budget:
                st.stopped = "N"
    return {st.op: {"shapes": len(st.chosen), "stopped": st.stopped, "rounds": st.history,
                    "chosen": [list(sh) for sh in st.chosen],
                    "cv_mape": st.history[-1]["cv_mape"] if st.history else None} for st in states}
