"""The target lifecycle (docs/targets.md): parameters declared once and validated
centrally, capabilities declared on the target, `Target.session()` doing
available -> build -> open with one-sentence errors, sessions without a byte
stream.  Real targets: the host firmware and the BitFusion analytical model.
"""

import pytest

from harness import registry
from harness.errors import BootError, ParamError, TargetUnavailable, UnsupportedError
from harness.measure import measure
from harness.params import Param, at_least, integer, number, parse_assignments, validate_params
from harness.protocol import ModelInfo
from harness.spec import KernelSpec
from harness.target import BuildResult, Capabilities, DeviceSession, Session

SPEC = KernelSpec("matmul", (3, 5, 64), 4, 2)


# ---- parameters -------------------------------------------------------------------------------
DECL = (Param("n", integer, 4, "a count", check=at_least(1)), Param("t", number, None, "seconds", False))


def test_validate_fills_defaults_and_parses_text_and_values():
    assert validate_params(DECL, {}) == {"n": 4, "t": None}
    assert validate_params(DECL, {"n": "0x10", "t": "2.5"}) == {"n": 16, "t": 2.5}
    assert validate_params(DECL, {"n": 7, "t": 3}) == {"n": 7, "t": 3.0}
    assert validate_params(DECL, {"n": "007"}) == {"n": 7, "t": None}


@pytest.mark.parametrize("given,msg", [
    ({"m": 1}, "the target has no parameter 'm'; it takes n, t."),
    ({"n": "x"}, "the target: parameter n='x' must be an integer."),
    ({"n": True}, "the target: parameter n=True must be an integer."),
    ({"n": 0}, "the target: parameter n=0 must be at least 1."),
    ({"t": "inf"}, "the target: parameter t='inf' must be a finite number."),
])
def test_validate_refuses_in_one_sentence(given, msg):
    with pytest.raises(ParamError) as e:
        validate_params(DECL, given)
    assert str(e.value) == msg


def test_cli_assignments_stay_text_until_validated():
    assert parse_assignments(["a=1", "b=x=y", " c =0x10"]) == {"a": "1", "b": "x=y", "c": "0x10"}
    for bad in (["a"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(ParamError):
            parse_assignments(bad)


@pytest.mark.parametrize("name", ["host", "bitfusion-model", "bitfusion-rtl", "vexriscv-full", "vexiiriscv",
                                  "board:litex-sim"])
def test_every_target_refuses_unknown_params_naming_the_known_ones(name):
    t = registry.get(name)
    with pytest.raises(ParamError) as e:
        registry.get(name, no_such_knob=1)
    known = ", ".join(sorted(p.name for p in t.PARAMS)) or "none"
    assert str(e.value).endswith(f"no parameter 'no_such_knob'; it takes {known}.")
    assert set(t.params) == {p.name for p in t.PARAMS}


def test_fingerprint_follows_in_fingerprint_declarations():
    """bitfusion-model: each in_fingerprint parameter changes the fingerprint, the others do not."""
    base = registry.get("bitfusion-model").build().fingerprint
    changed = {"rows": 8, "cols": 16, "ibuf_kib": 32, "wbuf_kib": 16, "obuf_kib": 8, "dram_bits": 64,
               "dram_latency": 9, "imem_depth": 512, "dram_mib": 64, "timeout_s": 5, "widths": "2,3,8"}
    t = registry.get("bitfusion-model")
    assert set(changed) == {p.name for p in t.PARAMS}
    for p in t.PARAMS:
        fp = registry.get("bitfusion-model", **{p.name: changed[p.name]}).build().fingerprint
        assert (fp != base) == p.in_fingerprint, p.name


# ---- capabilities ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,images,ir", [("host", True, False), ("vexriscv-full", True, False),
                                            ("vexriscv-mico", True, False), ("board:litex-sim", True, False),
                                            ("bitfusion-rtl", False, True), ("bitfusion-model", False, False)])
def test_capabilities_are_declared(name, images, ir):
    c = registry.get(name).capabilities()
    assert isinstance(c, Capabilities)
    assert (c.model_images, c.ir_models) == (images, ir)
    assert c.bits == (1, 2, 4, 8) and "kernel" in c.modes


def test_capabilities_follow_params():
    assert registry.get("vexriscv-full", mem_kib=512).capabilities().memory_bytes == 512 * 1024
    assert registry.get("bitfusion-model", dram_mib=8).capabilities().memory_bytes == 8 << 20


# ---- session() ---------------------------------------------------------------------------------
def test_session_boots_and_closes_the_host(host_build):
    t, b = host_build
    with t.session(b) as s:
        assert isinstance(s, DeviceSession) and s.build_result is b and s.hello.target_id == "host"
        assert measure(s, SPEC, b.fingerprint, False).checksum_ok
        proc = s.transport.proc
    assert proc.returncode == 0          # BYE: the firmware exited by itself


def test_session_kills_the_device_when_the_block_fails(host_build):
    t, b = host_build
    with pytest.raises(ZeroDivisionError):
        with t.session(b) as s:
            proc = s.transport.proc
            1 / 0
    assert proc.returncode is not None and proc.returncode < 0      # killed, not waited for


def test_session_of_an_unavailable_target_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    t = registry.get("vexriscv-full")
    with pytest.raises(TargetUnavailable) as e:
        with t.session():
            pass
    assert str(e.value).startswith("target vexriscv-full is not available: ") and "\n" not in str(e.value)


def test_session_of_a_device_that_does_not_boot_is_one_sentence(tmp_path):
    t = registry.get("host")
    bogus = BuildResult("host", "0" * 16, {"firmware": "/bin/true"})
    with pytest.raises(BootError) as e:
        with t.session(bogus):
            pass
    msg = str(e.value)
    assert msg.startswith("target host did not boot: host firmware did not answer HELLO") and "\n" not in msg


def test_host_session_refuses_ir_models(host_build):
    t, b = host_build
    with t.session(b) as s:
        with pytest.raises(UnsupportedError, match="does not map layer-IR models"):
            s.load_ir_model(object())


# ---- a session without a byte stream ----------------------------------------------------------------
def test_model_session_needs_no_transport():
    t = registry.get("bitfusion-model", rows=4, cols=8, ibuf_kib=4, wbuf_kib=1, obuf_kib=2)
    with t.session() as s:
        assert type(s).__mro__[1] is Session and not hasattr(s, "transport") and not hasattr(s, "client")
        m = measure(s, SPEC, s.build_result.fingerprint, True)
        assert m.status == "ok" and m.retries == 0 and m.reconnects == 0
        with pytest.raises(UnsupportedError):
            s.load_model(b"\0" * 64)
        with pytest.raises(UnsupportedError):
            s.load_ir_model(object())


def test_model_info_reads_as_record_and_as_the_older_dict():
    info = ModelInfo.of({"in_count": 3, "out_count": 10, "n_layers": 2, "scratch_bytes": 64})
    assert info.out_count == 10 and info["n_layers"] == 2 and ModelInfo.of(info) is info
