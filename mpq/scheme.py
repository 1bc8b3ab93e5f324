"""scheme.json (+ its weights file): what ``mico search`` writes and deploy reads.

The document is `SchemeDoc` (``"format": "mico-scheme", "version": 1``)::

    model, dataset, data_dir, seed, scale_policy
    layers:  [{name, kind ('conv2d'|'linear'), qa, qw, spec (KernelSpec dict, N=batch)}]
    input:   {shape [C,H,W], offset, bits, scale}
    accuracy: {float, fakequant, integer, search_validation, split}   (test split)
    predicted_latency: {unit, total, per_layer[, other_ops]}
    budget: {text, value, unit}
    memory: {budgets, predicted, generated} weight_bytes / activation_bytes / ram_bytes
    bops, size_bits, searcher, evaluations, pareto [{bits, accuracy, latency}],
    candidates [{bits, accuracy, latency, feasible}], proxy, train {...}, wall_s
    weights: file name of the state dict, relative to the scheme file (<stem>.pt)

Keys a newer writer adds are kept (``extra``) so a read-modify-write loses
nothing.  The weights are the state dict of the BN-folded quant model (fake
quant on, observers included); always loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.documents import atomic_write, dump_json, read_document
from harness.errors import MicoError
from harness.spec import KernelSpec, check_bits
from kernels.numeric import SPEC_BITS

from .fold import fold_model
from .integer import IntegerModel, build_integer_model
from .models import QuantModel, get_model
from .quant import enable_fake_quant, set_scale_policy
from .train import prepare_lsq_state

FORMAT = "mico-scheme"
VERSION = 1
WHAT = "mico scheme file"


@dataclass
class SchemeLayer:
    """One quantised layer of a scheme: its bit-widths and kernel."""

    name: str
    kind: str
    qa: int
    qw: int
    spec: KernelSpec | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "qa": self.qa, "qw": self.qw,
                "spec": self.spec.to_dict() if self.spec is not None else None}

    @classmethod
    def from_dict(cls, d: Any, where: str, i: int) -> "SchemeLayer":
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise MicoError(f"{where}: layer {i} is not an object with a 'name'.")
        name = d["name"]
        try:
            qa = check_bits("qa", d.get("qa"), SPEC_BITS)
            qw = check_bits("qw", d.get("qw"), SPEC_BITS)
        except MicoError as e:
            raise MicoError(f"{where}: layer {name!r} has {str(e).rstrip('.')}.") from None
        spec = None
        if d.get("spec") is not None:
            try:
                spec = KernelSpec.from_dict(d["spec"])
            except MicoError as e:
                raise MicoError(f"{where}: layer {name!r} has an invalid kernel: {e}") from None
            except (KeyError, TypeError, ValueError, AttributeError):
                raise MicoError(f"{where}: layer {name!r} has a malformed kernel spec.") from None
            if (spec.qa, spec.qw) != (qa, qw):
                raise MicoError(f"{where}: layer {name!r} says {qa}x{qw} but its kernel spec says "
                                f"{spec.qa}x{spec.qw}; the two must agree.")
        kind = d.get("kind")
        if kind is None and spec is not None:
            kind = "conv2d" if spec.op == "conv2d" else "linear"
        return cls(name, str(kind or ""), qa, qw, spec)


#: optional fields: name -> (JSON types accepted, default factory)
_OPTIONAL: dict[str, tuple[tuple[type, ...], Any]] = {
    "data_dir": ((str,), lambda: None),
    "seed": ((int,), lambda: 0),
    "scale_policy": ((str,), lambda: "mico"),
    "input": ((dict,), lambda: None),
    "accuracy": ((dict,), dict),
    "predicted_latency": ((dict,), lambda: None),
    "budget": ((dict,), lambda: None),
    "bops": ((int, float), lambda: None),
    "size_bits": ((int, float), lambda: None),
    "searcher": ((str,), lambda: None),
    "evaluations": ((int,), lambda: None),
    "pareto": ((list,), list),
    "candidates": ((list,), list),
    "proxy": ((str,), lambda: None),
    "train": ((dict,), lambda: None),
    "wall_s": ((int, float), lambda: None),
    "memory": ((dict,), lambda: None),
}


@dataclass
class SchemeDoc:
    """The scheme document: per-layer bit-widths chosen by a search, and how they were chosen."""

    model: str
    dataset: str
    layers: list[SchemeLayer]
    weights: str = ""
    data_dir: str | None = None
    seed: int = 0
    scale_policy: str = "mico"
    input: dict | None = None
    accuracy: dict = field(default_factory=dict)
    predicted_latency: dict | None = None
    budget: dict | None = None
    bops: float | None = None
    size_bits: float | None = None
    searcher: str | None = None
    evaluations: int | None = None
    pareto: list = field(default_factory=list)
    candidates: list = field(default_factory=list)
    proxy: str | None = None
    train: dict | None = None
    wall_s: float | None = None
    memory: dict | None = None      # weight / RAM bytes: budgets, predicted, of the generated C
    extra: dict = field(default_factory=dict)

    @property
    def bits(self) -> tuple[tuple[int, int], ...]:
        return tuple((l.qa, l.qw) for l in self.layers)

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def to_dict(self) -> dict:
        d: dict = {"format": FORMAT, "version": VERSION, "model": self.model, "dataset": self.dataset}
        for k in ("data_dir", "seed", "scale_policy"):
            d[k] = getattr(self, k)
        d["layers"] = [l.to_dict() for l in self.layers]
        for k in _OPTIONAL:
            d.setdefault(k, getattr(self, k))
        d["weights"] = self.weights
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style read of a field, None counting as absent (for code written against the dict document)."""
        v = self.to_dict().get(key)
        return default if v is None else v

    @classmethod
    def from_dict(cls, d: dict, where: str = "the scheme") -> "SchemeDoc":
        """The document of a parsed JSON object; `where` ("scheme file X") starts every error sentence."""
        if not isinstance(d, dict):
            raise MicoError(f"{where} is not a JSON object.")
        for key in ("model", "dataset", "layers", "weights"):
            if key not in d:
                raise MicoError(f"{where} lacks the field {key!r}.")
        for key in ("model", "dataset", "weights"):
            if not isinstance(d[key], str):
                raise MicoError(f"{where}: {key!r} is not a string.")
        if not isinstance(d["layers"], list) or not d["layers"]:
            raise MicoError(f"{where}: 'layers' is not a non-empty list.")
        layers = [SchemeLayer.from_dict(l, where, i) for i, l in enumerate(d["layers"])]
        kw = {}
        for k, (types, default) in _OPTIONAL.items():
            v = d.get(k)
            if v is None:
                kw[k] = default()
            elif isinstance(v, bool) or not isinstance(v, types):
                raise MicoError(f"{where}: {k!r} is a {type(v).__name__}, not a {types[0].__name__}.")
            else:
                kw[k] = v
        known = {"format", "version", "model", "dataset", "layers", "weights", *_OPTIONAL}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(model=d["model"], dataset=d["dataset"], layers=layers, weights=d["weights"], extra=extra, **kw)


def weights_path_for(scheme_path: str | Path) -> Path:
    p = Path(scheme_path)
    return p.with_name(p.stem + ".pt")


def save_scheme(path: str | Path, doc: SchemeDoc | dict, model: QuantModel) -> Path:
    """Write ``model``'s state dict to ``<stem>.pt`` and the document (its
    ``weights`` set to that file) to ``path``, each atomically; returns the JSON path.

    A dict document (the fields of `SchemeDoc`) is accepted and validated.
    """
    path = Path(path)
    wpath = weights_path_for(path)
    if isinstance(doc, dict):
        doc = SchemeDoc.from_dict({**doc, "weights": wpath.name}, "the scheme to save")
    doc = dataclasses.replace(doc, weights=wpath.name)
    text = dump_json(doc.to_dict())
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write(wpath, buf.getvalue(), what="scheme weights")
    atomic_write(path, text, what="scheme file")
    return path


def read_scheme(path: str | Path) -> SchemeDoc:
    """The validated scheme document of file `path`."""
    raw = read_document(path, FORMAT, VERSION, what=WHAT)
    return SchemeDoc.from_dict(raw, f"scheme file {path}")


def _as_doc(doc: SchemeDoc | dict) -> SchemeDoc:
    if isinstance(doc, SchemeDoc):
        return doc
    return SchemeDoc.from_dict({"weights": "", **doc})


def scheme_bits(doc: SchemeDoc | dict) -> tuple[tuple[int, int], ...]:
    return _as_doc(doc).bits


def model_from_scheme(doc: SchemeDoc | dict, weights: str | Path) -> QuantModel:
    """The BN-folded quant model of a scheme with its weights, in eval mode."""
    doc = _as_doc(doc)
    model = get_model(doc.model, doc.dataset)
    fold_model(model, structure_only=True)
    if doc.layer_names != model.layer_names:
        raise MicoError(f"the scheme's layers {doc.layer_names} do not match model {doc.model!r} "
                        f"({model.layer_names}).")
    model.set_scheme(doc.bits)
    set_scale_policy(model, doc.scale_policy)
    enable_fake_quant(model, True)
    weights = Path(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MicoError(f"scheme weights {weights} do not exist; keep them next to the scheme file.") from None
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file
        raise MicoError(f"cannot load scheme weights {weights} ({type(e).__name__}).") from None
    prepare_lsq_state(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise MicoError(f"scheme weights {weights} do not fit model {doc.model!r}: {str(e).splitlines()[0]}") from None
    model.eval()
    return model


def integer_model_from_scheme(path_or_doc: str | Path | SchemeDoc | dict,
                              weights: str | Path | None = None) -> IntegerModel:
    """Build the IntegerModel of a scheme file (or of a loaded document + weights path)."""
    if isinstance(path_or_doc, (SchemeDoc, dict)):
        if weights is None:
            raise MicoError("a scheme document needs the path of its weights file.")
        return build_integer_model(model_from_scheme(path_or_doc, weights))
    return load_scheme(path_or_doc)[1]


def load_scheme(path: str | Path) -> tuple[QuantModel, IntegerModel, SchemeDoc]:
    """(quant model in eval mode with loaded weights, IntegerModel, scheme document)."""
    path = Path(path)
    doc = read_scheme(path)
    model = model_from_scheme(doc, path.parent / doc.weights)
    return model, build_integer_model(model), doc
