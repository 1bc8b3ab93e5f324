/*
 * mico_cfu.h: the MiCo-style mixed-precision SIMD custom instruction
 * (rtl_sims/cfu/mico_simd_cfu.v, a VexRiscv CFU) from C.
 *
 *   .insn r 0x0B, funct3, funct7, rd, rs1, rs2      (custom-0, R-type)
 *
 *   funct7 = ia*4 + iw, ia / iw = log2 of qa / qw (index in 1,2,4,8);
 *            funct7[6:4] reserved (0; other values give rd = 0)
 *   rs1    = one packed activation word (qa bits per element)
 *   rs2    = one packed weight word (qw bits per element)
 *   wide = max(qa,qw), narrow = min(qa,qw), L = 32/wide, R = wide/narrow,
 *   s = funct3 (segment):
 *     rd = sum_{i<L} val_narrow(s*L + i) * val_wide(i)    (int32)
 *   the wider operand's word whole, the narrower one's segment s, roles
 *   a/w kept; s >= R gives 0.  qa == qw: R = 1, s = 0, dot of the 32/qa
 *   element pairs (1x1: a zero pad lane on both sides adds +1).
 *
 * mico_cfu(funct3, funct7, a, b) gives rd as uint32_t.  funct3 and funct7
 * must be integer constant expressions (they are encoded in the
 * instruction), so callers specialise per pair and segment with macros.
 *   - MICO_CFU_EMULATE defined: calls mico_cfu_emulate() (kernels/src/simd.c),
 *     the same semantics in portable C (host tests);
 *   - else on RISC-V with MICO_CFU defined: the instruction itself (the CFU
 *     must be enabled first: bit 31 of CSR 0xBC0 on VexRiscv_FullCfu);
 *   - else with MICO_CFU defined: a compile error.
 */
#ifndef MICO_CFU_H
#define MICO_CFU_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MICO_CFU_OPCODE 0x0B
/* log2 of a bit-width in {1,2,4,8} (constant expression) */
#define MICO_CFU_LG(b) ((b) == 1 ? 0 : (b) == 2 ? 1 : (b) == 4 ? 2 : 3)
/* funct7 of the (qa, qw) pair */
#define MICO_CFU_FUNCT7(qa, qw) (MICO_CFU_LG(qa) * 4 + MICO_CFU_LG(qw))
/* function_id as seen on the CFU bus: {funct7, funct3} */
#define MICO_CFU_FUNCTION_ID(funct3, funct7) ((((uint32_t)(funct7)) << 3) | (uint32_t)(funct3))

#ifdef MICO_CFU
/* the instruction's semantics in C (defined in kernels/src/simd.c when
 * MICO_CFU_EMULATE is defined): rd for function_id = {funct7, funct3} */
int32_t mico_cfu_emulate(uint32_t function_id, uint32_t rs1, uint32_t rs2);

#if defined(MICO_CFU_EMULATE)
#define mico_cfu(funct3, funct7, a, b) \
    ((uint32_t)mico_cfu_emulate(MICO_CFU_FUNCTION_ID((funct3), (funct7)), (a), (b)))
#elif defined(__riscv)
/* volatile on purpose: gcc's scheduler treats a volatile asm as a barrier,
 * so the kernels' source order is the instruction order.  VexRiscv's
 * CfuPlugin holds a CFU instruction in execute while a load, store or branch
 * is in the memory or write-back stage, so the kernels issue a block of
 * loads, then two other instructions, then the CFU ops (kernels/src/simd.c);
 * gcc's own schedule would interleave them and stall on every CFU op. */
#define mico_cfu(funct3, funct7, a, b) __extension__({                         \
        uint32_t mico_cfu_rd_;                                                \
        __asm__ __volatile__(".insn r 0x0B, %3, %4, %0, %1, %2"               \
                : "=r"(mico_cfu_rd_)                                          \
                : "r"((uint32_t)(a)), "r"((uint32_t)(b)),                     \
                  "i"(funct3), "i"(funct7));                                  \
        mico_cfu_rd_; })
#else
#error "MICO_CFU needs a RISC-V target with the mico_simd_cfu unit, or MICO_CFU_EMULATE"
#endif
#endif /* MICO_CFU */

#ifdef __cplusplus
}
#endif
#endif
