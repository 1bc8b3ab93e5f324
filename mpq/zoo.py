"""Layer shapes and layer-mode specs of the built-in models, for the sweep plans.

harness/ must not import mpq/, so the plans find these functions through the
``mico.plans`` entry-point group: ``zoo`` (kernel shapes), ``zoo-layers`` and
``model`` (layer-mode specs: every layer at every bit-width a scheme can give it).  Every model is lowered at the input shape
of every dataset it can take (the default digits, MNIST's 28x28, and whatever
``mpq.datasets.dataset_shape`` knows), so the plan holds every kernel a zoo
model runs: dense, grouped and depthwise convs, conv1d (as its 1x1 conv2d
after the unfold) and linear layers.
"""

from __future__ import annotations

from dataclasses import replace

from harness.errors import UserError
from harness.spec import CODE_OPS, KernelSpec
from kernels.reference import BITS

from .models import DATASET_HW, MODELS, build_model, dataset_input, get_model


def zoo_datasets() -> list[str]:
    """The datasets whose input shapes the zoo plan covers."""
    names = list(DATASET_HW)
    try:
        from .datasets import DATASETS, dataset_shape  # noqa: F401
    except ImportError:
        return names
    return names + [d for d in DATASETS if d not in names]


def zoo_shapes(batch: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """(op, shape) of every quantisable layer of every built-in model and dataset shape."""
    out: set[tuple[str, tuple[int, ...]]] = set()
    seen = set()
    for dataset in zoo_datasets():
        try:
            key = dataset_input(dataset)
        except UserError:
            continue
        if key in seen:
            continue
        seen.add(key)
        for name in MODELS:
            try:
                model = build_model(name, *key)
            except UserError:
                continue                     # an image model on sequences, or the other way round
            out.update((s.op, s.shape) for s in model.lower().specs(batch))
    return sorted(out)


def layer_variants(spec: KernelSpec, logits: bool) -> list[KernelSpec]:
    """A layer at every bit-width a scheme can give it: (qa, qw) for MAC layers, and the
    width of the codes it writes (the next layer's qa; int32 for the logits).  Adds and
    rescales (and the transformer steps of harness.spec.CODE_OPS) read one code and write
    another; softmax writes 8-bit probabilities; pools and copies keep theirs."""
    if spec.op in CODE_OPS:
        return [replace(spec, qa=a, out_bits=o) for a in BITS for o in BITS]
    if spec.op == "softmax":
        return [replace(spec, qa=a) for a in BITS]
    if not spec.has_weights:
        return [replace(spec, qa=b, out_bits=b) for b in BITS]
    outs = (0,) if logits else BITS
    return [replace(spec, qa=a, qw=w, out_bits=o) for a in BITS for w in BITS for o in outs]


def model_layer_specs(model) -> list[KernelSpec]:
    """Every timed step a scheme of ``model`` can run, as layer-mode specs.

    Steps come from the all-8x8 lowering, plus the Rescale a scheme inserts where a
    tensor read by several steps (a branch point: a residual block's input, a fire
    module's squeeze) is read at another code than its producer wrote, at any pair of
    widths (the lowering at one width has none)."""
    g = model.lower()
    out: dict[tuple, KernelSpec] = {}
    readers: dict[int, int] = {}
    for n in g.nodes:
        for i in set(n.inputs):
            readers[i] = readers.get(i, 0) + 1
    rescaled = {g.type_of(i).numel for i, k in readers.items() if k > 1}
    for n in g.timed_nodes:
        spec = g.spec(n, 1, "layer")
        if spec is not None:
            for v in layer_variants(spec, n.type.bits == 0):
                out.setdefault(v.key(), v)
    for e in sorted(rescaled):
        for v in layer_variants(KernelSpec("rescale", (1, e), 8, 0, "layer", 8), False):
            out.setdefault(v.key(), v)
    return list(out.values())


def zoo_layer_specs() -> list[KernelSpec]:
    """Layer-mode specs of every layer of every built-in model at its default input (plan
    ``zoo`` in layer mode; every dataset shape times every bit-width would be far too many)."""
    out: dict[tuple, KernelSpec] = {}
    for m in (get_model(name, "digits") for name in sorted(MODELS)):
        for s in model_layer_specs(m):
            out.setdefault(s.key(), s)
    return sorted(out.values())


def one_model_layer_specs(arg: str) -> list[KernelSpec]:
    """Plan ``model:NAME[:DATASET]``: the layer-mode specs of one model."""
    name, _, dataset = arg.partition(":")
    if name not in MODELS:
        raise UserError(f"plan model:{arg} names no built-in model; use one of {', '.join(sorted(MODELS))}.")
    return sorted(model_layer_specs(get_model(name, dataset or "digits")))
