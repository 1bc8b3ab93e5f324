"""MiCo-style mixed-precision SIMD unit as a VexRiscv CFU.

``mico_simd_cfu.v`` (module ``mico_simd_cfu``, CfuPlugin bus of
VexRiscv_FullCfu), its bit-accurate Python model ``model.cfu`` and the C
emulation ``mico_cfu_emulate`` (kernels/src/simd.c, host builds with
``-DMICO_CFU -DMICO_CFU_EMULATE``) implement one instruction:

``.insn r 0x0B, funct3, funct7, rd, rs1, rs2`` (custom-0, R-type),
function_id = {funct7[6:0], funct3[2:0]}.

- ``funct7[3:0]`` = pair index p = ia*4 + iw, where ia, iw are the indices of
  qa, qw in (1, 2, 4, 8); ``funct7[6:4]`` must be 0 (other values: rd = 0).
- rs1 = one packed ACTIVATION word (qa bits per element), rs2 = one packed
  WEIGHT word (qw bits per element), DESIGN.md section 3 format: element i at
  bits [i*b, i*b+b), b >= 2 two's complement, b = 1 code c -> value 2c-1.
- wide = max(qa, qw), narrow = min(qa, qw), L = 32 / wide lanes,
  R = wide / narrow, s = funct3:
  ``rd = sum_{i<L} val_narrow(s*L + i) * val_wide(i)`` as int32, where the
  wider operand's word is used whole and the narrower one's segment s (bits
  [s*32/R, (s+1)*32/R)) is used; the operands keep their a/w roles.
  s >= R: rd = 0.
- qa == qw: R = 1, the plain dot product of the 32/qa element pairs of the
  two words.  For 1x1 the zero pad bits of a row's last word are value -1 on
  both sides, so each padding lane adds +1 (the kernels subtract the number
  of pad lanes).

MACs per instruction: 4 / 8 / 16 / 32 with an 8 / 4 / 2 / 1-bit wide operand.
Handshake: accepted on cmd_valid && cmd_ready, result registered one cycle
later (rsp_valid) and held until rsp_ready; cmd_ready = !rsp_valid || rsp_ready.
"""

from pathlib import Path

VERILOG = Path(__file__).resolve().parent / "mico_simd_cfu.v"
TOPLEVEL = "mico_simd_cfu"

__all__ = ["VERILOG", "TOPLEVEL"]
