"""VexRiscv cores in Verilator (and bring-your-own VexiiRiscv Verilog) as mico targets.

Importing ``rtl_sims.vexriscv.targets`` registers vexriscv-cacheless, vexriscv-small,
vexriscv-full, vexriscv-mico and vexiiriscv (entry point group ``mico.targets``).
"""
