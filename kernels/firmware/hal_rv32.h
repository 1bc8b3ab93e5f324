/*
 * Pieces shared by the bare-metal rv32 HALs (hal_rtl.c, hal_litex.c): the
 * 64-bit mcycle read and the memory layout between the image and the stack.
 * Header-only (static inline), so each HAL stays one translation unit.
 */
#ifndef MICO_HAL_RV32_H
#define MICO_HAL_RV32_H
#include <stdint.h>

/* mcycle/mcycleh, re-read until the high word is stable (no torn carry) */
static inline uint64_t rv32_mcycle(void) {
    uint32_t hi, lo, hi2;
    do {
        __asm__ volatile(".option push\n.option arch, +zicsr\n"
                         "csrr %0, mcycleh\ncsrr %1, mcycle\ncsrr %2, mcycleh\n"
                         ".option pop"
                         : "=r"(hi), "=r"(lo), "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

typedef struct { uint8_t *code; uint32_t code_bytes; uint8_t *arena; uint32_t arena_bytes; } rv32_layout;

/* The free RAM between the end of the image and the stack: a quarter of it
 * (at most code_max bytes) for model code, the rest for tensors, both
 * 16-byte aligned. */
static inline rv32_layout rv32_split_ram(uintptr_t image_end, uintptr_t stack_bottom, uint32_t code_max) {
    uintptr_t end = (image_end + 15u) & ~(uintptr_t)15u;
    uint32_t free_ = stack_bottom > end ? (uint32_t)(stack_bottom - end) : 0;
    uint32_t code = (free_ / 4u) & ~15u;
    if (code > code_max) code = code_max;
    rv32_layout l = { (uint8_t *)end, code, (uint8_t *)end + code, (free_ - code) & ~15u };
    return l;
}
#endif
