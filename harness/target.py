"""The Target interface: build and run are separate steps (as in TVM).

`Target.build()` produces artefacts and the fingerprint that keys every
measurement; it raises user errors (missing toolchain, failed compile).
`Target.open(build)` boots one device and returns a `Session` that serves many
kernel runs; run problems surface as typed `MeasureError`s that become error
records in the store while the sweep goes on.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from .errors import MeasureError, UnsupportedError
from .protocol import Client, Hello, KernelRun, ModelRun, Transport
from .spec import KernelSpec


@dataclass
class BuildResult:
    """Everything a worker needs to boot the target; must be picklable/JSON-able."""

    target: str
    fingerprint: str
    artifacts: dict[str, str]
    info: dict[str, Any] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict:
        return {"target": self.target, "fingerprint": self.fingerprint, "artifacts": self.artifacts,
                "info": self.info, "cached": self.cached}


def fingerprint_of(parts: dict) -> str:
    """Hash of everything that changes a number (sources, flags, tool versions, parameters)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ModelToolchain:
    """How to compile a generated model blob for this target (used by kernels/ir/codegen.py)."""

    cc: list[str]
    cflags: list[str]
    objcopy: str
    triple: str


class Session:
    """A booted device speaking the bench protocol."""

    def __init__(self, transport: Transport, client: Client, hello: Hello):
        self.transport = transport
        self.client = client
        self.hello = hello

    def supports(self, spec: KernelSpec) -> bool:
        return spec.op in self.hello.ops and (spec.qa, spec.qw) in self.hello.pairs

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        if not self.supports(spec):
            raise UnsupportedError(f"{self.hello.target_id} does not support {spec.op} {spec.qa}x{spec.qw}")
        return self.client.run_kernel(spec.op, spec.shape, spec.qa, spec.qw, seed, warmup, repeats, timeout)

    def load_model(self, blob: bytes) -> dict:
        return self.client.load_model(blob)

    def run_model(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        return self.client.run_model(inputs, timeout=timeout)

    def close(self) -> None:
        try:
            self.client.bye()
        except MeasureError:
            pass
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Target(ABC):
    """A kind of device.  Subclasses set `name`, `description`, `deterministic`."""

    name: str = "?"
    description: str = ""
    deterministic: bool = False     # simulators: one run + one identical repeat
    timer_unit: str = "cycles"
    kernel_timeout: float = 120.0   # seconds of wall time for one RUN_KERNEL

    def __init__(self, **params):
        self.params = params

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, one sentence saying why and how to fix it)."""

    @abstractmethod
    def build(self) -> BuildResult:
        """Build (or fetch from the cache) everything needed to boot; raise UserError on failure."""

    @abstractmethod
    def open(self, build: BuildResult) -> Session:
        """Boot one device and say HELLO; raise MeasureError if it does not come up."""

    def model_toolchain(self) -> ModelToolchain:
        raise UnsupportedError(f"target {self.name} cannot run generated models")

    def describe(self) -> dict:
        ok, why = self.available()
        return {"name": self.name, "description": self.description, "available": ok, "reason": why,
                "deterministic": self.deterministic, "unit": self.timer_unit}
