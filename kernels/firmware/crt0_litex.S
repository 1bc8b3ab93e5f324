/*
 * Start-up for the bench firmware on a LiteX SoC (rv32, machine mode), entered
 * by the BIOS (serialboot jump or boot from flash) with interrupts disabled.
 * Stack at the top of RAM (_stack_top from rv32_litex.ld), .bss cleared, every
 * trap reported by hal_litex_trap() (hal_litex.c).
 */
    .section .text.start, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, _stack_top
    andi sp, sp, -16
    .option push
    .option arch, +zicsr
    la t0, trap_entry
    csrw mtvec, t0
    csrw mie, zero
    .option pop
    la a0, __bss_start
    la a1, __bss_end
1:  bgeu a0, a1, 2f
    sw zero, 0(a0)
    addi a0, a0, 4
    j 1b
2:  call main
    call hal_exit
3:  j 3b

    .balign 4
trap_entry:
    .option push
    .option arch, +zicsr
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    .option pop
    la sp, _stack_top
    andi sp, sp, -16
    call hal_litex_trap
4:  j 4b
