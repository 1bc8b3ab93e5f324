/*
 * Start-up for the bench firmware on rv32 (machine mode): one file for every
 * bare-metal HAL, with -DMICO_HAL_LITEX selecting the LiteX SoC flavour.
 *
 *   RTL testbench (hal_rtl.c): the stack starts at the top of RAM, whose base
 *     and size the testbench reports over MMIO; a trap reports mcause, mepc
 *     and mtval to the testbench; main's return value is the exit code.
 *   LiteX SoC (hal_litex.c), entered by the BIOS (serialboot jump or boot from
 *     flash): the stack starts at _stack_top (rv32_litex.ld), interrupts stay
 *     off, a trap is reported by hal_litex_trap(), main's return calls hal_exit.
 *
 * Both clear .bss, and the MiCo build (MICO_CFU) enables the CFU (bit 31 of
 * CSR 0xBC0) before main.
 */
#ifndef MICO_HAL_LITEX
#ifndef MMIO_BASE
#define MMIO_BASE 0xF0000000
#endif
#define MMIO_EXIT 0x0C
#define MMIO_RAM_BASE 0x18
#define MMIO_RAM_SIZE 0x1C
#define MMIO_TRAP 0x24
#define MMIO_TRAP_EPC 0x28
#define MMIO_TRAP_TVAL 0x2C
#endif

/* sp = the top of RAM, 16-byte aligned */
.macro set_stack
#ifdef MICO_HAL_LITEX
    la sp, _stack_top
#else
    li t0, MMIO_BASE
    lw t1, MMIO_RAM_BASE(t0)
    lw t2, MMIO_RAM_SIZE(t0)
    add sp, t1, t2
#endif
    andi sp, sp, -16
.endm

    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    set_stack
    .option push
    .option arch, +zicsr
    la t0, trap_entry
    csrw mtvec, t0
#ifdef MICO_HAL_LITEX
    csrw mie, zero
#endif
#ifdef MICO_CFU
    li t0, 0x80000000
    csrs 0xBC0, t0
#endif
    .option pop
    la a0, __bss_start
    la a1, __bss_end
1:  bgeu a0, a1, 2f
    sw zero, 0(a0)
    addi a0, a0, 4
    j 1b
2:  call main
#ifdef MICO_HAL_LITEX
    call hal_exit
#else
    li t0, MMIO_BASE
    sw a0, MMIO_EXIT(t0)
#endif
3:  j 3b

    .balign 4
trap_entry:
    .option push
    .option arch, +zicsr
#ifdef MICO_HAL_LITEX
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    .option pop
    set_stack
    call hal_litex_trap
#else
    csrr t1, mepc
    csrr t2, mtval
    csrr t3, mcause
    .option pop
    li t0, MMIO_BASE
    sw t1, MMIO_TRAP_EPC(t0)
    sw t2, MMIO_TRAP_TVAL(t0)
    sw t3, MMIO_TRAP(t0)
#endif
4:  j 4b
