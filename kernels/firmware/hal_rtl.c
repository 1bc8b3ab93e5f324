/*
 * RTL testbench HAL (rtl_sims/vexriscv/tb.cpp): MMIO UART, cycle timer, RAM layout.
 *
 * Memory: [RAM base, _end) firmware image | code region for model images |
 * tensor arena | stack (STACK_BYTES at the top of RAM).  The RAM size is read
 * from the testbench at start, so one firmware build serves every mem_kib.
 *
 * Timer: mcycle/mcycleh where the core has them (-DHAL_TIMER_MCYCLE: VexRiscv
 * Full, FullCfu), else the testbench's 64-bit cycle counter (reading the low
 * word latches the high word).  Both count core clock cycles.
 */
#include <stdint.h>
#include <stddef.h>
#include "hal.h"
#include "hal_rv32.h"
#include "link.h"

#ifndef MMIO_BASE
#define MMIO_BASE 0xF0000000u
#endif
#ifndef MICO_TARGET_ID
#define MICO_TARGET_ID "rtl"
#endif
#ifndef MICO_ISA
#define MICO_ISA "rv32im"
#endif
#ifndef HAL_TIMER_HZ
#define HAL_TIMER_HZ 100000000u   /* nominal: the simulated clock has no real frequency */
#endif
#define STACK_BYTES (64u << 10)
#define CODE_MAX (1u << 20)

#define REG(off) (*(volatile uint32_t *)(MMIO_BASE + (off)))
#define UART_TX REG(0x00)
#define UART_RX REG(0x04)
#define FLUSH REG(0x08)
#define EXIT REG(0x0C)
#define CYCLE_LO REG(0x10)
#define CYCLE_HI REG(0x14)
#define RAM_BASE REG(0x18)
#define RAM_SIZE REG(0x1C)

extern uint8_t _end[];

static uint8_t *code_base, *arena_base;
static uint32_t code_bytes, arena_bytes;

void hal_init(void) {
    rv32_layout l = rv32_split_ram((uintptr_t)_end, (uintptr_t)RAM_BASE + RAM_SIZE - STACK_BYTES, CODE_MAX);
    code_base = l.code;
    code_bytes = l.code_bytes;
    arena_base = l.arena;
    arena_bytes = l.arena_bytes;
}

int hal_getc(void) { return (int)(UART_RX & 0xFFu); }   /* blocks; EOF ends the simulation */

void hal_write(const uint8_t *buf, size_t len) {
    for (size_t i = 0; i < len; i++) UART_TX = buf[i];
}

void hal_flush(void) { FLUSH = 1; }

uint64_t hal_timer(void) {
#ifdef HAL_TIMER_MCYCLE
    return rv32_mcycle();
#else
    uint32_t lo = CYCLE_LO;
    uint32_t hi = CYCLE_HI;
    return ((uint64_t)hi << 32) | lo;
#endif
}

uint8_t hal_timer_unit(void) { return 0; }
uint32_t hal_timer_hz(void) { return HAL_TIMER_HZ; }
void hal_arena(uint8_t **base, uint32_t *size) { *base = arena_base; *size = arena_bytes; }
void hal_code_region(uint8_t **base, uint32_t *size) { *base = code_base; *size = code_bytes; }

void hal_sync_code(void *base, uint32_t size) {
    (void)base;
    (void)size;
    /* the data cache is write-through: only the instruction cache needs invalidating */
    __asm__ volatile(".option push\n.option arch, +zifencei\nfence.i\n.option pop" ::: "memory");
}

uint32_t hal_max_payload(void) { return LINK_MAX_PAYLOAD; }
const char *hal_target_id(void) { return MICO_TARGET_ID; }
const char *hal_isa(void) { return MICO_ISA; }

void hal_exit(int code) {
    EXIT = (uint32_t)code;
    for (;;) {}
}

