/*
 * Start-up for the bench firmware on the RTL testbench (rv32im, machine mode).
 * Stack at the top of RAM (the testbench reports RAM base and size over MMIO),
 * .bss cleared, a trap handler that reports mcause/mepc/mtval to the testbench,
 * and on the MiCo build the CFU enabled (bit 31 of CSR 0xBC0).
 */
#ifndef MMIO_BASE
#define MMIO_BASE 0xF0000000
#endif
#define MMIO_EXIT 0x0C
#define MMIO_RAM_BASE 0x18
#define MMIO_RAM_SIZE 0x1C
#define MMIO_TRAP 0x24
#define MMIO_TRAP_EPC 0x28
#define MMIO_TRAP_TVAL 0x2C

    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    li t0, MMIO_BASE
    lw t1, MMIO_RAM_BASE(t0)
    lw t2, MMIO_RAM_SIZE(t0)
    add sp, t1, t2
    andi sp, sp, -16
    .option push
    .option arch, +zicsr
    la t0, trap_entry
    csrw mtvec, t0
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
    li t0, MMIO_BASE
    sw a0, MMIO_EXIT(t0)
3:  j 3b

    .balign 4
trap_entry:
    .option push
    .option arch, +zicsr
    csrr t1, mepc
    csrr t2, mtval
    csrr t3, mcause
    .option pop
    li t0, MMIO_BASE
    sw t1, MMIO_TRAP_EPC(t0)
    sw t2, MMIO_TRAP_TVAL(t0)
    sw t3, MMIO_TRAP(t0)
4:  j 4b
