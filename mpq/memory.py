"""What a generated model needs of a device's memory, and whether the device has it.

Two numbers matter on a microcontroller-class target:

* **flash** -- the model image (code, packed weights, requantisation constants)
  that LOAD_MODEL copies into the firmware's code region (``Hello.code_bytes``);
* **RAM** -- what RUN_MODEL takes from the tensor arena (``Hello.ram_bytes``):
  the logits, the per-layer timers, the input and the model's scratch, which
  is the lifetime-planned activation buffers (a residual branch keeps its
  input alive, so the peak is what the plan says) plus the kernels' scratch.

:func:`check_fits` compares both with what the booted target reported, before
the model is loaded, and says in one sentence which ``mem_kib`` would do.
The firmware applies the same arena rule in MODEL_COMMIT (kernels/firmware/bench.c).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import UserError

from kernels.ir.codegen import Generated

#: the RTL/LiteX HALs' layout (kernels/firmware/hal_rtl.c): the free RAM between the
#: firmware and the stack is split into a code region (a quarter, at most CODE_MAX)
#: and the tensor arena (the rest)
CODE_SHARE = 4
CODE_MAX = 1 << 20
#: slack the firmware adds for the arena's 8-byte alignment (bench.c, do_model_commit)
ARENA_SLACK = 64


@dataclass(frozen=True)
class ModelMemory:
    """Bytes a generated model needs on the device."""

    flash_bytes: int            # the model image
    activation_bytes: int       # peak of the lifetime-planned activation buffers
    scratch_bytes: int          # the model's whole scratch: activations + packed/accumulator/kernel scratch
    arena_bytes: int            # what RUN_MODEL takes from the arena (logits, timers, input, scratch)

    def to_dict(self) -> dict:
        return asdict(self)


def model_memory(gen: Generated, image: bytes | None) -> ModelMemory:
    """The memory a generated model (and its compiled image, if any) needs."""
    arena = 4 * gen.out_count + 8 * len(gen.timed_layers) + gen.in_count + gen.scratch_bytes + ARENA_SLACK
    return ModelMemory(flash_bytes=len(image) if image is not None else 0, activation_bytes=gen.act_bytes,
                       scratch_bytes=gen.scratch_bytes, arena_bytes=arena)


def graph_memory(graph) -> dict:
    """Memory of a model graph as the generated C lays it out, before any training:
    ``weight_bytes`` (constant arrays of the MAC layers: packed weights, requantisation
    parameters), ``activation_bytes`` (the lifetime-planned activation buffers' peak)
    and ``ram_bytes`` (what RUN_MODEL takes from the arena, as :func:`model_memory`)."""
    from kernels.ir.codegen import layout

    _, act, _, total = layout(graph)
    weights = sum(n.op.const_bytes(graph.in_types(n), n.type) for n in graph.mac_nodes)
    out = graph.output
    ram = (4 if out.bits == 0 else 1) * out.numel + 8 * len(graph.timed_nodes) + graph.input.numel + total \
        + ARENA_SLACK
    return {"weight_bytes": int(weights), "activation_bytes": int(act), "ram_bytes": int(ram)}


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def mem_kib_needed(need: ModelMemory, code_bytes: int, ram_bytes: int, mem_kib: int) -> int | None:
    """The smallest ``mem_kib`` (a multiple of 64) whose code region and arena hold the
    model, for the RTL HAL's layout; None when no RAM size can hold the image."""
    if need.flash_bytes > CODE_MAX:
        return None
    fixed = mem_kib * 1024 - (code_bytes + ram_bytes)          # firmware image + stack
    free = max(CODE_SHARE * need.flash_bytes, -(-need.arena_bytes * CODE_SHARE // (CODE_SHARE - 1)))
    if free // CODE_SHARE > CODE_MAX:
        free = max(CODE_SHARE * need.flash_bytes, need.arena_bytes + CODE_MAX)
    kib = -(-(fixed + free + 64) // 1024)
    return -(-kib // 64) * 64


def check_fits(need: ModelMemory, hello, target_name: str, mem_kib: int | None = None) -> None:
    """Refuse, in one sentence naming ``mem_kib``, a model whose image or buffers exceed
    what the booted target reported (``hello``: its code region and tensor arena)."""
    too_big = []
    if need.flash_bytes > hello.code_bytes:
        too_big.append(f"its image needs {_kib(need.flash_bytes)} of flash but the code region holds "
                       f"{_kib(hello.code_bytes)}")
    if need.arena_bytes > hello.ram_bytes:
        too_big.append(f"its buffers need {_kib(need.arena_bytes)} of RAM (activations peak at "
                       f"{_kib(need.activation_bytes)}) but the arena holds {_kib(hello.ram_bytes)}")
    if not too_big:
        return
    what = " and ".join(too_big)
    if mem_kib is None:
        raise UserError(f"the model does not fit {target_name}: {what}; pick a smaller scheme or a larger target.")
    want = mem_kib_needed(need, hello.code_bytes, hello.ram_bytes, mem_kib)
    if want is None:
        raise UserError(f"the model does not fit {target_name} at any --param mem_kib: {what}, and the firmware's "
                        f"code region stops at {_kib(CODE_MAX)}; pick a scheme with fewer weight bits.")
    raise UserError(f"the model does not fit {target_name} at mem_kib={mem_kib}: {what}; "
                    f"rerun with --param mem_kib={want} (or more).")
