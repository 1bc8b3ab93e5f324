"""Framing and the retry logic, against the real host firmware over real pipes."""

import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import protocol
from harness.errors import CrashError, TimeoutMeasureError
from harness.protocol import Client, cobs_decode, cobs_encode, decode_frame, encode_frame
from harness.spec import KernelSpec
from harness.measure import spec_seed
from harness.transports import ProcessTransport
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
            s.client.run_kernel("matmul", (60000, 60000, 64), 8, 8, 1, 0, 1)
        # the device is still serving after errors
        assert s.client.hello().target_id == "host"


def test_crc_matches_zlib():
    assert protocol.zlib.crc32(b"123456789") == zlib.crc32(b"123456789") == 0xCBF43926
