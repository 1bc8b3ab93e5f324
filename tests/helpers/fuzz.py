"""The protocol fuzzer: Hypothesis-generated sequences of frames against a
running firmware (the ASan/UBSan host build), each reply checked against the
oracle (helpers/oracle.py).

A case is a list of actions: RUN_KERNEL with hostile payloads, model loads of
genuine and doctored images, raw MODEL_DATA / MODEL_COMMIT / RUN_MODEL,
HELLO, RESET, exact duplicates (the reply cache), unknown request types and
framing garbage.  Findings are: a dead or silent firmware, a sanitizer
report, a reply that is not the one the oracle predicts (an impossible shape
answered OK, a wrong checksum, a doctored image accepted).

Two things are never sent: BYE (it ends the firmware) and RUN_MODEL after a
commit whose header lies about the code it describes (an entry that is not
the entry, buffers smaller than the code uses): a model is code the host
built, and the firmware runs it as such.  Valid kernels whose work exceeds
WORK_CAP MACs are not sent either (they are correct, only slow); they are
counted as skipped.  Accepted kernels whose NumPy reference would need more
than REFERENCE_CAP bytes are sent and checked for their output count only
(counted as unverified).
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import strategies as st

from harness import protocol as P
from harness.errors import UserError
from harness.spec import MAX_DIM, KernelSpec
from kernels import reference

from . import oracle, strategies as S, tiny_model
from .link import RawLink, Reply

WORK_CAP = 2_000_000     # MACs x runs of one RUN_KERNEL the fuzzer lets through
REFERENCE_CAP = 64 << 20 # bytes the NumPy reference may take to check one reply
VERDICTS = {oracle.OK: "ok", P.ERR_BAD_REQUEST: "bad_request", P.ERR_UNSUPPORTED: "unsupported",
            P.ERR_DOES_NOT_FIT: "does_not_fit"}


class Finding(AssertionError):
    """The firmware did something the oracle says it must not."""


# ---- actions ----------------------------------------------------------------------

@st.composite
def load_plans(draw) -> dict:
    variant = draw(st.sampled_from(("genuine", "genuine", "header", "header", "truncated", "huge", "tail")))
    return {"variant": variant,
            "mutation": draw(S.header_mutations()) if variant == "header" else {},
            "chunk": draw(st.one_of(st.sampled_from((320, 4096, 16376)), st.sampled_from((320, 4096)),
                                    st.integers(1, 400))),
            "crc_ok": draw(st.integers(0, 9)) > 0,
            "cut": draw(st.integers(1, 300)),
            "tail": draw(st.binary(min_size=1, max_size=64))}


# relative frequency of each action (a load sends several frames)
WEIGHTS = {"kernel": 12, "edge": 1, "load": 2, "data": 2, "commit": 1, "run_model": 3, "hello": 1, "reset": 1,
           "dup": 1, "garbage": 2, "unknown": 1}


@st.composite
def action(draw) -> tuple:
    kind = draw(st.sampled_from([k for k, w in WEIGHTS.items() for _ in range(w)]))
    if kind == "kernel":
        return kind, draw(S.run_kernel_payloads())
    if kind == "load":
        return kind, draw(load_plans())
    if kind == "edge":
        op = draw(st.sampled_from((0, 1)))
        shape = draw(S.small_matmul_shapes() if op == 0 else S.small_conv_shapes())
        return kind, op, shape, draw(st.integers(0, len(shape) - 1)), draw(S.bits()), draw(S.bits()), \
            draw(st.sampled_from((1, 2, 33)))
    if kind == "data":
        return kind, draw(S.u32()), draw(S.u32()), draw(st.binary(max_size=64))
    if kind == "commit":
        return kind, draw(st.one_of(st.none(), st.integers(0, S.U32), st.binary(max_size=3)))
    if kind == "run_model":
        return kind, draw(st.one_of(st.binary(min_size=16, max_size=16), st.binary(max_size=40)))
    if kind == "garbage":
        return kind, draw(S.garbage())
    if kind == "unknown":
        return kind, draw(S.request_types().filter(lambda t: not 1 <= t <= 7)), draw(st.binary(max_size=32))
    return (kind,)


def actions() -> st.SearchStrategy[list[tuple]]:
    return st.lists(action(), min_size=1, max_size=16)


# ---- execution ---------------------------------------------------------------------

@dataclass
class Stats:
    """What a run did: frames written, cases run, and a count per kind of frame
    (plus "skipped" and "unverified" kernels, see above)."""

    frames: int = 0
    cases: int = 0
    by_class: Counter = field(default_factory=Counter)

    def count(self, name: str) -> None:
        self.by_class[name] += 1


@dataclass
class FrameFuzzer:
    link: RawLink
    genuine: bytes
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self):
        self.hello = P.parse_hello(self.link.request(P.REQ_HELLO).body)
        self.mirror = oracle.ModelMirror(self.hello)
        self.last: tuple[bytes, Reply] | None = None

    # -- plumbing
    def _exchange(self, ftype: int, payload: bytes, what: str) -> Reply:
        seq = self.link.next_seq()
        frame = P.encode_frame(ftype, seq, payload)
        self.link.write(frame)
        self.stats.frames += 1
        self.stats.count(what)
        r = self.link.reply_to(seq)
        self.last = (frame, r)
        return r

    def _expect(self, r: Reply, code: int, ftype: int, what: str) -> None:
        if code == oracle.OK:
            if r.is_error:
                raise Finding(f"{what}: expected success, got error {r.error_code} {r.message!r}")
            if r.ftype != ftype | P.REP_OFFSET:
                raise Finding(f"{what}: reply type 0x{r.ftype:02x}")
        elif r.error_code != code:
            got = f"error {r.error_code} {r.message!r}" if r.is_error else "success"
            raise Finding(f"{what}: expected error {code}, got {got}")

    # -- one case
    def run(self, case: list[tuple]) -> None:
        self.stats.cases += 1
        self._exchange(P.REQ_RESET, b"", "reset")
        self.mirror.reset()
        for action in case:
            getattr(self, "_do_" + action[0])(*action[1:])
        if not self.link.alive():
            raise Finding("the firmware died: " + self.link.transport.describe_failure())

    def _do_kernel(self, payload: bytes) -> None:
        code, spec = oracle.kernel_verdict(payload, self.hello)
        _, _, _, _, seed, warmup, repeats, _ = oracle.KernelRequest(payload).fields or (0,) * 8
        if code == oracle.OK and spec.macs * (warmup + repeats) + spec.act_count + spec.weight_count > WORK_CAP:
            self.stats.count("skipped")
            return
        r = self._exchange(P.REQ_RUN_KERNEL, payload, f"run_kernel {VERDICTS[code]}")
        self._expect(r, code, P.REQ_RUN_KERNEL, f"RUN_KERNEL {payload.hex()}")
        if code == oracle.OK:
            run = P.parse_kernel_run(r.body, repeats)
            if run.out_count != spec.outputs:
                raise Finding(f"{spec}: {run.out_count} outputs, the shape has {spec.outputs}")
            if reference.reference_bytes(spec.op, spec.shape) > REFERENCE_CAP:
                self.stats.count("unverified")      # e.g. a huge padding: cheap on the device, not in NumPy
                return
            want = reference.expected_checksum(spec.op, spec.shape, spec.qa, spec.qw, seed)
            if run.checksum != want:
                raise Finding(f"{spec} seed {seed}: {run.out_count} outputs, checksum 0x{run.checksum:08x}, "
                              f"reference {spec.outputs} outputs, 0x{want:08x}")

    def _do_edge(self, op: int, shape: tuple, field_: int, qa: int, qw: int, beyond: int) -> None:
        """A shape `beyond` steps past the largest one that fits this device's
        arena along one field: the firmware's DOES_NOT_FIT must start exactly there."""
        name = ("matmul", "conv2d")[op]

        def fits(v: int) -> bool:
            dims = shape[:field_] + (v,) + shape[field_ + 1:]
            try:
                spec = KernelSpec(name, dims, qa, qw)
            except UserError:
                return False
            return oracle.arena_fits(oracle.kernel_tensor_bytes(spec, 0, 1), self.hello.ram_bytes)

        if not fits(shape[field_]):
            return
        lo, hi = shape[field_], MAX_DIM + 1          # fits(lo), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        if hi > MAX_DIM:
            return
        dims = shape[:field_] + (min(lo + beyond, MAX_DIM),) + shape[field_ + 1:]
        self._do_kernel(P.run_kernel_payload(op, qa, qw, 1, 0, 1, dims))

    def _send_data(self, payload: bytes) -> None:
        code = self.mirror.data(payload)
        r = self._exchange(P.REQ_MODEL_DATA, payload, "model_data")
        self._expect(r, code, P.REQ_MODEL_DATA, f"MODEL_DATA {payload[:8].hex()}+{len(payload) - 8}")
        if code == oracle.OK and r.body != struct.pack("<I", self.mirror.length):
            raise Finding(f"MODEL_DATA acknowledged {r.body.hex()}, expected length {self.mirror.length}")

    def _do_data(self, off: int, total: int, chunk: bytes) -> None:
        self._send_data(S.model_data_payload(off, total, chunk))

    def _do_commit(self, crc) -> None:
        if crc is None:
            payload = struct.pack("<I", zlib.crc32(bytes(self.mirror.image[:self.mirror.length])))
        elif isinstance(crc, bytes):
            payload = crc
        else:
            payload = struct.pack("<I", crc)
        code = self.mirror.commit(payload)
        r = self._exchange(P.REQ_MODEL_COMMIT, payload, "model_commit")
        self._expect(r, code, P.REQ_MODEL_COMMIT, f"MODEL_COMMIT {self.mirror.header}")
        if code == oracle.OK:
            h = self.mirror.header
            got = struct.unpack_from("<4I", r.body)
            if got != (h["in_count"], h["out_count"], h["n_layers"], h["scratch_bytes"]):
                raise Finding(f"MODEL_COMMIT answered {got} for header {h}")

    def _do_load(self, plan: dict) -> None:
        image = self.genuine
        total = len(image)
        if plan["variant"] == "header":
            image = tiny_model.with_header(image, **plan["mutation"])
        elif plan["variant"] == "tail":
            image = image + plan["tail"]
        elif plan["variant"] == "huge":
            total = self.hello.code_bytes + plan["cut"]
        send = image[:min(plan["cut"], len(image))] if plan["variant"] == "truncated" else image
        for off in range(0, len(send), plan["chunk"]):
            self._send_data(S.model_data_payload(off, total, send[off:off + plan["chunk"]]))
        self._do_commit(None if plan["crc_ok"] else zlib.crc32(image) ^ 1)

    def _honest(self) -> bool:
        """The committed image is the genuine code under a header that does not
        understate what the code needs."""
        h, g = self.mirror.header, tiny_model.header(self.genuine)
        img = bytes(self.mirror.image[:self.mirror.length])
        return (img[32:] == self.genuine[32:] and h["entry_offset"] == g["entry_offset"]
                and all(h[f] >= g[f] for f in ("in_count", "out_count", "n_layers", "scratch_bytes")))

    def _do_run_model(self, inputs: bytes) -> None:
        if self.mirror.ready and not self._honest():
            self.stats.count("skipped")
            return
        code = self.mirror.run(inputs)
        if code == oracle.OK and inputs[0] == 0x80:
            code = P.ERR_MODEL_INVALID          # the tiny model's error path
        r = self._exchange(P.REQ_RUN_MODEL, inputs, "run_model")
        self._expect(r, code, P.REQ_RUN_MODEL, f"RUN_MODEL {inputs.hex()}")
        if code == oracle.OK:
            run = P.parse_model_run(r.body)
            h = self.mirror.header
            if len(run.outputs) != h["out_count"] or len(run.layers) != h["n_layers"] \
                    or run.outputs[:tiny_model.OUT_COUNT] != tiny_model.expected(inputs[:tiny_model.IN_COUNT]):
                raise Finding(f"RUN_MODEL {inputs.hex()} answered {run}")

    def _do_hello(self) -> None:
        r = self._exchange(P.REQ_HELLO, b"", "hello")
        self._expect(r, oracle.OK, P.REQ_HELLO, "HELLO")
        if P.parse_hello(r.body) != self.hello:
            raise Finding("HELLO changed during the run")

    def _do_reset(self) -> None:
        r = self._exchange(P.REQ_RESET, b"", "reset")
        self._expect(r, oracle.OK, P.REQ_RESET, "RESET")
        self.mirror.reset()

    def _do_dup(self) -> None:
        if self.last is None:
            return
        frame, before = self.last
        self.link.write(frame)
        self.stats.frames += 1
        self.stats.count("duplicate")
        again = self.link.reply_to(before.seq)
        if again != before:
            raise Finding(f"a duplicate request was answered {again}, not its cached reply {before}")

    def _do_unknown(self, ftype: int, payload: bytes) -> None:
        r = self._exchange(ftype, payload, "unknown_type")
        self._expect(r, P.ERR_UNSUPPORTED, ftype, f"request type 0x{ftype:02x}")

    def _do_garbage(self, data: bytes) -> None:
        self.link.write(data, frames=0)
        self.stats.frames += sum(1 for part in data.split(b"\0") if part)
        self.stats.count("garbage")
        r = self.link.sync()
        self.stats.frames += 1
        self.last = None     # the HELLO under a fresh seq is the cached reply now; keep dup simple
        if P.parse_hello(r.body) != self.hello:
            raise Finding("HELLO after garbage differs")
