"""C code generation: an IntegerModel -> C source -> a loadable model image.

The generated C (Jinja2 template ``templates/model.c.j2``) holds the packed
weights, the integer requantisation parameters and a straight-line sequence
of calls into the kernel library through the firmware's ``mico_api`` table.
It is compiled position-independent into a flat image (header + code +
constants) that the bench firmware receives with LOAD_MODEL, so one firmware
build runs any generated model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from harness.errors import BuildError, ToolchainMissing
from harness.target import ModelToolchain
from kernels import reference
from kernels import toolchain as tc

TEMPLATES = Path(__file__).resolve().parent / "templates"
BLOB_CFLAGS = ["-ffreestanding", "-fno-builtin", "-fPIE", "-fno-jump-tables", "-fno-stack-protector",
               "-fvisibility=hidden", "-fno-tree-loop-distribute-patterns", "-fno-asynchronous-unwind-tables",
               "-fno-unwind-tables", "-std=c99", "-Wall", "-Werror"]
HEADER = struct.Struct("<8I")


def _words(L: int, b: int) -> int:
    per = 32 // b
    return (L + per - 1) // per


def _cwords(words) -> str:
    items = [f"0x{int(w) & 0xFFFFFFFF:08x}u" for w in words]
    return ",\n".join("    " + ", ".join(items[i:i + 8]) for i in range(0, len(items), 8))


@dataclass
class Generated:
    source: str
    in_count: int
    out_count: int
    timed_layers: list[dict]   # name, kind, spec (KernelSpec or None), timer index
    scratch_bytes: int


def _align(x: int, a: int = 16) -> int:
    return (x + a - 1) // a * a


def generate(imodel, meta: dict | None = None) -> Generated:
    """Lay out buffers and render the model's C source."""
    from harness.spec import KernelSpec

    meta = dict(meta or {})
    C, H, W = imodel.input_shape
    shape = (C, H, W)
    layers: list[dict] = []
    act_max = C * H * W
    packed_max = 0
    acc_max = 0
    kscr_max = 0
    dst_names = ("act_a", "act_b")
    flip = 0
    timer = 0
    timed = []
    out_count = None
    for op in imodel.ops:
        kind = type(op).__name__.lower()
        if kind in ("qconv", "qconv2d"):
            C, H, W = shape
            assert (op.C, op.H, op.W) == (C, H, W), f"{op.name}: shape chain broken"
            OH = (H + 2 * op.P - op.KS) // op.S + 1
            OW = (W + 2 * op.P - op.KS) // op.S + 1
            L = op.C // op.G * op.KS * op.KS
            w = np.asarray(op.weight).reshape(op.K, L)
            d = dict(kind="conv", name=op.name, C=op.C, H=op.H, W=op.W, K=op.K, KS=op.KS, S=op.S, P=op.P,
                     G=op.G, qa=op.qa, qw=op.qw, OH=OH, OW=OW, outputs=op.K * OH * OW,
                     plane_words=_words(op.H * op.W, op.qa),
                     wwords=reference.pack(w, op.qw).reshape(-1).tolist(), bias=np.asarray(op.bias).tolist(),
                     mult=np.asarray(op.mult).tolist(), shift=np.asarray(op.shift).tolist(),
                     relu=bool(op.relu), out_bits=int(op.out_bits), timer=timer)
            spec = KernelSpec("conv2d", (1, op.C, op.H, op.W, op.K, op.KS, op.S, op.P, op.G), op.qa, op.qw)
            packed_max = max(packed_max, op.C * d["plane_words"])
            acc_max = max(acc_max, d["outputs"])
            kscr_max = max(kscr_max, 2 * L + 64)
            shape = (op.K, OH, OW)
            out_n = d["outputs"]
        elif kind in ("qlinear",):
            n_in = int(np.prod(shape))
            assert op.in_features == n_in, f"{op.name}: {op.in_features} inputs but {n_in} arrive"
            w = np.asarray(op.weight).reshape(op.out_features, op.in_features)
            d = dict(kind="linear", name=op.name, in_features=op.in_features, out_features=op.out_features,
                     qa=op.qa, qw=op.qw, wwords=reference.pack(w, op.qw).reshape(-1).tolist(),
                     bias=np.asarray(op.bias).tolist(), mult=np.asarray(op.mult).tolist(),
                     shift=np.asarray(op.shift).tolist(), relu=bool(op.relu), out_bits=int(op.out_bits),
                     timer=timer)
            spec = KernelSpec("matmul", (1, op.out_features, op.in_features), op.qa, op.qw)
            packed_max = max(packed_max, _words(op.in_features, op.qa))
            acc_max = max(acc_max, op.out_features)
            kscr_max = max(kscr_max, 2 * op.in_features + 64)
            shape = (op.out_features, 1, 1)
            out_n = op.out_features
        elif kind == "pool":
            C, H, W = shape
            OH = (H - op.KS) // op.S + 1
            OW = (W - op.KS) // op.S + 1
            d = dict(kind="pool", name=f"pool{timer}", pool=op.kind, C=C, H=H, W=W, KS=op.KS, S=op.S, timer=timer)
            spec = None
            shape = (C, OH, OW)
            out_n = C * OH * OW
        elif kind == "flatten":
            shape = (int(np.prod(shape)), 1, 1)
            continue
        else:
            raise BuildError(f"codegen does not know the op {type(op).__name__}")
        if d["kind"] != "pool" and not d["out_bits"]:
            out_count = out_n
        else:
            d["dst"] = dst_names[flip]
            flip ^= 1
            act_max = max(act_max, out_n)
        layers.append(d)
        timed.append({"name": d["name"], "kind": d["kind"], "spec": spec, "timer": timer})
        timer += 1
    if out_count is None:
        raise BuildError("the model's last layer must produce int32 logits (out_bits=0)")
    off = {}
    pos = 0
    for name, size in (("act_a", act_max), ("act_b", act_max), ("packed", 4 * packed_max),
                       ("acc", 4 * acc_max), ("kscratch", kscr_max)):
        off[name] = pos
        pos = _align(pos + size)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    env.filters["cwords"] = _cwords
    meta.setdefault("model", "?")
    meta.setdefault("dataset", "?")
    meta["bits"] = " ".join(f"{d['qa']}x{d['qw']}" for d in layers if d["kind"] != "pool")
    src = env.get_template("model.c.j2").render(
        layers=layers, off=off, meta=meta, in_count=int(np.prod(imodel.input_shape)), out_count=out_count,
        n_timed=timer, scratch_bytes=pos)
    return Generated(src, int(np.prod(imodel.input_shape)), out_count, timed, pos)


# ---- compiling a model image ------------------------------------------------------
def _elf_info(data: bytes) -> tuple[int, dict[str, int]]:
    """(entry address, {section name: size}) from an ELF32/ELF64 little-endian file."""
    if data[:4] != b"\x7fELF":
        raise BuildError("the model linker produced no ELF file")
    is64 = data[4] == 2
    if is64:
        entry, = struct.unpack_from("<Q", data, 24)
        shoff, = struct.unpack_from("<Q", data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    else:
        entry, = struct.unpack_from("<I", data, 24)
        shoff, = struct.unpack_from("<I", data, 32)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 46)

    def sh(i):
        base = shoff + i * shentsize
        if is64:
            name, typ, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, base)
        else:
            name, typ, _flags, _addr, off, size = struct.unpack_from("<IIIIII", data, base)
        return name, typ, off, size

    _, _, stroff, _ = sh(shstrndx)
    sizes = {}
    for i in range(shnum):
        name, typ, off, size = sh(i)
        end = data.index(b"\0", stroff + name)
        sizes[data[stroff + name:end].decode()] = size
    return entry, sizes


def compile_image(gen: Generated, tool: ModelToolchain) -> bytes:
    """Compile the generated C into a flat model image (cached by content hash)."""
    fw = tc.FIRMWARE_DIR
    src_dir = Path(tc.cache_root()) / "model-src"
    src_dir.mkdir(parents=True, exist_ok=True)
    import hashlib

    h = hashlib.sha256(gen.source.encode()).hexdigest()[:16]
    src = src_dir / f"model-{h}.c"
    if not src.exists():
        src.write_text(gen.source)
    flags = [*BLOB_CFLAGS, *tool.cflags]
    inputs = [src, fw / "model_api.h", tc.INCLUDE_DIR / "mico_kernels.h", TEMPLATES / "blob.ld"]

    def build(out: Path) -> None:
        obj, elf = out / "model.o", out / "model.elf"
        tc.run_tool([*tool.cc, *flags, "-I", fw, "-I", tc.INCLUDE_DIR, "-c", src, "-o", obj])
        tc.run_tool([*tool.cc, *tool.cflags, "-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none",
                     "-Wl,-T," + str(TEMPLATES / "blob.ld"), "-Wl,--no-warn-rwx-segments", obj, "-o", elf])
        tc.run_tool([tool.objcopy, "-O", "binary", elf, out / "model.bin"])

    try:
        art = tc.build_cached(f"model-{tool.triple}", inputs, [*tool.cc, tc.tool_identity(tool.cc[0]), *flags],
                              "model.bin", build)
    except tc.ToolError as e:
        if e.missing:
            raise ToolchainMissing(str(e)) from None
        raise BuildError(f"compiling the generated model failed: {e}", e.stderr) from None
    elf = art.path.parent / "model.elf"
    entry, sizes = _elf_info(elf.read_bytes())
    bad = {k: v for k, v in sizes.items() if k in (".data", ".bss", ".got") and v}
    if bad:
        raise BuildError(f"the model image has writable or relocated data {bad}; it cannot be loaded as a flat image")
    image = bytearray(art.path.read_bytes())
    magic, abi, _, _, inc, outc, nl, scr = HEADER.unpack_from(image, 0)
    if magic != 0x4D43494D:
        raise BuildError("the model image does not start with its header")
    HEADER.pack_into(image, 0, magic, abi, entry, len(image), inc, outc, nl, scr)
    return bytes(image)
