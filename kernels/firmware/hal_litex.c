/*
 * LiteX HAL for the bench firmware: the same firmware on any LiteX SoC.
 *
 * Built against the SoC's generated headers (software/include/generated/
 * csr.h, soc.h of the SoC's LiteX build; boards/firmware.py passes the include
 * paths), so the UART and timer CSR addresses are whatever that SoC has.
 *
 * UART: the LiteX UART core, polled (interrupts stay off: the BIOS disables
 * them before it jumps here).  Timer: the 64-bit uptime counter of timer0
 * (SoC built with --timer-uptime), in sys_clk cycles; without it, mcycle
 * where the core has it (-DHAL_TIMER_MCYCLE).
 *
 * Memory: [RAM base, _end) firmware image (loaded by the BIOS serialboot or
 * from flash) | code region for model images | tensor arena | stack at the
 * top of RAM.  RAM base and size come from the linker script (rv32_litex.ld,
 * --defsym from the SoC's memory map).
 *
 * HELLO's target id ends in " img=XXXXXXXX": the CRC-32 of the loaded image
 * [_start, _edata) computed at start, before anything writes .data, so the
 * host can prove that the image it sent over a noisy link arrived intact.
 * BYE resets the SoC through the CTRL CSR, back into the BIOS (ready for the
 * next serialboot).
 */
#include <stdint.h>
#include <stddef.h>
#include <generated/csr.h>
#include <generated/soc.h>
#include "hal.h"
#include "hal_rv32.h"
#include "link.h"
#include "mico_kernels.h"

#ifndef MICO_TARGET_ID
#define MICO_TARGET_ID "litex"
#endif
#ifndef MICO_ISA
#define MICO_ISA "rv32im"
#endif
#ifndef HAL_STACK_BYTES
#define HAL_STACK_BYTES (64u << 10)
#endif
#define STACK_BYTES HAL_STACK_BYTES
#define CODE_MAX (1u << 20)

#ifndef CSR_UART_BASE
#error "the SoC has no LiteX UART (uart_name must be serial/sim)"
#endif
#if !defined(CSR_TIMER0_UPTIME_CYCLES_ADDR) && !defined(HAL_TIMER_MCYCLE)
#error "the SoC has no timer0 uptime counter: build it with --timer-uptime (or pass -DHAL_TIMER_MCYCLE)"
#endif

#define UART_EV_TX 0x1
#define UART_EV_RX 0x2

extern uint8_t _start[], _edata[], _end[], _stack_top[];

static uint8_t *code_base, *arena_base;
static uint32_t code_bytes, arena_bytes;
static char target_id[96];
static const char hexd[] = "0123456789abcdef";

void hal_init(void) {
    uint32_t img = mico_crc32(0, _start, (size_t)(_edata - _start));
    uint32_t n = 0;
    for (const char *s = MICO_TARGET_ID; *s && n < sizeof target_id - 16; s++) target_id[n++] = *s;
    const char *tag = " img=";
    while (*tag) target_id[n++] = *tag++;
    for (int i = 7; i >= 0; i--) target_id[n++] = hexd[(img >> (4 * i)) & 0xF];
    target_id[n] = 0;

    rv32_layout l = rv32_split_ram((uintptr_t)_end, (uintptr_t)_stack_top - STACK_BYTES, CODE_MAX);
    code_base = l.code;
    code_bytes = l.code_bytes;
    arena_base = l.arena;
    arena_bytes = l.arena_bytes;
    uart_ev_pending_write(UART_EV_TX | UART_EV_RX);
}

int hal_getc(void) {
    while (uart_rxempty_read()) {}
    int c = (int)(uart_rxtx_read() & 0xFFu);
    uart_ev_pending_write(UART_EV_RX);   /* pops the RX FIFO */
    return c;
}

static void putc_(uint8_t c) {
    while (uart_txfull_read()) {}
    uart_rxtx_write(c);
    uart_ev_pending_write(UART_EV_TX);
}

void hal_write(const uint8_t *buf, size_t len) {
    for (size_t i = 0; i < len; i++) putc_(buf[i]);
}

void hal_flush(void) {}

uint64_t hal_timer(void) {
#ifdef HAL_TIMER_MCYCLE
    return rv32_mcycle();
#else
    timer0_uptime_latch_write(1);
    return timer0_uptime_cycles_read();
#endif
}

uint8_t hal_timer_unit(void) { return 0; }
uint32_t hal_timer_hz(void) { return (uint32_t)CONFIG_CLOCK_FREQUENCY; }
void hal_arena(uint8_t **base, uint32_t *size) { *base = arena_base; *size = arena_bytes; }
void hal_code_region(uint8_t **base, uint32_t *size) { *base = code_base; *size = code_bytes; }

void hal_sync_code(void *base, uint32_t size) {
    (void)base;
    (void)size;
#if defined(CONFIG_CPU_HAS_DCACHE) && defined(__vexriscv__)
    __asm__ volatile(".word(0x500F)" ::: "memory");   /* VexRiscv: flush the data cache */
#endif
    __asm__ volatile(".option push\n.option arch, +zifencei\nfence.i\n.option pop" ::: "memory");
}

uint32_t hal_max_payload(void) { return LINK_MAX_PAYLOAD; }
const char *hal_target_id(void) { return target_id; }
const char *hal_isa(void) { return MICO_ISA; }

void hal_exit(int code) {
    (void)code;
#ifdef CSR_UART_TXEMPTY_ADDR
    while (!uart_txempty_read()) {}
#endif
    for (volatile int i = 0; i < 2000; i++) {}   /* let the PHY shift the last byte out */
#ifdef CSR_CTRL_RESET_ADDR
    ctrl_reset_write(1);   /* SoC reset: back to the BIOS */
#endif
    for (;;) {}
}

/* called by crt0.S (MICO_HAL_LITEX) on any trap: report it as a text line, then stop */
void hal_litex_trap(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
    static const char msg[] = "\n!MICO-TRAP mcause=";
    uint32_t v[3] = {mcause, mepc, mtval};
    static const char *const names[3] = {"", " mepc=", " mtval="};
    for (int k = 0; k < 3; k++) {
        const char *s = k ? names[k] : msg;
        while (*s) putc_((uint8_t)*s++);
        for (int i = 7; i >= 0; i--) putc_((uint8_t)hexd[(v[k] >> (4 * i)) & 0xF]);
    }
    putc_('\n');
    for (;;) {}
}

