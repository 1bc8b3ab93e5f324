"""deploy.json (``"format": "mico-deploy", "version": 1``) as dataclasses.

What `mico deploy` measured for a scheme on a target: bit-exactness of the
logits against the integer reference, accuracies, and measured vs predicted
latency per layer and end to end::

    target, fingerprint, scheme, model, dataset
    n_images, bit_exact, mismatches (count), max_abs_diff, first_mismatch
    accuracy: {target, integer_reference, fakequant}
    latency:  {unit, measured_total_median, measured_total_iqr, predicted_total, error_pct,
               predicted_covers, proxy, proxy_note, measured_modelled_layers, modelled_error_pct,
               layers: [{name, kind, qa, qw, spec, measured_median, measured_iqr, predicted, error_pct}]}
    image_bytes, scratch_bytes, compile_s, bits [[qa, qw], ...]

Every field but ``format``/``version`` may be absent (a reader shows what is
there); a present field of the wrong type is refused with one sentence.
``mismatches`` may also be the list of mismatching image indices.  Keys this
version does not know are kept (``extra``).  This module imports no torch, so
reports can read deploy files cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.documents import read_document, write_document
from harness.errors import MicoError
from harness.spec import KernelSpec

FORMAT = "mico-deploy"
VERSION = 1
WHAT = "deploy file"


class _Bad(Exception):
    """A malformed field; turned into one MicoError sentence naming the file."""


def _num(d: dict, key: str, where: str = "") -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise _Bad(f"{where}has a non-numeric {key!r}")
    return v


def _int(d: dict, key: str, where: str = "") -> int | None:
    v = _num(d, key, where)
    if v is not None and v != int(v):
        raise _Bad(f"{where}has a non-integer {key!r}")
    return None if v is None else int(v)


def _str(d: dict, key: str) -> str | None:
    v = d.get(key)
    return None if v is None else str(v)


def _obj(d: dict, key: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _Bad(f"{key!r} is not an object")
    return v


@dataclass
class DeployLayer:
    """One timed layer of the deployed model (conv, linear, pool, ...)."""

    name: str
    kind: str = ""
    qa: int | None = None
    qw: int | None = None
    spec: KernelSpec | None = None
    measured_median: float | None = None
    measured_iqr: float | None = None
    predicted: float | None = None
    error_pct: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "qa": self.qa, "qw": self.qw,
                "spec": self.spec.to_dict() if self.spec is not None else None,
                "measured_median": self.measured_median, "measured_iqr": self.measured_iqr,
                "predicted": self.predicted, "error_pct": self.error_pct}

    @classmethod
    def from_dict(cls, d: Any, i: int) -> "DeployLayer":
        if not isinstance(d, dict):
            raise _Bad("'latency.layers' is not a list of objects")
        w = f"layer {i} "
        spec = None
        if d.get("spec") is not None:
            try:
                spec = KernelSpec.from_dict(d["spec"])
            except (MicoError, KeyError, TypeError, ValueError, AttributeError):
                raise _Bad(f"{w}has a malformed kernel spec") from None
        return cls(name=str(d.get("name", "")), kind=str(d.get("kind") or ""), qa=_int(d, "qa", w),
                   qw=_int(d, "qw", w), spec=spec, measured_median=_num(d, "measured_median", w),
                   measured_iqr=_num(d, "measured_iqr", w), predicted=_num(d, "predicted", w),
                   error_pct=_num(d, "error_pct", w))


@dataclass
class DeployAccuracy:
    target: float | None = None
    integer_reference: float | None = None
    fakequant: float | None = None

    def to_dict(self) -> dict:
        return {k.name: getattr(self, k.name) for k in fields(self) if getattr(self, k.name) is not None}


@dataclass
class DeployLatency:
    unit: str | None = None
    measured_total_median: float | None = None
    measured_total_iqr: float | None = None
    predicted_total: float | None = None
    error_pct: float | None = None
    predicted_covers: str | None = None
    proxy: str | None = None
    proxy_note: str | None = None
    measured_modelled_layers: float | None = None
    modelled_error_pct: float | None = None
    layers: list[DeployLayer] = field(default_factory=list)
    mode: str | None = None          # the measurement mode the predictions come from (kernel | layer)

    def to_dict(self) -> dict:
        d = {k.name: getattr(self, k.name) for k in fields(self) if k.name != "layers"}
        d["layers"] = [l.to_dict() for l in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DeployLatency":
        layers = d.get("layers", [])
        if not isinstance(layers, list):
            raise _Bad("'latency.layers' is not a list of objects")
        nums = {k: _num(d, k) for k in ("measured_total_median", "measured_total_iqr", "predicted_total", "error_pct",
                                        "measured_modelled_layers", "modelled_error_pct")}
        strs = {k: _str(d, k) for k in ("unit", "predicted_covers", "proxy", "proxy_note", "mode")}
        return cls(**nums, **strs, layers=[DeployLayer.from_dict(l, i) for i, l in enumerate(layers)])


@dataclass
class DeployReport:
    """The result of deploying a scheme on a target (deploy.json)."""

    target: str | None = None
    fingerprint: str | None = None
    scheme: str | None = None
    model: str | None = None
    dataset: str | None = None
    n_images: int | None = None
    bit_exact: bool | None = None
    mismatches: int | None = None
    mismatch_ids: list[int] = field(default_factory=list)
    max_abs_diff: int | None = None
    first_mismatch: int | None = None
    accuracy: DeployAccuracy = field(default_factory=DeployAccuracy)
    latency: DeployLatency = field(default_factory=DeployLatency)
    image_bytes: int | None = None
    scratch_bytes: int | None = None
    compile_s: float | None = None
    bits: list[list[int]] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.bit_exact)

    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, "target": self.target, "fingerprint": self.fingerprint,
             "scheme": self.scheme, "model": self.model, "dataset": self.dataset, "n_images": self.n_images,
             "bit_exact": self.bit_exact, "mismatches": self.mismatches, "max_abs_diff": self.max_abs_diff,
             "first_mismatch": self.first_mismatch, "accuracy": self.accuracy.to_dict(),
             "latency": self.latency.to_dict(), "image_bytes": self.image_bytes,
             "scratch_bytes": self.scratch_bytes, "compile_s": self.compile_s, "bits": [list(b) for b in self.bits]}
        if self.mismatch_ids:
            d["mismatch_ids"] = list(self.mismatch_ids)
        for k, v in self.extra.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "the deploy report") -> "DeployReport":
        """The report of a parsed JSON object; `where` ("deploy file X") starts every error sentence."""
        try:
            if not isinstance(d, dict):
                raise _Bad("it is not a JSON object")
            if d.get("bit_exact") is not None and not isinstance(d["bit_exact"], bool):
                raise _Bad("'bit_exact' is not true or false")
            mm = d.get("mismatches")
            ids = d.get("mismatch_ids") or []
            if isinstance(mm, list):
                ids, count = mm, len(mm)
            elif mm is None:
                count = 0 if d.get("bit_exact") is True else (len(ids) or None)
            elif isinstance(mm, bool) or not isinstance(mm, (int, float)) or mm != int(mm):
                raise _Bad("'mismatches' is neither a count nor a list of images")
            else:
                count = int(mm)
            if not isinstance(ids, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
                raise _Bad("the mismatching images are not a list of indices")
            acc = _obj(d, "accuracy")
            accuracy = DeployAccuracy(**{k: _num(acc, k) for k in ("target", "integer_reference", "fakequant")})
            latency = DeployLatency.from_dict(_obj(d, "latency"))
            bits = d.get("bits") or []
            if not isinstance(bits, list) or not all(isinstance(b, list) and len(b) == 2 for b in bits):
                raise _Bad("'bits' is not a list of [qa, qw] pairs")
            known = {f.name for f in fields(cls)} | {"format", "version"}
            return cls(
                target=_str(d, "target"), fingerprint=_str(d, "fingerprint"), scheme=_str(d, "scheme"),
                model=_str(d, "model"), dataset=_str(d, "dataset"), n_images=_int(d, "n_images"),
                bit_exact=d.get("bit_exact"), mismatches=count, mismatch_ids=list(ids),
                max_abs_diff=_int(d, "max_abs_diff"), first_mismatch=_int(d, "first_mismatch"),
                accuracy=accuracy, latency=latency, image_bytes=_int(d, "image_bytes"),
                scratch_bytes=_int(d, "scratch_bytes"), compile_s=_num(d, "compile_s"), bits=[list(b) for b in bits],
                extra={k: v for k, v in d.items() if k not in known},
            )
        except _Bad as e:
            raise MicoError(f"{where} is malformed: {e}.") from None

    @classmethod
    def read(cls, path: str | Path) -> "DeployReport":
        """The report of deploy file `path` (format and version checked)."""
        return cls.from_dict(read_document(path, FORMAT, VERSION, what=WHAT), f"{WHAT} {path}")

    def write(self, path: str | Path) -> Path:
        """Write the report atomically (a failure leaves any previous file intact)."""
        return write_document(path, self.to_dict(), what=WHAT)
