"""The Target interface: build and run are separate steps (as in TVM).

A target owns its whole lifecycle (docs/targets.md):

- parameters: declared once in ``PARAMS`` (harness.params) and validated by
  the base constructor, so every target refuses the same bad input the same way;
- capabilities: `Target.capabilities()` says what it runs (kernels, generated C
  model images, layer-IR graphs), which bit-widths and how much memory -- callers
  read them here instead of probing attributes;
- `Target.build()` produces artefacts and the fingerprint that keys every
  measurement; it raises user errors (missing toolchain, failed compile);
- `Target.open(build)` boots one device and returns a `Session` that serves
  many kernel runs; run problems surface as typed `MeasureError`s that become
  error records in the store while the sweep goes on;
- `Target.session()` is the one way a command gets a session: available ->
  build -> open, with "not available" and "did not boot" turned into one
  sentence each, and the device closed (or, on any error or signal, killed)
  when the block ends.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

from .errors import BootError, MeasureError, TargetUnavailable, UnsupportedError
from .params import Param, fingerprint_params, validate_params
from .protocol import BITS, Client, Hello, KernelRun, LinkStats, ModelInfo, ModelRun, Transport
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



@dataclass(frozen=True)
class Capabilities:
    """What a target can do, declared on the target (never probed with getattr)."""

    model_images: bool = False   # runs generated C images: Session.load_model(image: bytes)
    ir_models: bool = False      # maps a layer-IR graph itself: Session.load_ir_model(graph)
    bits: tuple[int, ...] = BITS
    memory_bytes: int | None = None   # RAM for tensors / images, when the target knows it
    modes: tuple[str, ...] = ("kernel",)
    dcache_bytes: int = 0        # data cache a layer-mode measurement evicts first (0: none to evict)

    def to_dict(self) -> dict:
        return {"model_images": self.model_images, "ir_models": self.ir_models, "bits": list(self.bits),
                "memory_bytes": self.memory_bytes, "modes": list(self.modes), "dcache_bytes": self.dcache_bytes}


MODEL_IMAGES = Capabilities(model_images=True, modes=("kernel", "layer", "model"))


class Session:
    """A booted device -- or a model of one -- that runs kernels.

    The base holds what every session has (the HELLO record, the link
    statistics a measurement reports) and refuses models; `DeviceSession` adds
    the byte stream and protocol client of a device that speaks the bench
    protocol.  A session without a byte stream (an analytical model) is a plain
    subclass of this one.
    """

    def __init__(self, hello: Hello | None):
        self.hello = hello
        self.build_result: BuildResult | None = None     # set by Target.session()
        self._stats = LinkStats()

    @property
    def link_stats(self) -> LinkStats:
        """Retries and reconnects so far (always zero without a link)."""
        return self._stats

    @property
    def target_id(self) -> str:
        return self.hello.target_id if self.hello is not None else "the target"

    def supports(self, spec: KernelSpec) -> bool:
        return spec.op in self.hello.ops and (spec.qa, spec.qw) in self.hello.pairs

    def check_supported(self, spec: KernelSpec) -> None:
        if not self.supports(spec):
            raise UnsupportedError(f"{self.target_id} does not support {spec.op} {spec.qa}x{spec.qw}")

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        """One kernel, `repeats` timed runs after `warmup`; a session that runs only models refuses."""
        raise UnsupportedError(f"{self.target_id} runs models only, not single kernels")

    def load_model(self, image: bytes) -> ModelInfo:
        """Load a generated C model image (targets with ``capabilities().model_images``)."""
        raise UnsupportedError(f"{self.target_id} does not run generated model images.")

    def load_ir_model(self, graph) -> ModelInfo:
        """Map a layer-IR graph onto the device (targets with ``capabilities().ir_models``)."""
        raise UnsupportedError(f"{self.target_id} does not map layer-IR models itself.")

    def run_model(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        raise UnsupportedError(f"{self.target_id} has no model loaded that it could run.")

    def close(self) -> None:
        """End the session politely (say goodbye, let the device exit)."""

    def abort(self) -> None:
        """End the session now: on errors and signals nobody waits for a goodbye."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DeviceSession(Session):
    """A booted device speaking the bench protocol over a byte stream."""

    def __init__(self, transport: Transport, client: Client, hello: Hello | None):
        super().__init__(hello)
        self.transport = transport
        self.client = client

    @property
    def link_stats(self) -> LinkStats:
        return self.client.stats

    def run_kernel(self, spec: KernelSpec, seed: int, warmup: int, repeats: int,
                   timeout: float | None = None) -> KernelRun:
        self.check_supported(spec)
        return self.client.run_kernel(spec.op, spec.shape, spec.qa, spec.qw, seed, warmup, repeats, timeout)

    def load_model(self, image: bytes) -> ModelInfo:
        return ModelInfo.of(self.client.load_model(image))

    def run_model(self, inputs: bytes, timeout: float | None = None) -> ModelRun:
        return self.client.run_model(inputs, timeout=timeout)

    def close(self) -> None:
        try:
            self.client.bye()
        except MeasureError:
            pass
        self.transport.close()

    def abort(self) -> None:
        kill = getattr(self.transport, "abort", None)   # Transport is a Protocol: abort() is optional
        if kill is not None:
            kill()
        else:
            self.transport.close()


class Target(ABC):
    """A kind of device.  Subclasses set `name`, `description`, `deterministic`,
    `PARAMS` and `CAPABILITIES` (or override `capabilities()` when a parameter
    changes them)."""

    name: str = "?"
    description: str = ""
    deterministic: bool = False     # simulators: one run + one identical repeat
    timer_unit: str = "cycles"
    kernel_timeout: float = 120.0   # seconds of wall time for one RUN_KERNEL
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    CAPABILITIES: ClassVar[Capabilities] = Capabilities()

    def __init__(self, **params):
        self.params: dict[str, Any] = validate_params(self.PARAMS, params, owner=f"target {self.name}")

    def capabilities(self) -> Capabilities:
        return self.CAPABILITIES

    def fingerprint_params(self) -> dict:
        """The parameter values hashed into the fingerprint as given (``Param.in_fingerprint``)."""
        return fingerprint_params(self.PARAMS, self.params)

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") or (False, one sentence saying why and how to fix it)."""

    @abstractmethod
    def build(self) -> BuildResult:
        """Build (or fetch from the cache) everything needed to boot; raise UserError on failure."""

    @abstractmethod
    def open(self, build: BuildResult) -> Session:
        """Boot one device and say HELLO; raise MeasureError if it does not come up."""

    @contextmanager
    def session(self, build: BuildResult | None = None) -> Iterator[Session]:
        """available -> build (unless given) -> open, as one block.

        Raises TargetUnavailable or BootError (one sentence each) before the
        block runs; the block gets the session with ``session.build_result``
        set.  A block that ends normally closes the session; one that ends with
        an exception (a failed run, Ctrl-C, SIGTERM) kills the device at once.
        """
        ok, why = self.available()
        if not ok:
            raise TargetUnavailable(f"target {self.name} is not available: {why}")
        if build is None:
            build = self.build()
        try:
            s = self.open(build)
        except MeasureError as e:
            raise BootError(f"target {self.name} did not boot: {e}") from None
        s.build_result = build
        with s:
            yield s

    def cluster_resources(self) -> dict[str, float]:
        """Dask worker resources a spec of this target needs (harness.cluster): none for a
        simulator or the host, which any worker can run; a physical device names itself."""
        return {}

    def model_toolchain(self) -> ModelToolchain:
        raise UnsupportedError(f"target {self.name} cannot run generated models")

    def describe(self) -> dict:
        ok, why = self.available()
        return {"name": self.name, "description": self.description, "available": ok, "reason": why,
                "deterministic": self.deterministic, "unit": self.timer_unit,
                "capabilities": self.capabilities().to_dict(), "params": [p.describe() for p in self.PARAMS]}
