"""Framing and the retry logic, against the real host firmware over real pipes."""

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import protocol
from harness.errors import CrashError, MeasureError, ProtocolError, TimeoutMeasureError
from harness.protocol import Client, cobs_decode, cobs_encode, decode_frame, encode_frame
from harness.spec import KernelSpec
from harness.measure import spec_seed
from harness.transports import ProcessTransport
from helpers import fake_device
from kernels import reference


@given(st.binary(max_size=2000))
@settings(max_examples=200)
def test_cobs_roundtrip_has_no_zero(data):
    enc = cobs_encode(data)
    assert 0 not in enc
    assert cobs_decode(enc) == data


def test_cobs_long_runs():
    for data in (bytes(254), bytes([1]) * 254, bytes([1]) * 255, bytes([1]) * 600 + b"\0" + bytes([2]) * 300):
        assert cobs_decode(cobs_encode(data)) == data


def test_frame_detects_every_single_byte_corruption():
    frame = encode_frame(2, 77, bytes(range(40)))[:-1]
    assert decode_frame(frame) == (2, 77, bytes(range(40)))
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x5A
        try:
            t = decode_frame(bytes(bad))
        except ValueError:
            continue
        pytest.fail(f"corruption at byte {i} went undetected: {t}")


class CorruptingTransport:
    """A real byte stream with injected faults: flips bits in device->host bytes."""

    def __init__(self, inner, rate, seed=1):
        self.inner, self.rate, self.rng = inner, rate, random.Random(seed)
        self.corrupted = 0

    def write(self, data):
        self.inner.write(data)

    def read(self, n, timeout):
        data = bytearray(self.inner.read(n, timeout))
        for i in range(len(data)):
            if self.rng.random() < self.rate:
                data[i] ^= 1 << self.rng.randrange(8)
                self.corrupted += 1
        return bytes(data)

    def close(self):
        self.inner.close()

    def describe_failure(self):
        return self.inner.describe_failure()


def test_hello_over_pipes(host_build):
    target, build = host_build
    with target.open(build) as s:
        h = s.hello
        assert h.target_id == "host" and h.timer_unit == "ns"
        assert len(h.pairs) == 16 and set(h.ops) == {"matmul", "conv2d"}


def test_retries_recover_from_corrupted_replies(host_build):
    _, build = host_build
    inner = ProcessTransport([build.artifacts["firmware"]])
    t = CorruptingTransport(inner, rate=0.002)
    c = Client(t, timeout=2.0, retries=20)
    spec = KernelSpec("matmul", (2, 7, 45), 4, 2)
    seed = spec_seed(spec)
    want = reference.expected_checksum(spec.op, spec.shape, spec.qa, spec.qw, seed)
    try:
        for _ in range(40):
            r = c.run_kernel(spec.op, spec.shape, spec.qa, spec.qw, seed, 0, 50)
            assert r.checksum == want
            assert len(r.values) == 50
    finally:
        c.bye()
        t.close()
    assert t.corrupted > 0 and c.stats.retries > 0


def test_killed_firmware_is_a_crash_record(host_build):
    _, build = host_build
    t = ProcessTransport([build.artifacts["firmware"]])
    c = Client(t, timeout=5.0)
    c.hello()
    t.proc.kill()
    with pytest.raises(CrashError) as e:
        c.run_kernel("matmul", (1, 1, 1), 8, 8, 1, 0, 1)
    assert "signal SIGKILL" in e.value.detail
    t.close()


def test_silent_device_times_out():
    # a process that never answers: every attempt times out, then the typed error
    t = ProcessTransport(["sleep", "30"])
    c = Client(t, timeout=0.3, retries=1)
    with pytest.raises(TimeoutMeasureError):
        c.hello()
    t.close()


def test_device_rejects_bad_requests(host_build):
    target, build = host_build
    with target.open(build) as s:
        with pytest.raises(Exception) as e:
            s.client.run_kernel("matmul", (1, 2, 3), 3, 8, 1, 0, 1)
        assert "bit-width" in str(e.value)
        from harness.errors import DoesNotFitError

        with pytest.raises(DoesNotFitError):
            s.client.run_kernel("matmul", (30000, 30000, 64), 8, 8, 1, 0, 1)
        # 3.6e9 outputs cannot exist on any device: an impossible request, not a large one
        with pytest.raises(MeasureError, match="MICO_MAX_ELEMENTS") as e:
            s.client.run_kernel("matmul", (60000, 60000, 64), 8, 8, 1, 0, 1)
        assert not isinstance(e.value, DoesNotFitError)
        # the device is still serving after errors
        assert s.client.hello().target_id == "host"


def test_crc_matches_zlib():
    assert protocol.zlib.crc32(b"123456789") == zlib.crc32(b"123456789") == 0xCBF43926


# ---- replies with a valid CRC but malformed contents --------------------------------

def _hello_body(strings=(b"host", b"x86_64", b"gcc")) -> bytes:
    body = struct.pack("<HHIIBIHHII", 1, 1, 1 << 20, 16368, 1, 10**9, 3, 0xFFFF, 1, 1 << 20)
    return body + b"".join(bytes([len(s)]) + s for s in strings)


MALFORMED = {
    "hello empty": ("hello", b""),
    "hello header cut": ("hello", _hello_body()[:9]),
    "hello string longer than the reply": ("hello", _hello_body()[:-3]),
    "hello strings missing": ("hello", _hello_body(())),
    "run_kernel empty": ("run_kernel", b""),
    "run_kernel header cut": ("run_kernel", struct.pack("<II", 1, 1)),
    "run_kernel timings missing": ("run_kernel", struct.pack("<IIH", 1, 1, 3) + struct.pack("<Q", 5)),
    "run_kernel 65535 timings claimed": ("run_kernel", struct.pack("<IIH", 1, 1, 0xFFFF) + bytes(24)),
    "run_kernel fewer timings than asked": ("run_kernel", struct.pack("<IIH", 1, 1, 1) + bytes(8)),
    "load_model commit cut": ("load_model", struct.pack("<III", 1, 1, 1)),
    "run_model empty": ("run_model", b""),
    "run_model 2^32-1 outputs claimed": ("run_model", struct.pack("<I", 0xFFFFFFFF) + bytes(16)),
    "run_model layer count missing": ("run_model", struct.pack("<Ii", 1, 7)),
    "run_model timings missing": ("run_model", struct.pack("<IiH", 1, 7, 4) + bytes(16)),
}


def _call(client: Client, what: str):
    if what == "hello":
        return client.hello()
    if what == "run_kernel":
        return client.run_kernel("matmul", (1, 1, 1), 8, 8, 1, 0, 3)
    if what == "load_model":
        return client.load_model(b"\x01" * 8)
    return client.run_model(b"\x00" * 4)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_reply_is_a_protocol_error(case):
    what, body = MALFORMED[case]
    # load_model sends one MODEL_DATA before the commit: answer it properly first
    script = [(None, struct.pack("<I", 8))] if what == "load_model" else []
    t = ProcessTransport(fake_device.argv(script + [(None, body)]))
    try:
        with pytest.raises(ProtocolError, match="malformed") as e:
            _call(Client(t, timeout=10.0, retries=0), what)
        assert str(e.value).count(".") == 1 and "\n" not in str(e.value)
        assert isinstance(e.value, MeasureError)
    finally:
        t.close()


def test_wellformed_crafted_replies_parse():
    # the same fake device with honest replies: the parsers accept what the firmware sends
    replies = [(None, _hello_body()),
               (None, struct.pack("<IIH", 0xABCD, 4, 3) + struct.pack("<3Q", 5, 6, 7)),
               (None, struct.pack("<Iii", 2, -1, 9) + struct.pack("<H", 1) + struct.pack("<2Q", 11, 10))]
    t = ProcessTransport(fake_device.argv(replies))
    try:
        c = Client(t, timeout=10.0, retries=0)
        assert c.hello().target_id == "host"
        r = c.run_kernel("matmul", (1, 1, 1), 8, 8, 1, 0, 3)
        assert (r.checksum, r.out_count, r.values) == (0xABCD, 4, [5, 6, 7])
        m = c.run_model(b"\x00")
        assert (m.outputs, m.total, m.layers) == ([-1, 9], 11, [10])
    finally:
        t.close()


@pytest.mark.parametrize("field,args", [
    ("warmup", dict(warmup=1 << 16)), ("repeats", dict(repeats=-1)), ("dim 0", dict(dims=(1 << 32, 1, 1))),
    ("dims count", dict(dims=(1,) * 256))])
def test_run_kernel_payload_refuses_values_that_would_wrap(field, args):
    kw = dict(op=0, qa=8, qw=8, seed=1, warmup=0, repeats=1, dims=(1, 1, 1)) | args
    with pytest.raises(ValueError, match=field):
        protocol.run_kernel_payload(**kw)
