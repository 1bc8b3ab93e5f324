"""The proxy file (``"format": "mico-proxy", "version": 1``) as dataclasses, and the
training set (`TrainingSet`: kernels + latencies of one build and op) it stores.

A proxy file never holds a pickled model: per op it holds the configuration,
the training data (spec dicts + values) with a sha256 digest of it, the CV
metrics, the unit and the target; `proxy.model` refits from it with the same
random_state, which reproduces the predictions (``check`` holds a few of them
to verify that)::

    {"format": "mico-proxy", "version": 1,
     "proxies": {"matmul": {config, unit, target: {name, fingerprint}, n_train, n_shapes,
                            cv, training: {specs, values}, digest, check, versions}, ...}}

Reading validates everything a refit relies on, with one sentence per problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from harness.documents import read_document, write_document
from harness.errors import MicoError
from harness.spec import ALL_OPS, KernelSpec

if TYPE_CHECKING:
    from .model import LatencyProxy

FORMAT = "mico-proxy"
VERSION = 1
WHAT = "mico proxy file"
#: the LatencyProxy parameters a config may hold
PARAMS = ("op", "features", "model", "random_state", "lookup", "family", "transfer")


def training_digest(specs: Sequence[KernelSpec], values: Sequence[float]) -> str:
    """sha256 over the canonical JSON of the training data (spec dicts + values)."""
    payload = json.dumps(
        {"specs": [s.to_dict() for s in specs], "values": [float(v) for v in values]},
        sort_keys=True, separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class TrainingSet:
    """The kernels and latencies of one target build and op: what a proxy is fit on."""

    op: str
    specs: list[KernelSpec]
    values: list[float]
    unit: str | None = None
    target: str | None = None
    fingerprint: str | None = None

    @classmethod
    def from_rows(cls, rows: Iterable, op: str) -> "TrainingSet":
        """From store `Measurement`s (`Store.rows`): the successful `op` rows, of one build and unit."""
        rows = [m for m in rows if m.spec.op == op and m.status == "ok" and m.median is not None]
        fps = sorted({m.fingerprint for m in rows})
        if len(fps) > 1:
            raise MicoError(f"the {op} rows mix {len(fps)} target builds ({', '.join(f[:12] for f in fps)}); "
                            "fit one proxy per build.")
        units = sorted({str(m.unit) for m in rows if m.unit is not None})
        if len(units) > 1:
            raise MicoError(f"the {op} rows mix the units {', '.join(units)}; fit one proxy per unit.")
        names = sorted({m.target for m in rows if m.target is not None})
        return cls(op, [m.spec for m in rows], [float(m.median) for m in rows], units[0] if units else None,
                   names[0] if len(names) == 1 else None, fps[0] if fps else None)

    @property
    def n_shapes(self) -> int:
        return len({s.shape for s in self.specs})

    def fit(self, features: str = "cbops", model: str = "linear", *, cv: bool = True,
            random_state: int = 0, family: str | None = None) -> "LatencyProxy":
        """A LatencyProxy of this op fit on this set (with its unit, target and fingerprint)."""
        from .model import LatencyProxy

        return LatencyProxy(self.op, features, model, random_state, family=family).fit(
            self.specs, self.values, cv=cv, unit=self.unit, target=self.target, fingerprint=self.fingerprint)


@dataclass
class ProxyEntry:
    """One fitted proxy of a proxy file: its configuration and training set, enough to refit it exactly."""

    config: dict
    training: TrainingSet
    cv: dict | None = None
    check: list[float] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    digest: str = ""

    def __post_init__(self):
        if not self.digest:
            self.digest = training_digest(self.training.specs, self.training.values)

    def to_dict(self) -> dict:
        t = self.training
        return {
            "config": dict(self.config),
            "unit": t.unit,
            "target": {"name": t.target, "fingerprint": t.fingerprint},
            "n_train": len(t.specs),
            "n_shapes": t.n_shapes,
            "cv": self.cv,
            "training": {"specs": [s.to_dict() for s in t.specs], "values": [float(v) for v in t.values]},
            "digest": self.digest,
            "check": [float(v) for v in self.check],
            "versions": dict(self.versions),
        }

    @classmethod
    def from_dict(cls, entry, op: str, where: str) -> "ProxyEntry":
        """The entry of `op`; `where` ("FILE: the matmul proxy") starts every error sentence."""
        try:
            if not isinstance(entry, dict):
                raise TypeError("not an object")
            config = entry["config"]
            if not isinstance(config, dict) or set(config) - set(PARAMS):
                raise TypeError("bad config")
            if config.get("op", op) != op:
                raise ValueError("op mismatch")
            training = entry["training"]
            spec_dicts, values = training["specs"], training["values"]
            if not isinstance(spec_dicts, list) or not isinstance(values, list) or len(spec_dicts) != len(values):
                raise TypeError("bad training data")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise TypeError("non-numeric values")
            tgt = entry.get("target") or {}
            if not isinstance(tgt, dict):
                raise TypeError("bad target")
            digest = entry["digest"]
            cv = entry.get("cv")
            if cv is not None and not isinstance(cv, dict):
                raise TypeError("bad cv")
            unit = entry.get("unit")
            check = entry.get("check") or []
            if not isinstance(check, list) or not all(isinstance(v, (int, float)) for v in check):
                check = []
            versions = entry.get("versions") if isinstance(entry.get("versions"), dict) else {}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MicoError(f"{where} is malformed; refit it.") from None
        try:
            specs = [KernelSpec.from_dict(d) for d in spec_dicts]
        except MicoError as e:
            raise MicoError(f"{where} has an invalid kernel: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MicoError(f"{where} has a malformed kernel in its training data; refit it.") from None
        if any(s.op != op for s in specs):
            raise MicoError(f"{where} has training kernels of another op; refit it.")
        if digest != training_digest(specs, values):
            raise MicoError(f"{where} does not match its sha256 digest, so the file was modified or corrupted; "
                            "refit it.")
        data = TrainingSet(op, specs, [float(v) for v in values], None if unit is None else str(unit),
                           tgt.get("name"), tgt.get("fingerprint"))
        return cls(config={**config, "op": op}, training=data, cv=cv, check=[float(v) for v in check],
                   versions=versions, digest=digest)


@dataclass
class ProxyFile:
    """A proxy file: one `ProxyEntry` per op."""

    proxies: dict[str, ProxyEntry]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "proxies": {op: e.to_dict() for op, e in self.proxies.items()}}

    @classmethod
    def from_dict(cls, doc: dict, path: str | Path) -> "ProxyFile":
        entries = doc.get("proxies")
        if not isinstance(entries, dict) or not entries:
            raise MicoError(f"{path} holds no proxies; refit them.")
        unknown = [k for k in entries if k not in ALL_OPS]
        if unknown:
            raise MicoError(f"{path} holds a proxy for unknown op {unknown[0]!r}; use one of {', '.join(ALL_OPS)}.")
        return cls({op: ProxyEntry.from_dict(e, op, f"{path}: the {op} proxy") for op, e in entries.items()})

    @classmethod
    def read(cls, path: str | Path) -> "ProxyFile":
        return cls.from_dict(read_document(path, FORMAT, VERSION, what=WHAT), path)

    def write(self, path: str | Path) -> Path:
        if not self.proxies:
            raise MicoError("there is no proxy to save.")
        return write_document(path, self.to_dict(), what="proxy file")
