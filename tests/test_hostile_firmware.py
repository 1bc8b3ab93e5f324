"""Hostile frames against the bench firmware (issue 9): the crashing inputs found
by hand as regression tests, on the ASan/UBSan build and on the plain host
build, the host validator refusing the same shapes, and the protocol fuzzer
(MICO_FUZZ_FRAMES frames, 5,000 by default; `make fuzz` runs 100,000)."""

from __future__ import annotations

import json
import os
import struct
import time
import zlib

import pytest
from hypothesis import HealthCheck, given, settings

from harness import protocol as P
from harness.errors import UserError
from harness.spec import KernelSpec
from helpers import asan_firmware, tiny_model
from helpers.fuzz import FrameFuzzer, Stats, actions
from helpers.link import RawLink

U32 = 0xFFFFFFFF
PAIRS = [(a, w) for a in (1, 2, 4, 8) for w in (1, 2, 4, 8)]
FUZZ_FRAMES = int(os.environ.get("MICO_FUZZ_FRAMES", "5000"))
FUZZ_REPORT = os.environ.get("MICO_FUZZ_REPORT")

# (name, op, dims, bit pairs): every one crashed, tripped UBSan or was answered OK with a wrapped size
CRASHERS = [
    ("matmul K=2^32-1 (ASan: OOB write unpacking A)", 0, (1, 1, U32), PAIRS),
    ("matmul K=0xFFFFFFE1 (words wrap)", 0, (1, 1, 0xFFFFFFE1), PAIRS),
    ("matmul K=0xFFFFFFF0 (words wrap)", 0, (1, 1, 0xFFFFFFF0), PAIRS),
    ("matmul N*K = 2^32 (product wraps)", 0, (65536, 1, 65536), [(8, 8), (1, 1)]),
    ("conv KS=65536 P=32768 (1-bit gather SIGSEGV)", 1, (1, 1, 1, 1, 1, 65536, 1, 32768, 1), PAIRS),
    ("conv H=W=65536 (H*W wraps to 0)", 1, (1, 1, 65536, 65536, 1, 1, 1, 0, 1), PAIRS),
    ("conv P=2^31 (UBSan: signed overflow in the gather)", 1, (1, 1, 1, 1, 1, 1, 1, 2**31, 1), PAIRS),
    ("conv S=P=2^31-1 (UBSan: signed overflow)", 1, (1, 1, 1, 1, 1, 1, 2**31 - 1, 2**31 - 1, 1), [(8, 8), (1, 1)]),
    ("conv C/G*KS*KS = 2^32 wraps to 0", 1, (1, 65536, 1, 1, 1, 256, 1, 128, 1), [(8, 8), (1, 1)]),
    ("conv 2*P wraps", 1, (1, 1, 1, 1, 1, 3, 1, 2**31 + 1, 1), [(8, 8)]),
]
CRASH_CASES = [(name, op, dims, qa, qw) for name, op, dims, pairs in CRASHERS for qa, qw in pairs]


@pytest.fixture(scope="module")
def asan_path():
    return str(asan_firmware.build())


@pytest.fixture(scope="module", params=["asan", "plain"])
def firmware(request, asan_path, host_build):
    """One firmware process per build for the whole module; findings are checked at the end."""
    if request.param == "asan":
        link = RawLink.spawn([asan_path], env=asan_firmware.env())
    else:
        link = RawLink.spawn([host_build[1].artifacts["firmware"]])
    yield link
    alive = link.alive()
    link.close()
    assert alive, link.transport.describe_failure()
    assert not asan_firmware.findings(link.stderr()), link.stderr()


@pytest.fixture(scope="module")
def genuine_image(host_build):
    return tiny_model.build(host_build[0])


def _run_kernel(link: RawLink, op: int, dims, qa: int, qw: int) -> RawLink:
    return link.request(P.REQ_RUN_KERNEL, P.run_kernel_payload(op, qa, qw, 1, 0, 1, dims))


@pytest.mark.parametrize("name,op,dims,qa,qw", CRASH_CASES,
                         ids=[f"{c[0].split(' (')[0]} {c[3]}x{c[4]}" for c in CRASH_CASES])
def test_crasher_is_refused_by_the_firmware(firmware, name, op, dims, qa, qw):
    r = _run_kernel(firmware, op, dims, qa, qw)
    assert r.is_error and r.error_code == P.ERR_BAD_REQUEST, (name, r)
    assert firmware.alive()
    # and the device still computes: a small kernel right after is answered
    ok = _run_kernel(firmware, 0, (2, 3, 33), qa, qw)
    assert not ok.is_error


@pytest.mark.parametrize("name,op,dims", [(n, o, d) for n, o, d, _ in CRASHERS], ids=[c[0] for c in CRASHERS])
def test_crasher_is_refused_by_the_host_validator(name, op, dims):
    with pytest.raises(UserError) as e:
        KernelSpec(("matmul", "conv2d")[op], dims, 8, 8)
    msg = str(e.value)
    assert msg.endswith(".") and "\n" not in msg


def _load(link: RawLink, image: bytes) -> P.ReplyReader:
    for off in range(0, len(image), 4096):
        r = link.request(P.REQ_MODEL_DATA, struct.pack("<II", off, len(image)) + image[off:off + 4096])
        assert not r.is_error, r
    return link.request(P.REQ_MODEL_COMMIT, struct.pack("<I", zlib.crc32(image)))


@pytest.mark.parametrize("fields,code", [
    ({"entry_offset": 0}, P.ERR_MODEL_INVALID),
    ({"entry_offset": 8}, P.ERR_MODEL_INVALID),
    ({"entry_offset": 60}, P.ERR_MODEL_INVALID),
    ({"entry_offset": 33}, P.ERR_MODEL_INVALID),
    ({"entry_offset": U32}, P.ERR_MODEL_INVALID),
    ({"image_size": 8}, P.ERR_MODEL_INVALID),
    ({"in_count": U32}, P.ERR_DOES_NOT_FIT),
    ({"out_count": 0x40000000}, P.ERR_DOES_NOT_FIT),    # 4 * out_count wraps to 0 in 32 bits
    ({"n_layers": 0x20000000}, P.ERR_DOES_NOT_FIT),     # 8 * n_layers wraps to 0 in 32 bits
    ({"n_layers": 0x10000}, P.ERR_DOES_NOT_FIT),
    ({"scratch_bytes": U32}, P.ERR_DOES_NOT_FIT),
])
def test_model_commit_checks_every_header_field(firmware, genuine_image, fields, code):
    r = _load(firmware, tiny_model.with_header(genuine_image, **fields))
    assert r.is_error and r.error_code == code, (fields, r)
    # nothing was made runnable: RUN_MODEL is refused instead of jumping into the header
    r = firmware.request(P.REQ_RUN_MODEL, bytes(tiny_model.IN_COUNT))
    assert r.is_error and r.error_code == P.ERR_NO_MODEL
    assert firmware.alive()


def test_genuine_model_runs_after_refused_ones(firmware, genuine_image):
    r = _load(firmware, genuine_image)
    assert not r.is_error, r
    x = bytes(range(1, 17))
    run = P.parse_model_run(firmware.request(P.REQ_RUN_MODEL, x).body)
    assert run.outputs == tiny_model.expected(x) and len(run.layers) == 1
    r = firmware.request(P.REQ_RUN_MODEL, b"\x80" + x[1:])
    assert r.error_code == P.ERR_MODEL_INVALID


# ---- the fuzzer ------------------------------------------------------------------------

class _Session:
    """The fuzzed firmware, respawned if a finding killed it (so Hypothesis can shrink)."""

    def __init__(self, path: str, image: bytes):
        self.path, self.image, self.stats = path, image, Stats()
        self.reports: list[str] = []
        self._spawn()

    def _spawn(self) -> None:
        self.link = RawLink.spawn([self.path], env=asan_firmware.env(), timeout=30.0)
        self.fuzzer = FrameFuzzer(self.link, self.image, self.stats)

    def case(self, acts) -> None:
        if not self.link.alive():
            self.reports += asan_firmware.findings(self.link.stderr())
            self.link.close()
            self._spawn()
        self.fuzzer.run(acts)

    def close(self) -> list[str]:
        self.link.close()
        return self.reports + asan_firmware.findings(self.link.stderr())


def test_fuzz_frames_asan(asan_path, genuine_image):
    session = _Session(asan_path, genuine_image)
    t0 = time.monotonic()
    result = "fail"

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(actions())
    def case(acts):
        session.case(acts)

    try:
        while session.stats.frames < FUZZ_FRAMES:
            case()
        findings = session.close()
        assert not findings, "\n".join(findings)
        result = "pass"
    finally:
        if FUZZ_REPORT:
            s = session.stats
            with open(FUZZ_REPORT, "w") as f:
                json.dump({"frames": s.frames, "cases": s.cases, "by_class": dict(s.by_class.most_common()),
                           "wall_s": round(time.monotonic() - t0, 1), "result": result}, f, indent=1)
    assert session.stats.frames >= FUZZ_FRAMES


# ---- the host side: the same shapes never reach the device or the reference --------------

@pytest.mark.parametrize("op,shape,needle", [
    ("matmul", "99999999999999999999,4,4", "between 1 and 2147483647"),
    ("matmul", "4294967297,1,4", "between 1 and 2147483647"),
    ("matmul", "1,1,4294967295", "between 1 and 2147483647"),
    ("matmul", "65536,1,65536", "activation tensor has 4294967296 elements"),
    ("matmul", "1,1,200000", "reduction length 200000 exceeds"),
    ("conv2d", "1,1,1,1,1,1,1,2147483648", "padding between 0 and 2147483647"),
    ("conv2d", "1,1,2,2,1,1,1,1073741823", "padded input"),
    ("conv2d", "1,1,65536,65536,1,1,1,0", "activation tensor has 4294967296 elements"),
    ("conv2d", "1,1,1,1,1,65536,1,32768", "reduction length 4294967296 exceeds"),
])
def test_cli_refuses_impossible_shapes_in_one_sentence(op, shape, needle):
    from mico_cli import mico

    r = mico("measure", "--op", op, "--shape", shape, "--qa", "8", "--qw", "8", check=False, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and needle in r.stderr
    assert r.stderr.strip().count("\n") == 0 and r.stderr.strip().endswith(".")


def test_cli_refuses_a_shape_the_reference_cannot_check():
    # the device would accept it (264 MB packed at 1 bit); the float64 reference would need ~10 GiB
    from mico_cli import mico

    r = mico("measure", "--op", "conv2d", "--shape", "1,1,46000,46000,1,1,46000,0", "--qa", "1", "--qw", "1",
             check=False, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "GiB" in r.stderr and r.stderr.strip().count("\n") == 0
