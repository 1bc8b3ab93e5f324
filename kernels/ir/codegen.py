"""C code generation: a layer-IR graph -> C source -> a loadable model image.

It lives with the IR, below mpq/, because the measurement core builds model
images too: a layer-mode measurement runs a one-layer image exactly as a
deployed model runs that layer (harness never imports mpq/).

The generated C (Jinja2 template ``templates/model.c.j2``) holds the packed
weights, the integer requantisation parameters and a straight-line sequence
of calls into the kernel library through the firmware's ``mico_api`` table;
each IR op writes its own constants and statements (``Op.c_decls``,
``Op.c_body``), so this module never looks at what kind of op it emits.
It is compiled position-independent into a flat image (header + code +
constants) that the bench firmware receives with LOAD_MODEL, so one firmware
build runs any generated model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import jinja2

from harness.errors import BuildError, ToolchainMissing
from harness.target import ModelToolchain
from kernels import toolchain as tc
from .emit import EmitContext, c_ident
from .graph import INPUT, Graph

TEMPLATES = Path(__file__).resolve().parent / "templates"
BLOB_CFLAGS = ["-ffreestanding", "-fno-builtin", "-fPIE", "-fno-jump-tables", "-fno-stack-protector",
               "-fvisibility=hidden", "-fno-tree-loop-distribute-patterns", "-fno-asynchronous-unwind-tables",
               "-fno-unwind-tables", "-std=c99", "-Wall", "-Werror"]
HEADER = struct.Struct("<8I")
ALIGN = 16


@dataclass
class Generated:
    source: str
    in_count: int
    out_count: int
    timed_layers: list[dict]   # name, kind, spec (KernelSpec or None), timer index, node index
    scratch_bytes: int
    act_bytes: int = 0         # peak bytes of the activation buffers (lifetime-planned)


def _align(x: int, a: int = ALIGN) -> int:
    return (x + a - 1) // a * a


class _Arena:
    """First-fit offsets for activation buffers that live from one step to their last reader."""

    def __init__(self):
        self.live: dict[int, tuple[int, int]] = {}   # value -> (offset, size)
        self.peak = 0

    def alloc(self, value: int, size: int) -> int:
        taken = sorted(self.live.values())
        pos = 0
        for off, sz in taken:
            if pos + size <= off:
                break
            pos = max(pos, _align(off + sz))
        self.live[value] = (pos, size)
        self.peak = max(self.peak, _align(pos + size))
        return pos

    def free(self, value: int) -> None:
        self.live.pop(value, None)


def plan_buffers(graph: Graph) -> tuple[dict[int, str], int]:
    """C expression of every value's buffer (node index -> expr; the input is ``input``,
    the logits ``output``) and the activation bytes needed at the peak."""
    last = graph.last_use()
    root: dict[int, int] = {INPUT: INPUT}
    for n in graph.nodes:
        root[n.index] = root[n.inputs[0]] if n.op.view else n.index
    # a buffer lives until the last reader of any value aliasing it
    end: dict[int, int] = {}
    for v, r in root.items():
        end[r] = max(end.get(r, -1), last[v])
    final_root = root[len(graph.nodes) - 1]
    expr: dict[int, str] = {INPUT: "input"}
    arena = _Arena()
    for n in graph.nodes:
        if n.op.view:
            expr[n.index] = expr[n.inputs[0]]
        elif n.index == final_root and n.type.bits == 0:
            expr[n.index] = "output"
        else:
            off = arena.alloc(n.index, n.type.nbytes)
            expr[n.index] = f"((int8_t *)(scratch + {off}u))"
        for r in {root[i] for i in n.inputs}:
            if r != INPUT and end.get(r, -1) <= n.index:
                arena.free(r)
    return expr, arena.peak


def layout(graph: Graph) -> tuple[dict[int, str], int, dict[str, int], int]:
    """(buffer expressions, peak activation bytes, scratch offsets, total scratch bytes) of
    a graph -- structural graphs too, so a search can price a scheme's RAM untrained."""
    expr, act_bytes = plan_buffers(graph)
    scratch = [n.op.scratch(graph.in_types(n), n.type) for n in graph.nodes]
    packed = max((s.packed_words for s in scratch), default=0)
    accw = max((s.acc_words for s in scratch), default=0)
    kbytes = max((s.kernel_bytes for s in scratch), default=0)
    off = {"packed": _align(act_bytes)}
    off["acc"] = _align(off["packed"] + 4 * packed)
    off["kscratch"] = _align(off["acc"] + 4 * accw)
    return expr, act_bytes, off, _align(off["kscratch"] + kbytes)


def generate(graph: Graph, meta: dict | None = None, code_output: bool = False) -> Generated:
    """Lay out buffers and render the model's C source from a complete IR graph.

    A model ends in int32 logits; with ``code_output`` (one-layer measurement
    images) the last node may write codes, which an untimed copy widens into
    the int32 output so the device returns them for the bit-exact check."""
    if not graph.nodes:
        raise BuildError("the model has no layers to generate code for.")
    if not graph.complete:
        raise BuildError("the model graph lacks weights or requantisation parameters (a structural graph).")
    if graph.output.bits != 0 and not code_output:
        raise BuildError("the model's last layer must produce int32 logits (out_bits=0).")
    if graph.input.bits == 0:
        raise BuildError("the model input must be codes, not int32 values.")
    meta = dict(meta or {})
    expr, act_bytes, off, total = layout(graph)
    steps, timed, support = [], [], []
    declared: set[int] = set()          # an op running at several nodes declares its constants once
    for n in graph.nodes:
        if n.op.c_support and n.op.c_support not in support:
            support.append(n.op.c_support)
        ctx = EmitContext(sym=c_ident(n.name), ins=graph.in_types(n), out=n.type,
                          src=[expr[i] for i in n.inputs], dst=expr[n.index])
        timer = None
        if n.op.timed:
            timer = len(timed)
            timed.append({"name": n.name, "kind": n.op.kind, "spec": graph.spec(n), "timer": timer,
                          "node": n.index})
        decls = "" if id(n.op) in declared else n.op.c_decls(ctx)
        declared.add(id(n.op))
        steps.append({"index": n.index, "name": n.name, "kind": n.op.kind, "bits": n.op.bits,
                      "decls": decls, "body": "" if n.op.view else n.op.c_body(ctx), "timer": timer})
    if graph.output.bits != 0:
        last = len(graph.nodes) - 1
        steps.append({"index": last + 1, "name": "output", "kind": "widen", "bits": None, "decls": "", "timer": None,
                      "body": f"for (uint32_t i = 0; i < {graph.output.numel}u; i++) output[i] = {expr[last]}[i];"})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    meta.setdefault("model", "?")
    meta.setdefault("dataset", "?")
    meta["bits"] = " ".join(f"{a}x{w}" for a, w in graph.scheme)
    in_count, out_count = graph.input.numel, graph.output.numel
    src = env.get_template("model.c.j2").render(
        steps=steps, support=support, off=off, meta=meta, in_count=in_count, out_count=out_count,
        n_timed=len(timed), scratch_bytes=total, act_bytes=act_bytes)
    return Generated(src, in_count, out_count, timed, total, act_bytes)


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
